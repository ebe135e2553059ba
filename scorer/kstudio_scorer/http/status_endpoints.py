"""Endpoints that report, score nothing and need no key: liveness, readiness, metrics, the OpenAPI
document, V2 metadata.

Readiness (`readyz`, `v2_ready`, `v2_model_ready`) turns 503 while the model loads and, from the first
SIGTERM on, while the pod drains (drain.py): the pod leaves the Service while it still scores.
"""

from __future__ import annotations

from fastapi import Request, Response

from kstudio_scorer.errors import ModelNotFoundError
from kstudio_scorer.http.responses import json_response
from kstudio_scorer.http.state import state_of
from kstudio_scorer.protocols.request_columns import v2_datatype

SERVER_NAME = "kstudio-scorer"


async def healthz(request: Request) -> Response:
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    state = state_of(request)
    m = state.model
    if state.reports_ready:
        models = [
            {"name": s.model.name, "sha256": s.model.digest, "weight": s.model.weight} for s in state.split
        ]
        return json_response({"ready": True, "model": m.name, "sha256": m.digest, "models": models})
    if state.drain.active:
        return json_response(
            {"ready": False, "state": "draining", "reason": "shutting down: draining connections"}, 503
        )
    waiting = next((model for model in state.models() if not model.ready), m)
    return json_response(
        {"ready": False, "state": waiting.state, "model": waiting.name, "reason": waiting.error or "loading"},
        503,
    )


async def metrics(request: Request) -> Response:
    return Response(state_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_document(request: Request) -> Response:
    """The OpenAPI document (app.py builds it from the loaded model's schema): a route of the table like
    every other, so its requests are counted under their path."""
    return json_response(request.app.openapi())


async def v2_live(request: Request) -> Response:
    return json_response({"live": True})


async def v2_ready(request: Request) -> Response:
    ready = state_of(request).reports_ready
    return json_response({"ready": ready}, 200 if ready else 503)


async def v2_server_metadata(request: Request) -> Response:
    return json_response({"name": SERVER_NAME, "version": "0.1.0", "extensions": ["binary_tensor_data"]})


async def v2_model_metadata(request: Request, name: str) -> Response:
    """The endpoint's name describes the model answering most of its requests, with every version it
    serves; a model of its split by name, that one."""
    state = state_of(request)
    served = state.addressed(name, None, None) if name != state.settings.model_name else None
    m = served.model if served is not None else state.ready_model()
    versions = [m.digest] if served is not None else [s.model.digest for s in state.split]
    schema = m.schema
    outputs = [
        {"name": "predict", "datatype": "BYTES" if m.task == "classification" else "FP64", "shape": [-1]}
    ]
    if m.task == "transform":
        outputs = [{"name": name, "datatype": "FP64", "shape": [-1]} for name in m.output_columns]
    if m.task == "classification":
        if m.classes and not isinstance(m.classes[0], str):
            outputs[0]["datatype"] = "INT64" if isinstance(m.classes[0], int) else "FP64"
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.classes)]})
    return json_response(
        {
            "name": name,
            "versions": versions,
            "platform": "sklearn",
            "inputs": [{"name": c.name, "datatype": v2_datatype(c.type), "shape": [-1]} for c in schema],
            "outputs": outputs,
            "parameters": {"task": m.task, "classes": m.classes, "sha256": m.digest},
        }
    )


async def v2_model_ready(request: Request, name: str) -> Response:
    state = state_of(request)
    endpoint = state.settings.model_name
    if name != endpoint and state.split.named(name) is None:
        raise ModelNotFoundError(f"no model named {name!r}; this endpoint serves {endpoint!r}")
    ready = state.reports_ready
    return json_response({"name": name, "ready": ready}, 200 if ready else 503)
