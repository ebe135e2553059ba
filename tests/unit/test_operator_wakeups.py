"""Which watch events wake which reconciles: an object is not woken by the status it wrote itself, and a
TrainedModel is woken by a WebService/Endpoint only when that one starts or stops using it."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kstudio_operator import main
from kstudio_operator.runtime import Key, Runtime
from kstudio_operator.settings import OperatorConfig


def runtime_with_loops(*keys: Key) -> Runtime:
    """A runtime whose cache holds the objects `keys` (only those can be woken), nothing queued."""
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    for key in keys:
        rt.objects[key] = {"metadata": {"namespace": key[1], "name": key[2]}}
    return rt


def woken(rt: Runtime) -> set[Key]:
    return {key for queue in rt.queues.values() for key in queue.queued()}


def unwake(rt: Runtime) -> None:
    rt.queues.clear()


def run(coro: Any) -> None:
    asyncio.run(coro)


def endpoint(rv: str, spec_model: str | None, **status: Any) -> kopf.Body:
    raw = {
        "kind": "Endpoint",
        "metadata": {"namespace": "ns", "name": "ep", "resourceVersion": rv},
        "spec": {"webService": "svc", **({"model": spec_model} if spec_model else {})},
        "status": status,
    }
    return kopf.Body(raw)


def test_the_status_a_loop_wrote_does_not_wake_it_but_any_later_change_does() -> None:
    key: Key = ("Endpoint", "ns", "ep")
    rt = runtime_with_loops(key)
    rt.written[key] = (42, {"phase": "Ready"})
    spec = kopf.Spec({"webService": "svc"})
    run(main.endpoint_changed("ns", "ep", spec, endpoint("42", "m"), "MODIFIED", kopf.Memo(rt=rt)))
    assert woken(rt) == set()
    run(main.endpoint_changed("ns", "ep", spec, endpoint("43", "m"), "MODIFIED", kopf.Memo(rt=rt)))
    assert woken(rt) == {key}
    assert key not in rt.written  # the cache holds that status now: no second copy is kept


def test_a_model_is_woken_when_an_endpoint_starts_or_stops_using_it_not_by_its_other_changes() -> None:
    a, b = ("TrainedModel", "ns", "m-a"), ("TrainedModel", "ns", "m-b")
    rt = runtime_with_loops(a, b)
    memo = kopf.Memo(rt=rt)

    def event(body: kopf.Body, type_: str = "MODIFIED") -> set[Key]:
        """The models woken: after main.USED_BY_SECONDS, so that a burst of new users is one reconcile
        of the model (its usedBy), not one each."""
        unwake(rt)
        run(main.model_user_changed("ns", "ep", body, type_, memo))
        assert woken(rt) == set()
        return {key for queue in rt.queues.values() for key in queue.later()}

    assert event(endpoint("1", "m-a"), "ADDED") == {a}
    assert event(endpoint("2", "m-a", phase="Pending")) == set()  # its own status: not the model's business
    assert event(endpoint("3", "m-a", phase="Ready", model="m-a")) == set()
    assert event(endpoint("4", "m-b", phase="RollingOut", model="m-a")) == {b}  # starts using m-b
    assert event(endpoint("5", "m-b", phase="Ready", model="m-b")) == {a}  # m-a no longer served
    assert event(endpoint("6", "m-b", phase="Ready", model="m-b"), "DELETED") == {b}


def model(rv: str, phase: str, users: int) -> kopf.Body:
    status = {"phase": phase, "usedBy": [f"Endpoint/ep-{i}" for i in range(users)], "usedByCount": users}
    meta = {"namespace": "ns", "name": "m", "resourceVersion": rv, "labels": {}}
    return kopf.Body({"kind": "TrainedModel", "metadata": meta, "spec": {"artifact": {}}, "status": status})


def test_a_shared_model_wakes_its_users_when_they_would_read_something_new_not_for_its_usedby() -> None:
    users = [("Endpoint", "ns", f"ep-{i}") for i in range(100)]
    rt = runtime_with_loops(*users)
    memo = kopf.Memo(rt=rt)
    index = {("ns", "m"): [f"Endpoint/ep-{i}" for i in range(100)]}

    def event(body: kopf.Body, type_: str = "MODIFIED") -> int:
        unwake(rt)
        run(
            main.trained_model_changed(
                "ns",
                "m",
                {},
                body,
                type_,
                memo,
                model_users=index,
                services_by_experiment={},
                endpoints_by_service={},
            )
        )
        return len(woken(rt) & set(users))  # the model's own reconcile aside

    assert event(model("1", "Pending", 0), "ADDED") == 100  # first sight (also after a restart)
    assert event(model("2", "Ready", 0)) == 100  # verified: followers may roll it out
    assert all(event(model(str(3 + n), "Ready", n)) == 0 for n in range(1, 100))  # usedBy grows: nobody
    assert event(model("200", "Ready", 100), "DELETED") == 100


def test_an_endpoint_is_woken_by_its_pods_only_when_what_it_reads_of_them_changes() -> None:
    ep = ("Endpoint", "ns", "ep")
    rt = runtime_with_loops(ep)
    memo = kopf.Memo(rt=rt)
    labels = {"kstudio.io/endpoint": "ep"}

    def pod(rv: str, ready: bool, **status: Any) -> kopf.Body:
        conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
        meta = {"namespace": "ns", "name": "ep-1", "resourceVersion": rv, "labels": labels}
        return kopf.Body({"kind": "Pod", "metadata": meta, "status": {"conditions": conditions, **status}})

    def event(body: kopf.Body, type_: str = "MODIFIED") -> bool:
        unwake(rt)
        run(main.scorer_changed("ns", "ep-1", labels, body, type_, memo))
        return ep in woken(rt)

    assert event(pod("1", False), "ADDED")
    assert not event(pod("2", False, podIP="10.244.0.9", startTime="t"))  # nothing the Endpoint reads
    assert event(pod("3", True, podIP="10.244.0.9"))
    assert not event(pod("4", True, podIP="10.244.0.9", hostIP="10.244.0.1"))
    assert event(pod("5", True), "DELETED")


def test_a_model_that_becomes_ready_wakes_the_endpoints_following_a_service_that_uses_it() -> None:
    """A following Endpoint names no model: it is not among the model's users until it serves it, yet it
    waits for the model its WebService serves (found missing by the 100-endpoint benchmark: two
    Endpoints created before their model was verified waited for the 300 s resync)."""
    follower, other = ("Endpoint", "ns", "ws-default"), ("Endpoint", "ns", "unrelated")
    rt = runtime_with_loops(follower, other, ("WebService", "ns", "ws"))
    run(
        main.trained_model_changed(
            "ns",
            "m",
            {},
            model("1", "Ready", 0),
            "MODIFIED",
            kopf.Memo(rt=rt),
            model_users={("ns", "m"): ["WebService/ws"]},
            services_by_experiment={},
            endpoints_by_service={
                ("ns", "ws"): [{"name": "ws-default"}],
                ("ns", "x"): [{"name": "unrelated"}],
            },
        )
    )
    assert woken(rt) == {follower, ("WebService", "ns", "ws"), ("TrainedModel", "ns", "m")}


def test_a_batch_job_is_woken_by_its_shard_pods_and_job_only_when_what_it_reads_of_them_changes() -> None:
    bj = ("BatchJob", "ns", "scores")
    rt = runtime_with_loops(bj)
    memo = kopf.Memo(rt=rt)
    labels = {"kstudio.io/batchjob": "scores"}

    def child(kind: str, rv: str, **status: Any) -> kopf.Body:
        meta = {"namespace": "ns", "name": "scores-0", "resourceVersion": rv, "labels": labels}
        return kopf.Body({"kind": kind, "metadata": meta, "status": status})

    def event(body: kopf.Body, type_: str = "MODIFIED") -> bool:
        unwake(rt)
        run(main.batch_shards_changed("ns", "scores-0", labels, body, type_, memo))
        return bj in woken(rt)

    assert event(child("Pod", "1", phase="Pending"), "ADDED")
    assert not event(child("Pod", "2", phase="Pending", podIP="10.244.0.9"))  # nothing the BatchJob reads
    assert event(child("Pod", "3", phase="Running"))
    assert event(child("Pod", "4", phase="Running"), "DELETED")
    assert event(child("Job", "5", active=1), "ADDED")
    assert not event(child("Job", "6", active=1, uncountedTerminatedPods={}))
    assert event(child("Job", "7", active=0, succeeded=1))


def test_a_waiting_batch_job_is_woken_by_its_model_and_a_started_one_is_not() -> None:
    waiting, started = ("BatchJob", "ns", "waits"), ("BatchJob", "ns", "runs")
    rt = runtime_with_loops(waiting, started)
    memo = kopf.Memo(rt=rt)

    def batch_job(name: str, **status: Any) -> kopf.Body:
        meta = {"namespace": "ns", "name": name}
        return kopf.Body({"kind": "BatchJob", "metadata": meta, "spec": {"model": "m"}, "status": status})

    index: dict[Any, set[str]] = {}
    for body in (batch_job("waits", phase="Pending"), batch_job("runs", phase="Running", modelDigest="ab")):
        for key, name in main.indexes.batch_jobs_by_model("ns", body["metadata"]["name"], body).items():
            index.setdefault(key, set()).add(name)
    tm = kopf.Body({"kind": "TrainedModel", "metadata": {"namespace": "ns", "name": "m"}})
    run(main.batch_model_changed("ns", "m", tm, memo, batch_jobs_by_model=index))
    assert woken(rt) == {waiting}


def test_a_scorer_child_event_without_its_kind_wakes_its_endpoint_instead_of_raising() -> None:
    """Found by the scale benchmark (fixed in 2b2d482 without a test): an event whose body lacks `kind`
    raised KeyError in scorer_changed, so kopf logged a traceback and the Endpoint was not woken."""
    ep = ("Endpoint", "ns", "ep")
    rt = runtime_with_loops(ep)
    labels = {"kstudio.io/endpoint": "ep"}
    meta = {"namespace": "ns", "name": "ep-1", "resourceVersion": "7", "labels": labels}
    for type_ in ("MODIFIED", "DELETED"):
        unwake(rt)
        body = kopf.Body({"metadata": meta, "status": {}})
        run(main.scorer_changed("ns", "ep-1", labels, body, type_, kopf.Memo(rt=rt)))
        assert woken(rt) == {ep}, type_
