"""The scoring app: `create_app(settings)` builds the FastAPI app from the route table (routes.py).

Layers, outermost first: metrics (metrics.py), limits (limits.py), the key (auth.py), the fast routes
(fast_routes.py), then FastAPI's router for every other route; `kstudio serve` adds the drain (drain.py)
outside them all. The fast routes take the raw body and do their own parsing (protocols/), so no per-row
pydantic work happens; the OpenAPI document still describes their bodies, generated from the model's
input schema once the model is loaded (openapi.py). Errors raised below FastAPI are rendered by
responses.render_error, as the fast routes render theirs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route as StarletteRoute

from kstudio_core.storage import ObjectStore, S3Uri, StorageSettings
from kstudio_scorer.bes.file_scoring import StreamLimits
from kstudio_scorer.bes.jobs import JobManager, JobStore, MemoryJobStore, ObjectJobStore, Ownership
from kstudio_scorer.errors import ScorerError
from kstudio_scorer.http.auth import AuthMiddleware
from kstudio_scorer.http.drain import Drain
from kstudio_scorer.http.fast_routes import FastRoute, FastRoutesMiddleware
from kstudio_scorer.http.keys import KeyRing
from kstudio_scorer.http.limits import LimitsMiddleware
from kstudio_scorer.http.metrics import MetricsMiddleware, ScorerMetrics
from kstudio_scorer.http.mirror import Mirror
from kstudio_scorer.http.openapi import build_openapi
from kstudio_scorer.http.responses import JSON, error_response, render_error
from kstudio_scorer.http.routes import ROUTES
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.http.state import ScorerState
from kstudio_scorer.model.scored_columns import SCORED_LABELS, OutputProjection
from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
from kstudio_scorer.model.traffic import Served, Split
from kstudio_scorer.settings import ScorerSettings

log = logging.getLogger(__name__)


def _register_error_handlers(app: FastAPI, state: ScorerState) -> None:
    def answer(request: Request, exc: Exception, message: str) -> Response:
        matched = ROUTES.match_scope(request.scope)
        status, body, headers = render_error(exc, classic_envelope=matched.classic)
        state.record_error(matched.template or request.url.path, status, _body_of(request), message)
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def scorer_error(request: Request, exc: Exception) -> Response:
        return answer(request, exc, getattr(exc, "message", str(exc)))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        matched = ROUTES.match_scope(request.scope)
        state.record_error(matched.template or request.url.path, 422, _body_of(request), problems)
        body = error_response(422, problems, "invalid_request", classic_envelope=matched.classic)
        return Response(body, status_code=422, media_type=JSON)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return answer(request, exc, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return answer(request, exc, "internal error")

    app.add_exception_handler(ScorerError, scorer_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _body_of(request: Request) -> bytes | None:
    body: bytes | None = getattr(request.state, "body", None)
    return body


def create_app(
    settings: ScorerSettings,
    *,
    model: ScoringModel | None = None,
    store_factory: Callable[[], ObjectStore] | None = None,
) -> FastAPI:
    """Build the app. The models load in the background on startup (unless given ready); /readyz says when.
    `model`: the one model to serve instead of those the settings name."""
    factory = store_factory or (lambda: ObjectStore(StorageSettings.from_env()))
    scorer_metrics = ScorerMetrics()
    models = [model] if model else [ScoringModel(settings, factory, s) for s in settings.served_models()]
    state = ScorerState(
        settings=settings,
        split=Split([Served(m) for m in models]),
        metrics=scorer_metrics,
        store_factory=factory,
        drain=Drain(settings.drain_seconds),
        keys=KeyRing(settings.keys_dir, settings.keys_reload_seconds)
        if settings.auth_enabled and settings.keys_dir
        else None,
        mirror=_mirror(settings, scorer_metrics),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.logging_level != "None" and settings.logging_uri:
            state.samples = SampleLogger(
                settings.logging_level,
                settings.logging_uri,
                factory,
                flush_seconds=settings.logging_flush_seconds,
                max_body_bytes=settings.logging_max_body_bytes,
                on_dropped=lambda n: scorer_metrics.samples_dropped.inc(n),
            )
            if state.mirror is not None:
                state.mirror.samples = SampleLogger(
                    "All",
                    f"{settings.logging_uri.rstrip('/')}/mirror",
                    factory,
                    flush_seconds=settings.logging_flush_seconds,
                    max_body_bytes=settings.logging_max_body_bytes,
                    on_dropped=lambda n: scorer_metrics.samples_dropped.inc(n),
                )
        state.jobs = JobManager(
            state.model,
            factory,
            lambda: state.projection or OutputProjection((SCORED_LABELS,)),
            settings.jobs_work_dir,
            job_store=await asyncio.to_thread(_job_store, settings, factory),
            ownership=Ownership(
                settings.pod_name, settings.jobs_heartbeat_seconds, settings.jobs_lease_seconds
            ),
            limits=StreamLimits(settings.jobs_chunk_rows, settings.jobs_csv_block_bytes),
            on_finished=lambda job: scorer_metrics.jobs.labels(job.state).inc(),
        )
        if all(m.ready for m in models):
            state.models_became_ready()
        else:
            state.load_task = asyncio.create_task(_load(state))
        try:
            yield
        finally:
            if state.load_task is not None and not state.load_task.done():
                state.load_task.cancel()
            state.jobs.close()
            state.close()
            if state.samples is not None:
                state.samples.close()
            if state.mirror is not None and state.mirror.samples is not None:
                state.mirror.samples.close()

    app = FastAPI(
        title=f"kstudio scorer: {settings.model_name}",
        version="0.1.0",
        description="Scores rows with trained models (.ilearner), one per request (a traffic split). "
        "Request schemas follow the model's input schema.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their JavaScript from a CDN: a scorer sends no client of
        # its users to another host (and works offline). The document itself is at /openapi.json, a route
        # of the table (routes.py) rather than FastAPI's own, so every layer (metrics included) knows it.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.kstudio = state
    for route in ROUTES:
        if route.fast:
            endpoint = FastRoute(route, state)
            app.router.routes.append(
                StarletteRoute(
                    route.path, endpoint, methods=[route.method], name=route.name, include_in_schema=False
                )
            )
        else:
            app.add_api_route(
                route.path, route.endpoint, methods=[route.method], name=route.name, response_class=Response
            )
    _register_error_handlers(app, state)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build_openapi(app, state.model, settings)
        if state.model.ready:  # cache only the schema of the loaded model
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(FastRoutesMiddleware, routes=ROUTES, state=state)
    app.add_middleware(AuthMiddleware, routes=ROUTES, state=state)
    app.add_middleware(
        LimitsMiddleware,
        routes=ROUTES,
        max_body_bytes=settings.max_body_bytes,
        max_concurrent=settings.max_concurrent_calls,
        retry_after_seconds=settings.retry_after_seconds,
    )
    app.add_middleware(MetricsMiddleware, routes=ROUTES, metrics=scorer_metrics)
    return app


def _mirror(settings: ScorerSettings, metrics: ScorerMetrics) -> Mirror | None:
    return Mirror(settings.mirror, settings, metrics) if settings.mirror is not None else None


def _job_store(settings: ScorerSettings, factory: Callable[[], ObjectStore]) -> JobStore:
    if settings.jobs_store_uri:
        return ObjectJobStore(factory(), S3Uri.parse(settings.jobs_store_uri))
    return MemoryJobStore(settings.jobs_max_kept)


async def _load(state: ScorerState) -> None:
    try:
        await asyncio.to_thread(state.load_models)
    except ModelLoadError as exc:
        if state.on_load_failure is not None:
            state.on_load_failure(exc)
        return
    state.models_became_ready()
