"""The operator's scrape-time gauges: queue depth from the work queues, objects by kind, rollouts from the
Endpoints' last phases, and an object deleted during its reconcile leaves no trace in them."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from kstudio_operator import metrics
from kstudio_operator.runtime import Body, Key, Runtime, work
from kstudio_operator.settings import OperatorConfig

GAUGES = ("kstudio_operator_wakeups_pending", "kstudio_operator_endpoint_rollouts", "kstudio_operator_loops")


def scrape() -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.REGISTRY).decode().splitlines():
        if line.startswith(GAUGES):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def tracked() -> Runtime:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    metrics.track(rt.pending_wakeups, rt.endpoint_phases, rt.in_flight, rt.counts)
    return rt


def endpoint(name: str) -> dict[str, object]:
    return {"kind": "Endpoint", "metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"}}


def test_gauges_count_pending_wakeups_objects_and_rollouts_in_progress_or_stalled() -> None:
    rt = tracked()
    for i in range(3):
        rt.object_changed(("Endpoint", "ns", f"ep-{i}"), endpoint(f"ep-{i}"), "ADDED")  # type: ignore[arg-type]
    rt.queues.clear()  # their first reconciles are done
    rt.wake(("Endpoint", "ns", "ep-0"))
    rt.wake(("Endpoint", "ns", "ep-2"))
    rt.wake(("Endpoint", "ns", "ep-2"))  # twice: one reconcile
    rt.wake(("Endpoint", "ns", "not-an-object"))  # not seen by the watch: nothing queued
    rt.endpoint_phases.update(
        {
            ("Endpoint", "ns", "a"): "RollingOut",
            ("Endpoint", "ns", "b"): "Stalled",
            ("Endpoint", "ns", "c"): "Ready",
        }
    )
    scraped = scrape()
    assert scraped["kstudio_operator_wakeups_pending"] == 2.0
    assert scraped['kstudio_operator_endpoint_rollouts{state="rolling_out"}'] == 1.0
    assert scraped['kstudio_operator_endpoint_rollouts{state="stalled"}'] == 1.0
    assert scraped['kstudio_operator_loops{kind="Endpoint"}'] == 3.0
    assert scraped['kstudio_operator_loops{kind="WebService"}'] == 0.0


def test_an_object_deleted_during_its_reconcile_leaves_neither_a_queued_wakeup_nor_a_rollout_behind() -> None:
    rt = tracked()
    key: Key = ("Endpoint", "ns", "ep")
    reconciles = []

    async def reconcile(rt: Runtime, key: Key, body: Body) -> float | None:
        reconciles.append(key)
        rt.endpoint_phases[key] = "Stalled"
        rt.wake(key)  # a trigger during the reconcile: queued for one more pass
        rt.object_changed(key, endpoint("ep"), "DELETED")  # type: ignore[arg-type]  # deleted meanwhile
        return None

    async def main() -> None:
        rt.object_changed(key, endpoint("ep"), "ADDED")  # type: ignore[arg-type]
        worker = asyncio.create_task(work(rt, "Endpoint", reconcile))
        while rt.pending_wakeups() or rt.in_flight():
            await asyncio.sleep(0.01)
        worker.cancel()

    asyncio.run(main())
    assert reconciles == [key]  # the second pass found the object gone
    assert rt.endpoint_phases == {} and rt.objects == {} and rt.queue("Endpoint").delayed() == 0
    scraped = scrape()
    assert scraped["kstudio_operator_wakeups_pending"] == 0.0
    assert scraped['kstudio_operator_endpoint_rollouts{state="stalled"}'] == 0.0
    assert scraped['kstudio_operator_loops{kind="Endpoint"}'] == 0.0


def test_api_requests_are_counted_by_the_resource_their_path_names() -> None:
    from kstudio_operator.kube import resource_of, resource_path

    assert resource_of(resource_path("kstudio.io/v1alpha1", "endpoints", "ns", "e") + "/status") == (
        "endpoints/status"
    )
    assert resource_of(resource_path("v1", "pods", "ns", "p") + "/log") == "pods/log"
    assert resource_of(resource_path("v1", "secrets", "ns")) == "secrets"  # a create
    assert resource_of(resource_path("coordination.k8s.io/v1", "leases", "ns", "l")) == "leases"
