"""The operator's own Prometheus metrics, served on KSTUDIO_METRICS_PORT (off when unset; the chart sets it).

reconciles by kind and outcome, reconcile latency, objects by kind ("loops") and reconciles in flight,
wake-ups pending (the work queues' depth), API requests by verb and resource (our client; kopf's watches
and finalizer patches are not included), Endpoints rolling out and stalled, whether this replica leads.
Scraped by the scale benchmark and by Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter(
    "kstudio_operator_reconciles",
    "Reconciles run, by kind and outcome (ok, retry, error).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "kstudio_operator_reconcile_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LOOPS = Gauge(
    "kstudio_operator_loops",
    "Objects under reconciliation (the watched kstudio objects, one work-queue key each), by kind.",
    ["kind"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("kstudio_operator_reconciles_in_flight", "Reconciles running now.", registry=REGISTRY)
API_REQUESTS = Counter(
    "kstudio_operator_api_requests",
    "Requests our client sent to the API server, by verb and resource (plural[/subresource]).",
    ["verb", "resource"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "kstudio_operator_leader",
    "1 while this replica reconciles (it holds the leader Lease, or runs without leader election), else 0.",
    registry=REGISTRY,
)

WAKEUPS_PENDING = Gauge(
    "kstudio_operator_wakeups_pending",
    "Objects woken and waiting for a reconcile worker (the work queues' depth).",
    registry=REGISTRY,
)
ENDPOINT_ROLLOUTS = Gauge(
    "kstudio_operator_endpoint_rollouts",
    "Endpoints whose last reconcile found a model rollout in progress or stalled, by state.",
    ["state"],
    registry=REGISTRY,
)
ROLLOUT_PHASES = {"rolling_out": "RollingOut", "stalled": "Stalled"}


KINDS = ("Experiment", "TrainedModel", "WebService", "Endpoint", "BatchJob")


def track(
    pending: Callable[[], int],
    endpoint_phases: Mapping[Any, str | None],
    in_flight: Callable[[], int] | None = None,
    objects: Mapping[str, int] | None = None,
) -> None:
    """Gauges computed at scrape time from the operator's state (nothing to keep in step by hand)."""
    WAKEUPS_PENDING.set_function(pending)
    if in_flight is not None:
        IN_FLIGHT.set_function(in_flight)
    if objects is not None:
        for kind in KINDS:
            LOOPS.labels(kind).set_function(lambda kind=kind: objects.get(kind, 0))  # type: ignore[misc]

    def counter(phase: str) -> Callable[[], int]:
        return lambda: sum(1 for p in list(endpoint_phases.values()) if p == phase)

    for state, phase in ROLLOUT_PHASES.items():
        ENDPOINT_ROLLOUTS.labels(state).set_function(counter(phase))


_serving: set[int] = set()


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104  (scraped from outside the pod)
    """Serve /metrics on `port` (once per process: the leader-election candidate serves it before kopf's
    startup would)."""
    if port not in _serving:
        start_http_server(port, addr=addr, registry=REGISTRY)
        _serving.add(port)
