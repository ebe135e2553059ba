"""The scoring service behind the HTTP layer: state, the two hot operations, and error rendering.

Both the FastAPI routes (app.py) and the ASGI fast path (hotpath.py) call `score_rrs` / `score_v2` and
render errors with `render_error`, so a request gets the same answer whichever layer served it, and the
mapping from domain errors to HTTP statuses exists in exactly one place (`ERROR_STATUS`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException

from kstudio_core.storage import ObjectStore
from kstudio_scorer.bes.jobs import JobManager
from kstudio_scorer.errors import (
    InputValidationError,
    JobNotFoundError,
    MalformedRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    PredictionError,
    ScorerError,
    TooManyRowsError,
    UnauthorizedError,
)
from kstudio_scorer.http.keys import KeyRing
from kstudio_scorer.http.metrics import ScorerMetrics
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.model.microbatch import MicroBatcher
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
from kstudio_scorer.protocols import classic, oip, rrs
from kstudio_scorer.protocols.request_columns import columns_from_records
from kstudio_scorer.settings import ScorerSettings

ERROR_STATUS: dict[type[ScorerError], int] = {
    MalformedRequestError: 400,
    UnauthorizedError: 401,
    ModelNotFoundError: 404,
    JobNotFoundError: 404,
    TooManyRowsError: 413,
    InputValidationError: 422,
    PredictionError: 422,
    ModelNotReadyError: 503,
}

JSON = "application/json"
SERVER_NAME = "kstudio-scorer"
ROUTE_EXECUTE = "/workspaces/{workspace}/services/{service}/execute"


def _status_of(exc: ScorerError) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def error_body(message: str, code: str, **extra: Any) -> bytes:
    """Every error response has this shape; `error` is a string as the V2 protocol wants."""
    doc: dict[str, Any] = {"error": message, "code": code}
    doc.update({k: v for k, v in extra.items() if v is not None})
    return orjson.dumps(doc)


@dataclass
class ScorerState:
    """Everything the routes need, hung on app.state.kstudio (no module globals)."""

    settings: ScorerSettings
    model: ScoringModel
    metrics: ScorerMetrics
    store_factory: Callable[[], ObjectStore]
    keys: KeyRing | None = None
    batcher: MicroBatcher | None = None
    jobs: JobManager | None = None
    samples: SampleLogger | None = None
    projection: OutputProjection | None = None
    on_load_failure: Callable[[ModelLoadError], None] | None = None
    on_ready: Callable[[], None] | None = None
    load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def authorize(self, authorization: str | None) -> None:
        if self.keys is not None:
            self.keys.check(authorization)

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, and wired to the batcher: only then do scoring routes accept calls."""
        return self.model.ready and self.batcher is not None

    def ready_model(self) -> ScoringModel:
        if not self.ready:
            reason = self.model.error or "the model is still loading"
            raise ModelNotReadyError(f"model {self.model.name} is not ready: {reason}")
        return self.model

    def named_model(self, name: str) -> ScoringModel:
        if name != self.model.name:
            raise ModelNotFoundError(f"no model named {name!r}; this endpoint serves {self.model.name!r}")
        return self.ready_model()

    def model_became_ready(self) -> None:
        m = self.model
        assert m.manifest is not None
        self.projection = OutputProjection.for_task(
            m.task, self.settings.output_columns, self.settings.output_include_inputs
        )
        self.metrics.model_info.labels(m.name, m.digest, m.task).set(1)
        self.metrics.ready.set(1)
        self.batcher = MicroBatcher(
            m.predict,
            self.settings.batch_max_rows,
            self.settings.batch_max_wait_ms / 1000.0,
            on_predict=self.metrics.predict_batch_rows.observe,
        )
        if self.on_ready is not None:
            self.on_ready()


def render_error(exc: Exception, *, classic_envelope: bool = False) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, extra headers) for a domain error or an HTTP error raised below the app.

    `classic_envelope`: the body in Azure ML Studio (classic)'s error shape (the classic routes).
    """
    headers: dict[str, str] = {}
    if isinstance(exc, ScorerError):
        status, message, code = _status_of(exc), exc.message, exc.code
        row, column = getattr(exc, "row", None), getattr(exc, "column", None)
        target = column or getattr(exc, "target", None)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, StarletteHTTPException):
        status, message = exc.status_code, str(exc.detail)
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status, "http_error")
        row = column = target = None
        headers.update(exc.headers or {})
        if status == 413:
            headers["Connection"] = "close"
    else:
        status, message, code, row, column, target = 500, "internal error", "internal", None, None, None
    if classic_envelope:
        return status, classic.error_envelope(status, message, code, target), headers
    return status, error_body(message, code, row=row, column=column), headers


async def score_rrs(
    state: ScorerState, authorization: str | None, body: bytes, query_string: str = ""
) -> bytes:
    """POST /score: authorize, validate, score (micro-batched), render. Raises ScorerError.

    Records answer in today's shape; a classic table, or records with `format=swagger`, answer in
    classic's shape (see classic.py).
    """
    state.authorize(authorization)
    m = state.ready_model()
    _, payload = rrs.read_inputs(body)
    query = classic.ClassicQuery.parse(query_string) if query_string else classic.ClassicQuery()
    if isinstance(payload, dict) or query.swagger:
        return await _score_classic(state, payload, query, "/score", body)
    columns = columns_from_records(payload, m.schema, state.settings.max_rows)
    records: list[dict[str, Any]] = payload
    assert state.batcher is not None and state.projection is not None
    pred = await state.batcher.submit(columns)
    out = rrs.render_response(pred, records, m.classes, state.projection)
    state.metrics.rows.labels("/score").inc(columns.n_rows)
    if state.samples is not None and state.samples.level == "All":
        state.samples.record(route="/score", status=200, request=body, response=out)
    return out


async def score_classic(
    state: ScorerState, authorization: str | None, body: bytes, query_string: str
) -> bytes:
    """POST /workspaces/{ws}/services/{service}/execute: classic in, classic out. Raises ScorerError."""
    state.authorize(authorization)
    query = classic.ClassicQuery.parse(query_string)
    state.ready_model()
    _, payload = rrs.read_inputs(body)
    return await _score_classic(state, payload, query, ROUTE_EXECUTE, body)


async def _score_classic(
    state: ScorerState, payload: Any, query: classic.ClassicQuery, route: str, body: bytes
) -> bytes:
    m = state.model
    request = classic.parse_request(payload, m.schema, state.settings.max_rows)
    assert state.batcher is not None and state.projection is not None
    pred = await state.batcher.submit(request.columns)
    out = classic.render_response(request, pred, m.classes, state.projection, m.schema, details=query.details)
    state.metrics.rows.labels(route).inc(request.columns.n_rows)
    if state.samples is not None and state.samples.level == "All":
        state.samples.record(route=route, status=200, request=body, response=out)
    return out


async def score_v2(
    state: ScorerState,
    name: str,
    version: str | None,
    authorization: str | None,
    binary_header: str | None,
    body: bytes,
) -> bytes:
    """POST /v2/models/{name}[/versions/{version}]/infer. Raises ScorerError."""
    state.authorize(authorization)
    m = state.named_model(name)
    if version is not None and version != m.digest:
        raise ModelNotFoundError(f"model {name!r} has no version {version!r}; it serves {m.digest}")
    doc = oip.parse_request(body, binary_header)
    wanted = oip.requested_outputs(doc, m.task)
    columns = oip.to_columns(doc, m.schema, state.settings.max_rows)
    assert state.batcher is not None
    pred = await state.batcher.submit(columns)
    out = oip.render_response(doc, pred, wanted, m.name, m.digest)
    state.metrics.rows.labels("/v2/models/{name}/infer").inc(columns.n_rows)
    if state.samples is not None and state.samples.level == "All":
        state.samples.record(route="/v2/models/{name}/infer", status=200, request=body, response=out)
    return out
