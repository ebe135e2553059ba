"""The operator's scrape-time gauges: queue depth from the loops' wake-up events, rollouts from the
Endpoints' last phases, and a reconcile loop that leaves no trace in them when its object goes."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from kstudio_operator import metrics
from kstudio_operator.runtime import Runtime, reconcile_loop
from kstudio_operator.settings import OperatorConfig


class Stopped:
    """The loop only asks kopf's DaemonStopped flag for its truth value."""

    now = False

    def __bool__(self) -> bool:
        return self.now


def scrape() -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.REGISTRY).decode().splitlines():
        if line.startswith(("kstudio_operator_wakeups_pending", "kstudio_operator_endpoint_rollouts")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_gauges_count_pending_wakeups_and_rollouts_in_progress_or_stalled() -> None:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    metrics.track(rt.pending_wakeups, rt.endpoint_phases)
    rt.wakeups = {("Endpoint", "ns", f"ep-{i}"): asyncio.Event() for i in range(3)}
    rt.wake(("Endpoint", "ns", "ep-0"))
    rt.wake(("Endpoint", "ns", "ep-2"))
    rt.wake(("Endpoint", "ns", "not-a-loop"))  # no loop, nothing queued
    rt.endpoint_phases.update(
        {
            ("Endpoint", "ns", "a"): "RollingOut",
            ("Endpoint", "ns", "b"): "Stalled",
            ("Endpoint", "ns", "c"): "Ready",
        }
    )
    assert scrape() == {
        "kstudio_operator_wakeups_pending": 2.0,
        'kstudio_operator_endpoint_rollouts{state="rolling_out"}': 1.0,
        'kstudio_operator_endpoint_rollouts{state="stalled"}': 1.0,
    }


def test_a_stopped_loop_leaves_neither_a_queued_wakeup_nor_a_rollout_behind() -> None:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    metrics.track(rt.pending_wakeups, rt.endpoint_phases)
    key = ("Endpoint", "ns", "ep")
    stopped = Stopped()

    async def once() -> float | None:
        rt.endpoint_phases[key] = "Stalled"
        rt.wake(key)  # a trigger during the reconcile: queued for one more pass
        stopped.now = True  # the object was deleted during the reconcile
        return None

    asyncio.run(reconcile_loop(rt, key, stopped, once))  # type: ignore[arg-type]
    assert rt.endpoint_phases == {} and rt.wakeups == {}
    assert scrape()["kstudio_operator_wakeups_pending"] == 0.0
    assert scrape()['kstudio_operator_endpoint_rollouts{state="stalled"}'] == 0.0
