"""A new WebService's or Endpoint's first status that only says "Pending, on its way" waits in memory for
the Ready that usually follows (one status write instead of two); anything else is written at once."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from test_operator_serving_decisions import (
    CONFIG,
    EP_OWNER,
    T0,
    WS,
    WS_OWNER,
    deployment_for,
    model,
    observe,
    pod,
    ws_observed,
)

from kstudio_operator.decisions import endpoint as endpoint_decisions
from kstudio_operator.decisions import webservice as web_service_decisions
from kstudio_operator.decisions.endpoint import decide_endpoint
from kstudio_operator.decisions.webservice import decide_web_service
from kstudio_operator.runtime import Key, Runtime, work
from kstudio_operator.settings import OperatorConfig

EP_SPEC = {"webService": "svc", "replicas": 1}
KEY: Key = ("Endpoint", "ns", "ep2")
BODY = {"apiVersion": "kstudio.io/v1alpha1", "metadata": {"namespace": "ns", "name": "ep2"}}


def _endpoint_status(spec: dict[str, Any] = EP_SPEC, **observed: Any) -> dict[str, Any]:
    return decide_endpoint(spec, {}, observe([], **observed), T0, CONFIG, EP_OWNER).status


def test_a_new_endpoint_whose_pods_are_starting_settles_and_its_ready_status_does_not() -> None:
    starting = decide_endpoint(EP_SPEC, {}, observe([]), T0, CONFIG, EP_OWNER)
    assert starting.status["phase"] == "Pending"
    assert endpoint_decisions.settles({}, starting.status, web_service_reported=True)
    ready = decide_endpoint(
        EP_SPEC, starting.status, observe([pod(1, "a")], deployment_for(starting)), T0, CONFIG, EP_OWNER
    )
    assert ready.status["phase"] == "Ready"
    assert not endpoint_decisions.settles({}, ready.status, web_service_reported=True)


def test_an_endpoint_with_a_written_phase_never_settles_so_a_rollout_writes_its_phases_at_once() -> None:
    starting = _endpoint_status()
    for written in ({"phase": "Pending"}, {"phase": "Ready", "model": "m-1"}):
        assert not endpoint_decisions.settles(written, starting, web_service_reported=True)


def test_what_the_user_must_see_on_a_new_endpoint_is_written_at_once() -> None:
    missing = _endpoint_status({"webService": "svc", "model": "nope"})
    not_ready = _endpoint_status(
        {"webService": "svc", "model": "m-3"}, models={"m-3": model(3, phase="Pending")}
    )
    no_service = _endpoint_status(web_service=None)
    invalid = _endpoint_status({"webService": "svc", "replicas": 99})
    reasons = [
        next(c["reason"] for c in s["conditions"] if c["type"] == "Ready")
        for s in (missing, not_ready, no_service, invalid)
    ]
    assert reasons == ["NoModel", "NoModel", "WebServiceNotFound", "InvalidSpec"]
    for status in (missing, not_ready, no_service, invalid):
        assert not endpoint_decisions.settles({}, status, web_service_reported=True)
        assert not endpoint_decisions.settles({}, status, web_service_reported=False)
    accepted = [
        next(c["reason"] for c in s["conditions"] if c["type"] == "ModelAccepted")
        for s in (missing, not_ready)
    ]
    assert accepted == ["ModelNotFound", "ModelNotReady"]


def test_a_following_endpoint_settles_on_no_model_only_while_its_service_has_not_said_which() -> None:
    silent = _endpoint_status(web_service={"spec": WS["spec"], "status": {}})
    assert {c["type"]: c["reason"] for c in silent["conditions"]} == {
        "ModelAccepted": "NoModel",
        "Ready": "NoModel",
    }
    assert endpoint_decisions.settles({}, silent, web_service_reported=False)
    assert not endpoint_decisions.settles({}, silent, web_service_reported=True)


def test_a_new_web_service_waiting_for_its_default_endpoint_settles_on_the_model_its_spec_names() -> None:
    models = {"m-1": model(1)}
    created = decide_web_service({"model": "m-1"}, {}, ws_observed(models=models), T0, WS_OWNER)
    assert created.status["phase"] == "Pending"
    assert web_service_decisions.settles({}, created.status, {"model": "m-1"})
    assert not web_service_decisions.settles({"phase": "Pending"}, created.status, {"model": "m-1"})
    serving = {"name": "svc-default", "spec": {}, "status": {"phase": "Ready", "split": "m-1:100"}}
    ready = decide_web_service(
        {"model": "m-1"},
        created.status,
        ws_observed(models=models, endpoints={"svc-default": serving}),
        T0,
        WS_OWNER,
    )
    assert ready.status["phase"] == "Ready"
    assert not web_service_decisions.settles({}, ready.status, {"model": "m-1"})


def test_a_model_chosen_from_an_experiment_or_no_model_at_all_is_written_at_once() -> None:
    """The model a status names from an Experiment is in use only once written (the model_users index reads
    the status): its deletion guard must see it."""
    follow = {"modelFrom": {"experiment": "exp"}}
    chosen = decide_web_service(
        follow, {}, ws_observed(models={"m-1": model(1)}, experiment_latest="m-1"), T0, WS_OWNER
    )
    assert chosen.status["model"] == "m-1" and chosen.status["phase"] == "Pending"
    assert not web_service_decisions.settles({}, chosen.status, follow)
    nothing = decide_web_service(follow, {}, ws_observed(), T0, WS_OWNER)
    assert nothing.status["conditions"][0]["reason"] == "NoModel"
    assert not web_service_decisions.settles({}, nothing.status, follow)


def _runtime(settle: str) -> Runtime:
    return Runtime(config=OperatorConfig.from_env({"KSTUDIO_SETTLE_SECONDS": settle}), store=None)


def _always(written: dict[str, Any], desired: dict[str, Any]) -> bool:
    return True


def test_a_settling_status_is_held_and_read_as_the_current_one_until_it_is_due() -> None:
    rt = _runtime("5")
    body = BODY | {"status": {}}
    status = _endpoint_status() | {"keysSecret": "ep2-keys"}
    assert asyncio.run(rt.write_status(KEY, body, "endpoints", status, _always)) is False
    assert rt.current_status(KEY, body) == status  # the keys Secret is not made twice
    assert rt.written_status(KEY, body) == {}
    left = rt.settling(KEY)
    assert left is not None and 4.0 < left <= 5.0
    # A later, still settling status keeps the first one's time: a slow start shows Pending within 5 s.
    later = status | {"readyReplicas": 0}
    asyncio.run(rt.write_status(KEY, body, "endpoints", later, _always))
    assert rt.current_status(KEY, body) == later and (rt.settling(KEY) or 0) <= left
    rt.forget(KEY)
    assert rt.held_status(KEY) is None and rt.settling(KEY) is None


def test_a_status_that_does_not_settle_or_is_due_is_written_at_once() -> None:
    """Written: here the Runtime has no API client, so writing is asking for one (TemporaryError)."""
    status = _endpoint_status()
    never = _runtime("5")
    asyncio.run(never.write_status(KEY, BODY, "endpoints", status, _always))
    with pytest.raises(kopf.TemporaryError, match="not logged in"):
        asyncio.run(never.write_status(KEY, BODY, "endpoints", status, lambda w, d: False))
    assert never.held_status(KEY) == status  # what was held stays until a write succeeds (the retry's)
    fresh = _runtime("5")
    with pytest.raises(kopf.TemporaryError, match="not logged in"):
        asyncio.run(fresh.write_status(KEY, BODY, "endpoints", status, lambda w, d: False))
    assert fresh.held_status(KEY) is None  # a status that does not settle is never held
    off = _runtime("0")
    with pytest.raises(kopf.TemporaryError, match="not logged in"):
        asyncio.run(off.write_status(KEY, BODY, "endpoints", status, _always))
    due = _runtime("0.01")
    asyncio.run(due.write_status(KEY, BODY, "endpoints", status, _always))
    asyncio.run(asyncio.sleep(0.02))
    assert due.settling(KEY) == 0.0
    with pytest.raises(kopf.TemporaryError, match="not logged in"):
        asyncio.run(due.write_status(KEY, BODY, "endpoints", status, _always))


def test_a_reconcile_holding_an_older_body_does_not_write_again_what_the_cache_shows_written() -> None:
    """A worker takes the body cached when it starts; our own write may reach the cache (and end the copy
    kept in Runtime.written) while it runs. Compared with that older body, the whole status looked
    unwritten and was sent again (seen on the cluster: two identical Ready writes 80 ms apart)."""
    rt = _runtime("5")
    ready = {"phase": "Ready", "model": "m-1"}
    older = BODY | {"metadata": BODY["metadata"] | {"resourceVersion": "3"}, "status": {}}
    rt.object_changed(
        KEY,
        kopf.Body(BODY | {"metadata": older["metadata"] | {"resourceVersion": "5"}, "status": ready}),
        None,
    )
    assert asyncio.run(rt.write_status(KEY, older, "endpoints", ready)) is False


def test_a_child_just_created_is_read_until_the_watch_shows_it_and_no_longer() -> None:
    rt = _runtime("5")
    deployment = {"kind": "Deployment", "metadata": {"name": "ep2"}}
    rt.remember_created(KEY, "Deployment", deployment)
    assert rt.created_child(KEY, "Deployment", None) == deployment  # not in the index yet
    assert rt.created_child(KEY, "Service", None) is None  # never created here
    assert rt.created_child(KEY, "Deployment", {"name": "ep2"}) is None  # indexed: forgotten
    assert rt.created_child(KEY, "Deployment", None) is None  # so a deletion seen later is made again
    rt.remember_created(KEY, "Deployment", deployment)
    assert rt.created_child(KEY, "Deployment", None, within=0.0) is None  # too old: the index decides
    rt.remember_created(KEY, "Service", {"kind": "Service"})
    rt.forget(KEY)
    assert rt.created == {}


def test_a_held_status_whose_write_failed_stays_held_and_due_so_the_retry_writes_it() -> None:
    """A failed write (a 429, a 5xx, a timeout; here no API client) must not drop the held status: a
    following Endpoint reading its service in between would see no model, and nothing would wake it
    again when the retry writes the same status (its view is unchanged)."""
    rt = _runtime("0.01")
    status = _endpoint_status()
    asyncio.run(rt.write_status(KEY, BODY, "endpoints", status, _always))
    asyncio.run(asyncio.sleep(0.02))
    with pytest.raises(kopf.TemporaryError, match="not logged in"):
        asyncio.run(rt.write_status(KEY, BODY, "endpoints", status, _always))
    assert rt.held_status(KEY) == status and rt.settling(KEY) == 0.0


def test_what_a_reconcile_kept_for_an_object_deleted_while_it_ran_is_dropped() -> None:
    """The DELETED event may come while a reconcile waits on a request: forget() runs first, then the
    reconcile keeps a held status, a created child, a phase for an object nobody will reconcile again."""
    rt = _runtime("5")
    rt.object_changed(KEY, kopf.Body(BODY | {"spec": EP_SPEC}), "ADDED")

    async def reconcile(rt: Runtime, key: Key, body: Any) -> float | None:
        rt.object_changed(key, kopf.Body(dict(body)), "DELETED")  # the watch, mid-reconcile
        rt.held[key] = (0.0, {"phase": "Pending"})
        rt.remember_created(key, "Deployment", {"kind": "Deployment"})
        rt.endpoint_phases[key] = "Pending"
        rt.view_changed(key, {"model": "m-1"})
        return None

    async def one_pass() -> None:
        worker = asyncio.create_task(work(rt, "Endpoint", reconcile))
        while rt.queue("Endpoint").pending() or rt.queue("Endpoint").active():
            await asyncio.sleep(0.001)
        worker.cancel()

    asyncio.run(one_pass())
    assert (rt.held, rt.created, rt.endpoint_phases, rt.views) == ({}, {}, {}, {})
