"""The scoring endpoints: RRS `score`, classic `execute` and OIP V2 `v2_infer`, served by the fast routes.

Each picks the model that answers (the endpoint's traffic split, model/traffic.py) and notes it in the call,
parses its protocol's body (protocols/), has that model's micro-batcher score the columns and renders the
answer in the same protocol, and hands a copy to the mirror if there is one; a bad request raises a
ScorerError, which the fast routes render. By the time an endpoint runs, the key has been checked (auth.py)
and the body read (fast_routes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kstudio_scorer.http.routing import Route
from kstudio_scorer.http.state import ScorerState
from kstudio_scorer.model.columns import Columns
from kstudio_scorer.model.served_model import Prediction
from kstudio_scorer.model.traffic import Served
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
    session: bytes | None = None  # the x-kstudio-session header: the same model for the same session
    served: Served | None = None  # the model that answers, once the endpoint picked it
    predicting: bool = False  # the request passed validation and went to the model


async def score(state: ScorerState, call: ScoringCall) -> bytes:
    """Azure ML request-response: records answer in today's shape; a classic table, or records with
    `format=swagger`, answer in classic's shape (see protocols/classic.py)."""
    served = call.served = state.choose(call.session)
    m = served.model
    _, payload = rrs.read_inputs(call.body)
    query = classic.ClassicQuery.parse(call.query_string) if call.query_string else classic.ClassicQuery()
    if isinstance(payload, dict) or query.swagger:
        return await _score_classic(state, call, payload, query)
    columns = columns_from_records(payload, m.schema, state.settings.max_rows)
    records: list[dict[str, Any]] = payload
    pred = await _predict(served, call, columns)
    state.shadow(served, call.route.path, columns, pred, call.body)
    assert served.projection is not None
    out = rrs.render_response(pred, records, m.classes, served.projection)
    return _scored(state, call, columns.n_rows, out)


async def execute(state: ScorerState, call: ScoringCall) -> bytes:
    """Azure ML Studio (classic) request-response: classic in, classic out. The workspace and service in
    the path are kept for the classic URL only (the endpoint's address selects its models)."""
    query = classic.ClassicQuery.parse(call.query_string)
    call.served = state.choose(call.session)
    _, payload = rrs.read_inputs(call.body)
    return await _score_classic(state, call, payload, query)


async def _score_classic(
    state: ScorerState, call: ScoringCall, payload: Any, query: classic.ClassicQuery
) -> bytes:
    served = call.served
    assert served is not None and served.projection is not None
    m = served.model
    request = classic.parse_request(payload, m.schema, state.settings.max_rows)
    pred = await _predict(served, call, request.columns)
    state.shadow(served, call.route.path, request.columns, pred, call.body)
    projection = served.projection
    out = classic.render_response(request, pred, m.classes, projection, m.schema, details=query.details)
    return _scored(state, call, request.columns.n_rows, out)


async def v2_infer(state: ScorerState, call: ScoringCall) -> bytes:
    """Open Inference Protocol V2: the endpoint's name (its split), a model's version (its sha256) or the
    name of one of its models in the path; the answer's model_name and model_version name the model that
    answered."""
    name, version = call.path_params["name"], call.path_params.get("version")
    served = call.served = state.addressed(name, version, call.session)
    m = served.model
    doc = oip.parse_request(call.body, call.binary_header)
    wanted = oip.requested_outputs(doc, oip.output_names(m.task, m.output_columns))
    columns = oip.to_columns(doc, m.schema, state.settings.max_rows)
    pred = await _predict(served, call, columns)
    state.shadow(served, call.route.path, columns, pred, call.body)
    out = oip.render_response(doc, pred, wanted, m.name, m.digest, m.output_columns)
    return _scored(state, call, columns.n_rows, out)


async def _predict(served: Served, call: ScoringCall, columns: Columns) -> Prediction:
    assert served.batcher is not None
    call.predicting = True
    return await served.batcher.submit(columns)


def _scored(state: ScorerState, call: ScoringCall, rows: int, out: bytes) -> bytes:
    state.metrics.rows.labels(call.route.path).inc(rows)
    state.record_success(call.route.path, call.body, out)
    return out
