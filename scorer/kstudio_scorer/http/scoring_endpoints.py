"""The scoring endpoints: RRS `score`, classic `execute` and OIP V2 `v2_infer`, served by the fast routes.

Each parses its protocol's body (protocols/), has the micro-batcher score the columns and renders the
answer in the same protocol; a bad request raises a ScorerError, which the fast routes render. By the time
an endpoint runs, the key has been checked (auth.py) and the body read (fast_routes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kstudio_scorer.errors import ModelNotFoundError
from kstudio_scorer.http.routing import Route
from kstudio_scorer.http.state import ScorerState
from kstudio_scorer.protocols import classic, oip, rrs
from kstudio_scorer.protocols.request_columns import columns_from_records


@dataclass(slots=True)
class ScoringCall:
    """What a scoring endpoint gets of its request."""

    route: Route
    body: bytes
    query_string: str
    path_params: dict[str, str]
    binary_header: str | None  # the OIP binary extension's Inference-Header-Content-Length


async def score(state: ScorerState, call: ScoringCall) -> bytes:
    """Azure ML request-response: records answer in today's shape; a classic table, or records with
    `format=swagger`, answer in classic's shape (see protocols/classic.py)."""
    m = state.ready_model()
    _, payload = rrs.read_inputs(call.body)
    query = classic.ClassicQuery.parse(call.query_string) if call.query_string else classic.ClassicQuery()
    if isinstance(payload, dict) or query.swagger:
        return await _score_classic(state, call, payload, query)
    columns = columns_from_records(payload, m.schema, state.settings.max_rows)
    records: list[dict[str, Any]] = payload
    assert state.batcher is not None and state.projection is not None
    pred = await state.batcher.submit(columns)
    out = rrs.render_response(pred, records, m.classes, state.projection)
    return _scored(state, call, columns.n_rows, out)


async def execute(state: ScorerState, call: ScoringCall) -> bytes:
    """Azure ML Studio (classic) request-response: classic in, classic out. The workspace and service in
    the path are kept for the classic URL only (one scorer serves one model: the address selects it)."""
    query = classic.ClassicQuery.parse(call.query_string)
    state.ready_model()
    _, payload = rrs.read_inputs(call.body)
    return await _score_classic(state, call, payload, query)


async def _score_classic(
    state: ScorerState, call: ScoringCall, payload: Any, query: classic.ClassicQuery
) -> bytes:
    m = state.model
    request = classic.parse_request(payload, m.schema, state.settings.max_rows)
    assert state.batcher is not None and state.projection is not None
    pred = await state.batcher.submit(request.columns)
    out = classic.render_response(request, pred, m.classes, state.projection, m.schema, details=query.details)
    return _scored(state, call, request.columns.n_rows, out)


async def v2_infer(state: ScorerState, call: ScoringCall) -> bytes:
    """Open Inference Protocol V2, with or without the model's version (its sha256) in the path."""
    name, version = call.path_params["name"], call.path_params.get("version")
    m = state.named_model(name)
    if version is not None and version != m.digest:
        raise ModelNotFoundError(f"model {name!r} has no version {version!r}; it serves {m.digest}")
    doc = oip.parse_request(call.body, call.binary_header)
    wanted = oip.requested_outputs(doc, m.task)
    columns = oip.to_columns(doc, m.schema, state.settings.max_rows)
    assert state.batcher is not None
    pred = await state.batcher.submit(columns)
    out = oip.render_response(doc, pred, wanted, m.name, m.digest)
    return _scored(state, call, columns.n_rows, out)


def _scored(state: ScorerState, call: ScoringCall, rows: int, out: bytes) -> bytes:
    state.metrics.rows.labels(call.route.path).inc(rows)
    state.record_success(call.route.path, call.body, out)
    return out
