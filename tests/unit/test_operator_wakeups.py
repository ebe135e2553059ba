"""Which watch events wake which reconcile loops: a loop is not woken by the status it wrote itself, and a
TrainedModel is woken by a WebService/Endpoint only when that one starts or stops using it."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from kstudio_operator import main
from kstudio_operator.runtime import Key, Runtime
from kstudio_operator.settings import OperatorConfig


def runtime_with_loops(*keys: Key) -> Runtime:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    rt.wakeups = {key: asyncio.Event() for key in keys}
    return rt


def woken(rt: Runtime) -> set[Key]:
    return {key for key, event in rt.wakeups.items() if event.is_set()}


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
    main.endpoint_changed("ns", "ep", kopf.Spec({"webService": "svc"}), endpoint("42", "m"), kopf.Memo(rt=rt))
    assert woken(rt) == set()
    main.endpoint_changed("ns", "ep", kopf.Spec({"webService": "svc"}), endpoint("43", "m"), kopf.Memo(rt=rt))
    assert woken(rt) == {key}


def test_a_model_is_woken_when_an_endpoint_starts_or_stops_using_it_not_by_its_other_changes() -> None:
    a, b = ("TrainedModel", "ns", "m-a"), ("TrainedModel", "ns", "m-b")
    rt = runtime_with_loops(a, b)
    memo = kopf.Memo(rt=rt)

    def event(body: kopf.Body, type_: str = "MODIFIED") -> set[Key]:
        for e in rt.wakeups.values():
            e.clear()
        main.model_user_changed("ns", "ep", body, type_, memo)
        return woken(rt)

    assert event(endpoint("1", "m-a"), "ADDED") == {a}
    assert event(endpoint("2", "m-a", phase="Pending")) == set()  # its own status: not the model's business
    assert event(endpoint("3", "m-a", phase="Ready", model="m-a")) == set()
    assert event(endpoint("4", "m-b", phase="RollingOut", model="m-a")) == {b}  # starts using m-b
    assert event(endpoint("5", "m-b", phase="Ready", model="m-b")) == {a}  # m-a no longer served
    assert event(endpoint("6", "m-b", phase="Ready", model="m-b"), "DELETED") == {b}
