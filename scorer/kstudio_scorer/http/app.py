"""The scoring app: `create_app(settings)` builds the FastAPI app with an explicit route table.

Hot paths (`/score`, `/v2/models/{name}/infer`) take the raw body and do their own parsing (columns.py),
so no per-row pydantic work happens; the OpenAPI document still describes their bodies, generated from
the model's input schema once the model is loaded (openapi.py). Domain errors (errors.py) are mapped to
HTTP statuses in one place: `ERROR_STATUS` below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kstudio_core.storage import ObjectStore, S3Uri, StorageSettings
from kstudio_scorer.bes import classic_bes
from kstudio_scorer.bes.file_scoring import StreamLimits
from kstudio_scorer.bes.jobs import JobManager, JobStore, MemoryJobStore, ObjectJobStore, Ownership
from kstudio_scorer.errors import (
    InputValidationError,
    ModelNotFoundError,
    ScorerError,
)
from kstudio_scorer.http.fast_routes import HotPathMiddleware
from kstudio_scorer.http.keys import KeyRing
from kstudio_scorer.http.limits import LimitsMiddleware
from kstudio_scorer.http.metrics import MetricsMiddleware, ScorerMetrics
from kstudio_scorer.http.openapi import build_openapi
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.http.state import (
    JSON,
    SERVER_NAME,
    ScorerState,
    error_body,
    render_error,
    score_classic,
    score_rrs,
    score_v2,
)
from kstudio_scorer.model.scored_columns import SCORED_LABELS, OutputProjection
from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
from kstudio_scorer.protocols import classic, oip
from kstudio_scorer.protocols.request_columns import v2_datatype
from kstudio_scorer.settings import ScorerSettings

log = logging.getLogger(__name__)


def _state(request: Request) -> ScorerState:
    state: ScorerState = request.app.state.kstudio
    return state


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


# --- health ------------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    return _json({"status": "alive"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    m = state.model
    if state.ready:
        return _json({"ready": True, "model": m.name, "sha256": m.digest})
    return _json({"ready": False, "state": m.state, "reason": m.error or "loading"}, 503)


async def v2_live(request: Request) -> Response:
    return _json({"live": True})


async def v2_ready(request: Request) -> Response:
    ready = _state(request).ready
    return _json({"ready": ready}, 200 if ready else 503)


async def v2_server_metadata(request: Request) -> Response:
    return _json({"name": SERVER_NAME, "version": "0.1.0", "extensions": ["binary_tensor_data"]})


async def v2_model_metadata(request: Request, name: str) -> Response:
    m = _state(request).named_model(name)
    schema = m.schema
    outputs = [
        {"name": "predict", "datatype": "BYTES" if m.task == "classification" else "FP64", "shape": [-1]}
    ]
    if m.task == "classification":
        if m.classes and not isinstance(m.classes[0], str):
            outputs[0]["datatype"] = "INT64" if isinstance(m.classes[0], int) else "FP64"
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.classes)]})
    return _json(
        {
            "name": m.name,
            "versions": [m.digest],
            "platform": "sklearn",
            "inputs": [{"name": c.name, "datatype": v2_datatype(c.type), "shape": [-1]} for c in schema],
            "outputs": outputs,
            "parameters": {"task": m.task, "classes": m.classes, "sha256": m.digest},
        }
    )


async def v2_model_ready(request: Request, name: str) -> Response:
    state = _state(request)
    if name != state.model.name:
        raise ModelNotFoundError(f"no model named {name!r}; this endpoint serves {state.model.name!r}")
    ready = state.ready
    return _json({"name": name, "ready": ready}, 200 if ready else 503)


# --- scoring -----------------------------------------------------------------------------------------
async def score(request: Request) -> Response:
    body = await request.body()
    request.state.body = body
    state = _state(request)
    out = await score_rrs(state, request.headers.get("authorization"), body, request.url.query)
    return Response(out, media_type=JSON)


async def execute(request: Request, workspace: str, service: str) -> Response:
    """Classic request-response; the workspace and service segments are kept for the classic URL only
    (one scorer serves one model: the endpoint's address selects it)."""
    body = await request.body()
    request.state.body = body
    out = await score_classic(_state(request), request.headers.get("authorization"), body, request.url.query)
    return Response(out, media_type=JSON)


async def v2_infer(request: Request, name: str) -> Response:
    return await _v2_infer(request, name, None)


async def v2_infer_version(request: Request, name: str, version: str) -> Response:
    return await _v2_infer(request, name, version)


async def _v2_infer(request: Request, name: str, version: str | None) -> Response:
    body = await request.body()
    request.state.body = body
    headers = request.headers
    out = await score_v2(
        _state(request), name, version, headers.get("authorization"), headers.get(oip.BINARY_HEADER), body
    )
    return Response(out, media_type=JSON)


# --- batch jobs --------------------------------------------------------------------------------------
class JobRequest(BaseModel):
    """A batch scoring job: score every row of `input` into `output` (both s3:// objects)."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="s3://bucket/key of a CSV (with header) or Parquet file", min_length=6)
    output: str = Field(description="s3://bucket/key to write the scored rows to", min_length=6)
    inputFormat: str | None = Field(None, description="csv or parquet; default: from the input's extension")
    outputFormat: str | None = Field(None, description="csv or parquet; default: from the output's extension")


async def submit_job(request: Request, job: JobRequest) -> Response:
    state = _state(request)
    state.authorize(request.headers.get("authorization"))
    state.ready_model()
    assert state.jobs is not None
    try:
        created = await asyncio.to_thread(
            state.jobs.submit, job.input, job.output, job.inputFormat, job.outputFormat
        )
    except ValueError as exc:
        raise InputValidationError(str(exc)) from exc
    return _json(created.to_dict(), 202, headers={"Location": f"/jobs/{created.id}"})


async def get_job(request: Request, job_id: str) -> Response:
    state = _state(request)
    state.authorize(request.headers.get("authorization"))
    assert state.jobs is not None
    return _json((await asyncio.to_thread(state.jobs.get, job_id)).to_dict())


async def cancel_job(request: Request, job_id: str) -> Response:
    """Cancel a job: answered with the job; a running one turns Cancelled at its next chunk."""
    state = _state(request)
    state.authorize(request.headers.get("authorization"))
    assert state.jobs is not None
    return _json((await asyncio.to_thread(state.jobs.cancel, job_id)).to_dict())


async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


# The route table: method, path, endpoint, whether the route scores (concurrency-limited), auth.
ROUTES: list[tuple[str, str, Callable[..., Any], bool]] = [
    ("GET", "/healthz", healthz, False),
    ("GET", "/readyz", readyz, False),
    ("GET", "/metrics", metrics, False),
    ("POST", "/score", score, True),
    ("POST", "/workspaces/{workspace}/services/{service}/execute", execute, True),
    ("POST", "/jobs", submit_job, True),
    ("GET", "/jobs/{job_id}", get_job, False),
    ("DELETE", "/jobs/{job_id}", cancel_job, False),
    (
        "POST",
        "/workspaces/{workspace}/services/{service}/jobs",
        classic_bes.create_job,
        True,
    ),
    ("POST", "/workspaces/{workspace}/services/{service}/jobs/{job_id}/start", classic_bes.start_job, False),
    ("GET", "/workspaces/{workspace}/services/{service}/jobs/{job_id}", classic_bes.get_job, False),
    ("DELETE", "/workspaces/{workspace}/services/{service}/jobs/{job_id}", classic_bes.cancel_job, False),
    ("GET", "/v2", v2_server_metadata, False),
    ("GET", "/v2/health/live", v2_live, False),
    ("GET", "/v2/health/ready", v2_ready, False),
    ("GET", "/v2/models/{name}", v2_model_metadata, False),
    ("GET", "/v2/models/{name}/ready", v2_model_ready, False),
    ("POST", "/v2/models/{name}/infer", v2_infer, True),
    ("POST", "/v2/models/{name}/versions/{version}/infer", v2_infer_version, True),
]


def _is_limited(method: str, path: str) -> bool:
    if method != "POST":
        return False
    return (
        path in ("/score", "/jobs")
        or (path.startswith("/v2/models/") and path.endswith("/infer"))
        or classic.execute_path_matches(path)
        or (classic.is_classic_path(path) and path.endswith("/jobs"))
    )


def _register_error_handlers(app: FastAPI) -> None:
    async def scorer_error(request: Request, exc: Exception) -> Response:
        status, body, headers = render_error(exc, classic_envelope=classic.is_classic_path(request.url.path))
        _log_error(request, status, getattr(exc, "message", str(exc)))
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        _log_error(request, 422, problems)
        if classic.is_classic_path(request.url.path):
            body = classic.error_envelope(422, problems, "invalid_request")
        else:
            body = error_body(problems, "invalid_request")
        return Response(body, status_code=422, media_type=JSON)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status, body, headers = render_error(exc, classic_envelope=classic.is_classic_path(request.url.path))
        _log_error(request, status, str(exc.detail))
        return Response(body, status_code=status, media_type=JSON, headers=headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        _log_error(request, 500, "internal error")
        status, body, _ = render_error(exc, classic_envelope=classic.is_classic_path(request.url.path))
        return Response(body, status_code=status, media_type=JSON)

    app.add_exception_handler(ScorerError, scorer_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _log_error(request: Request, status: int, message: str) -> None:
    state: ScorerState | None = getattr(request.app.state, "kstudio", None)
    if state is None or state.samples is None:
        return
    route = getattr(request.scope.get("route"), "path", request.url.path)
    state.samples.record(
        route=route, status=status, request=getattr(request.state, "body", None), response=None, error=message
    )


def create_app(
    settings: ScorerSettings,
    *,
    model: ScoringModel | None = None,
    store_factory: Callable[[], ObjectStore] | None = None,
) -> FastAPI:
    """Build the app. The model loads in the background on startup (unless given ready); /readyz says when."""
    factory = store_factory or (lambda: ObjectStore(StorageSettings.from_env()))
    scorer_metrics = ScorerMetrics()
    state = ScorerState(
        settings=settings,
        model=model or ScoringModel(settings, factory),
        metrics=scorer_metrics,
        store_factory=factory,
        keys=KeyRing(settings.keys_dir, settings.keys_reload_seconds)
        if settings.auth_enabled and settings.keys_dir
        else None,
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
        if state.model.ready:
            state.model_became_ready()
        else:
            state.load_task = asyncio.create_task(_load(state))
        try:
            yield
        finally:
            if state.load_task is not None and not state.load_task.done():
                state.load_task.cancel()
            state.jobs.close()
            if state.batcher is not None:
                state.batcher.close()
            if state.samples is not None:
                state.samples.close()

    app = FastAPI(
        title=f"kstudio scorer: {settings.model_name}",
        version="0.1.0",
        description="Scores rows with one trained model (.ilearner). "
        "Request schemas follow the model's input schema.",
        lifespan=lifespan,
    )
    app.state.kstudio = state
    for method, path, endpoint, _limited in ROUTES:
        app.add_api_route(path, endpoint, methods=[method], response_class=Response)
    _register_error_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build_openapi(app, state.model, settings)
        if state.model.ready:  # cache only the schema of the loaded model
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(HotPathMiddleware, state=lambda: state)
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_concurrent=settings.max_concurrent_calls,
        retry_after_seconds=settings.retry_after_seconds,
        is_limited=_is_limited,
    )
    app.add_middleware(MetricsMiddleware, metrics=scorer_metrics)
    return app


def _job_store(settings: ScorerSettings, factory: Callable[[], ObjectStore]) -> JobStore:
    if settings.jobs_store_uri:
        return ObjectJobStore(factory(), S3Uri.parse(settings.jobs_store_uri))
    return MemoryJobStore(settings.jobs_max_kept)


async def _load(state: ScorerState) -> None:
    try:
        await asyncio.to_thread(state.model.load)
    except ModelLoadError as exc:
        if state.on_load_failure is not None:
            state.on_load_failure(exc)
        return
    state.model_became_ready()
