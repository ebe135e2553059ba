"""Prometheus metrics of one scorer process, in a registry of its own (no process-global state)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kstudio_core.serving import MODEL_REQUESTS
from kstudio_scorer.http.routing import RouteTable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000, 100_000)


class ScorerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kstudio_scorer_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "kstudio_scorer_request_duration_seconds",
            "request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("kstudio_scorer_rows_scored", "rows scored by route", ["route"], registry=r)
        self.model_requests = Counter(
            MODEL_REQUESTS,
            "scoring calls by the model that answered and outcome: ok; error (the model was asked and the "
            "answer is not 2xx); refused (the input was refused before the model was asked)",
            ["model", "outcome"],
            registry=r,
        )
        self.model_latency = Histogram(
            "kstudio_scorer_model_request_duration_seconds",
            "scoring calls' latency by the model that answered (from the body read to the answer)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.mirror_requests = Counter(
            "kstudio_scorer_mirror_requests",
            "copies of answered requests by mirror model and outcome: ok (scored and compared), error (the "
            "mirror could not score it), dropped (its queue was full)",
            ["mirror", "outcome"],
            registry=r,
        )
        self.mirror_latency = Histogram(
            "kstudio_scorer_mirror_duration_seconds",
            "time the mirror model took to score a copy, off the request path",
            ["mirror"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.mirror_rows = Counter(
            "kstudio_scorer_mirror_rows",
            "rows the mirror scored, by mirror and the model whose answer it was compared with",
            ["mirror", "model"],
            registry=r,
        )
        self.mirror_labels_agreed = Counter(
            "kstudio_scorer_mirror_labels_agreed",
            "classification: rows where the mirror's label equals the answered one",
            ["mirror", "model"],
            registry=r,
        )
        self.mirror_absolute_difference = Counter(
            "kstudio_scorer_mirror_absolute_difference",
            "regression: the sum over rows of |mirror's value - answered value|",
            ["mirror", "model"],
            registry=r,
        )
        self.mirror_label_agreement = Gauge(
            "kstudio_scorer_mirror_label_agreement",
            "classification: share of the mirrored rows (since start) whose labels agree (0-1)",
            ["mirror", "model"],
            registry=r,
        )
        self.mirror_mean_absolute_difference = Gauge(
            "kstudio_scorer_mirror_mean_absolute_difference",
            "regression: mean |mirror's value - answered value| over the mirrored rows since start",
            ["mirror", "model"],
            registry=r,
        )
        self.model_info = Gauge(
            "kstudio_scorer_model_info",
            "the model this process serves (value 1 once ready)",
            ["name", "sha256", "task"],
            registry=r,
        )
        self.ready = Gauge(
            "kstudio_scorer_model_ready", "1 when the model is loaded and warmed up", registry=r
        )
        self.predict_batch_rows = Histogram(
            "kstudio_scorer_predict_batch_rows",
            "rows per predict call after micro-batching",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.samples_dropped = Counter(
            "kstudio_scorer_log_samples_dropped",
            "request/response samples not logged (queue full or storage error)",
            registry=r,
        )
        self.jobs = Counter("kstudio_scorer_jobs", "batch jobs finished by state", ["state"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every response by its route's template (routes.py), 413/429 from the limits layer and 500s
    included: a request no route matches is counted as "unmatched"."""

    def __init__(self, app: ASGIApp, routes: RouteTable, metrics: ScorerMetrics) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        label = self.routes.match_scope(scope).label
        start = time.perf_counter()
        status = 500

        async def capturing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capturing_send)
        finally:
            m = self.metrics
            m.requests.labels(label, scope["method"], str(status)).inc()
            m.latency.labels(label).observe(time.perf_counter() - start)
