"""The operator's own Prometheus metrics, served on KSTUDIO_METRICS_PORT (off when unset; the chart sets it).

reconciles by kind and outcome, reconcile latency, loops alive and reconciles in flight, API requests by
verb (our client; kopf's watches are not included). Scraped by the scale benchmark and by Prometheus.
"""

from __future__ import annotations

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
    "kstudio_operator_loops", "Reconcile loops alive (one per object), by kind.", ["kind"], registry=REGISTRY
)
IN_FLIGHT = Gauge("kstudio_operator_reconciles_in_flight", "Reconciles running now.", registry=REGISTRY)
API_REQUESTS = Counter(
    "kstudio_operator_api_requests",
    "Requests our client sent to the API server, by verb.",
    ["verb"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104  (scraped from outside the pod)
    start_http_server(port, addr=addr, registry=REGISTRY)
