"""The OpenAPI document: every route of the table (routes.py), request schemas from the served model.

FastAPI describes the routes it serves (their path parameters and pydantic bodies). The fast routes parse
raw bytes and have no FastAPI endpoint: their operations are written here from the table, with request
schemas built from `manifest.inputSchema` (column names, types, nullability, the row limit). The routes
that need the key carry the bearer scheme. Until the model is loaded, the generic shapes are served (and
not cached).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

from kstudio_scorer.http import classic_job_endpoints as classic_jobs
from kstudio_scorer.http import status_endpoints as status
from kstudio_scorer.http.routes import ROUTES
from kstudio_scorer.http.routing import Route
from kstudio_scorer.http.scoring_endpoints import execute, score, v2_infer
from kstudio_scorer.model.columns import Column
from kstudio_scorer.model.scored_columns import SCORED_COLUMNS
from kstudio_scorer.protocols.oip import output_names
from kstudio_scorer.protocols.request_columns import V2_DATATYPES, accepted_v2_datatypes

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kstudio_scorer.model.served_model import ScoringModel
    from kstudio_scorer.settings import ScorerSettings

_JSON_TYPES = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong (safe to show)"},
        "code": {"type": "string"},
        "row": {"type": "integer", "description": "0-based row of the offending value"},
        "column": {"type": "string", "description": "column of the offending value"},
    },
}


def _column_schema(col: Column, categories: list[str] | None) -> dict[str, Any]:
    """A row's value of `col`. Numeric and boolean columns also take the value as text, as the samples
    the classic portal generated send it (request_columns.py reads it by the column's type)."""
    typed: dict[str, Any] = {"type": _JSON_TYPES[col.type]}
    if categories:
        typed["examples"] = categories[:5]
    as_text = {"type": "string"}
    if col.type == "boolean":
        return {"anyOf": [typed, as_text], "description": 'boolean, or as text: "true"/"false"/"1"/"0"'}
    if col.type == "string":
        return {"anyOf": [typed, {"type": "null"}], "description": "string; null = missing value"}
    return {
        "anyOf": [typed, as_text, {"type": "null"}],
        "description": f'{col.type}, or as text ("3.5"); null or "" = missing value',
    }


def _example_value(col: Column, categories: list[str] | None) -> Any:
    if col.type == "string":
        return categories[0] if categories else "text"
    return {"number": 1.0, "integer": 1, "boolean": False}[col.type]


def _row_schema(model: ScoringModel, sample_data: bool) -> dict[str, Any]:
    assert model.manifest is not None
    # Categories are values of the training data: shown only when the endpoint enables sample data.
    cats = {c.name: c.categories for c in model.manifest.inputSchema} if sample_data else {}
    return {
        "type": "object",
        "description": "one row: every input column of the model; other columns are ignored",
        "required": [c.name for c in model.schema],
        "properties": {c.name: _column_schema(c, cats.get(c.name)) for c in model.schema},
        "example": {c.name: _example_value(c, cats.get(c.name)) for c in model.schema},
    }


def _score_request(model: ScoringModel | None, max_rows: int, sample_data: bool) -> dict[str, Any]:
    row: dict[str, Any] = _row_schema(model, sample_data) if model is not None else {"type": "object"}
    return _request_response_body({"type": "array", "minItems": 1, "maxItems": max_rows, "items": row})


def _request_response_body(input1: dict[str, Any]) -> dict[str, Any]:
    """`{"Inputs": {"input1": ...}, "GlobalParameters": {}}`, the body of both request-response formats."""
    return {
        "type": "object",
        "required": ["Inputs"],
        "properties": {
            "Inputs": {
                "type": "object",
                "required": ["input1"],
                "additionalProperties": False,
                "properties": {"input1": input1},
            },
            "GlobalParameters": {"type": "object"},
        },
    }


def _classic_request(model: ScoringModel | None, max_rows: int) -> dict[str, Any]:
    """Both classic shapes; cells may be strings ("3.5", "true"; "" = missing) as the portal samples send."""
    names: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    if model is not None:
        names["example"] = [c.name for c in model.schema]
    cell = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    table = {
        "type": "object",
        "required": ["ColumnNames", "Values"],
        "properties": {
            "ColumnNames": names,
            "Values": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_rows,
                "items": {"type": "array", "items": cell},
            },
        },
    }
    records = {
        "type": "array",
        "minItems": 1,
        "maxItems": max_rows,
        "items": {"type": "object", "additionalProperties": cell},
    }
    return _request_response_body({"oneOf": [table, records]})


CLASSIC_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "target": {"type": "string", "description": "the column, parameter or request"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _score_response(task: str | None) -> dict[str, Any]:
    cols = SCORED_COLUMNS.get(task or "", SCORED_COLUMNS["classification"] + SCORED_COLUMNS["regression"])
    props: dict[str, Any] = {}
    for c in cols:
        props[c] = (
            {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "class -> probability",
            }
            if c == "Scored Probabilities"
            else {}
        )
    row = {"type": "object", "properties": props, "description": "scored columns (and inputs, if projected)"}
    return {
        "type": "object",
        "properties": {
            "Results": {"type": "object", "properties": {"output1": {"type": "array", "items": row}}}
        },
    }


def _infer_request(model: ScoringModel | None, max_rows: int) -> dict[str, Any]:
    if model is not None:
        names = [c.name for c in model.schema]
        datatypes = sorted(accepted_v2_datatypes(c.type for c in model.schema))
        description = (
            f"one tensor per column ({', '.join(names)}; shape [N] or [N, 1]) "
            "or a single 2-D tensor of shape "
            f"[N, {len(names)}] with the columns in that order"
        )
        outputs = list(output_names(model.task, model.output_columns))
    else:
        datatypes, description, outputs = sorted(accepted_v2_datatypes(V2_DATATYPES)), "tensors", []
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
                "maxItems": 2,
            },
            "datatype": {"type": "string", "enum": datatypes},
            "parameters": {"type": "object"},
            "data": {"type": "array", "maxItems": max_rows},
        },
    }
    requested: dict[str, Any] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", **({"enum": outputs} if outputs else {})}},
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "items": tensor, "description": description},
            "outputs": {"type": "array", "items": requested},
        },
    }


def _body(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    text = {
        400: "malformed request (or, on the classic routes, another api-version)",
        401: "missing or invalid API key",
        404: "no such model or job",
        413: "body or row count over the limit",
        422: "a value does not fit the input schema (names row and column)",
        429: "too many concurrent calls (see Retry-After)",
        503: "model not ready (or the scorer is draining)",
    }
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {str(s): {"description": text[s], "content": content} for s in statuses}


@dataclass(frozen=True)
class _ScoringOperation:
    """What the table does not say of a scoring route's operation: its words, body and answer."""

    summary: str
    request: str  # the body's schema, in components/schemas
    answer: dict[str, Any]
    description: str | None = None
    query: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_SCORING_OPERATIONS: dict[Callable[..., Any], _ScoringOperation] = {
    score: _ScoringOperation(
        "Score rows (Azure ML Studio request-response format)",
        "ScoreRequest",
        {
            "description": "scored rows",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreResponse"}}},
        },
    ),
    execute: _ScoringOperation(
        "Score rows (Azure ML Studio (classic) request-response, unchanged clients)",
        "ClassicRequest",
        {"description": "scored rows, classic shape"},
        description="Query: api-version=2.0, details=true (adds ColumnTypes), format=swagger (records in "
        "and out). The answer has the request's shape, every value a string; scored columns are named as "
        "classic's Score Model named them.",
        query=[
            ("api-version", {"type": "string", "enum": ["2.0"]}),
            ("details", {"type": "string", "enum": ["true", "false"]}),
            ("format", {"type": "string", "enum": ["swagger"]}),
        ],
    ),
    v2_infer: _ScoringOperation(
        "Open Inference Protocol V2 inference", "InferenceRequest", {"description": "inference response"}
    ),
}


def _operation_id(route: Route) -> str:
    """As FastAPI names an operation: the route's name and path, then the method."""
    words = re.sub(r"\W", "_", route.name + route.path)
    return f"{words}_{route.method.lower()}"


# Besides every POST route, these answer 503 while the model is not ready (or the pod drains).
_READINESS: frozenset[Callable[..., Any]] = frozenset({status.readyz, status.v2_ready, status.v2_model_ready})


def _error_statuses(route: Route, auth_enabled: bool) -> list[int]:
    """Every error status the layers and the endpoint of `route` may answer, from the route table: a body
    can be malformed (400), too large (413) or not fit the schema (422), and waits for the model (503);
    classic routes refuse another api-version (400); a key may be missing (401); a name or job may not
    exist (404); a limited route may be busy (429)."""
    body = route.method == "POST"
    return sorted(
        {
            *([400, 413, 422, 503] if body else []),
            *([400] if route.classic else []),
            *([401] if route.needs_key and auth_enabled else []),
            *([404] if {"name", "job_id"} & set(route.params) else []),
            *([429] if route.limited else []),
            *([503] if route.endpoint in _READINESS else []),
        }
    )


def _documented_errors(route: Route, auth_enabled: bool) -> dict[str, Any]:
    return _errors(*_error_statuses(route, auth_enabled), schema="ClassicError" if route.classic else "Error")


def _scoring_operation(route: Route, auth_enabled: bool) -> dict[str, Any]:
    described = _SCORING_OPERATIONS[route.endpoint]
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "title": _title(p)}}
        for p in route.params
    ]
    parameters += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in described.query]
    op: dict[str, Any] = {"summary": described.summary, "operationId": _operation_id(route)}
    if described.description:
        op["description"] = described.description
    if parameters:
        op["parameters"] = parameters
    op["requestBody"] = _body(described.request)
    op["responses"] = {"200": described.answer, **_documented_errors(route, auth_enabled)}
    return op


_BLOB_REFERENCE = {
    "type": "object",
    "description": "an object in S3-compatible storage: BlobEndpoint (the S3 endpoint), AccountName (access "
    "key) and AccountKey (secret key) in the connection string; RelativeLocation /<bucket>/<key> (.csv or "
    ".parquet)",
    "required": ["ConnectionString", "RelativeLocation"],
    "properties": {
        "ConnectionString": {"type": "string"},
        "RelativeLocation": {"type": "string"},
        "BaseLocation": {"type": ["string", "null"]},
        "SasBlobToken": {"type": ["string", "null"]},
    },
}
CLASSIC_JOB_REQUEST = {
    "type": "object",
    "description": "Inputs (or, as classic's older clients send it, Input: the one input) and Outputs",
    "required": ["Outputs"],
    "properties": {
        "Inputs": {"type": "object", "additionalProperties": _BLOB_REFERENCE, "minProperties": 1},
        "Input": _BLOB_REFERENCE,
        "Outputs": {"type": "object", "additionalProperties": _BLOB_REFERENCE, "minProperties": 1},
        "GlobalParameters": {"type": ["object", "null"]},
    },
}
CLASSIC_JOB_STATUS = {
    "type": "object",
    "required": ["StatusCode", "Results", "Details"],
    "properties": {
        "StatusCode": {
            "type": "string",
            "enum": ["NotStarted", "Running", "Failed", "Cancelled", "Finished"],
        },
        "Results": {"type": ["object", "null"], "additionalProperties": _BLOB_REFERENCE},
        "Details": {"type": ["string", "null"]},
    },
}
# The classic BES endpoints read and answer raw JSON: their bodies, as classic's documentation has them.
_CLASSIC_JOB_BODIES: dict[Callable[..., Any], tuple[str | None, dict[str, Any]]] = {
    classic_jobs.create_job: ("ClassicJobRequest", {"type": "string", "description": "the job id"}),
    classic_jobs.get_job: (None, {"$ref": "#/components/schemas/ClassicJobStatus"}),
}


def _generated_operation(route: Route, generated: dict[str, Any], auth_enabled: bool) -> dict[str, Any]:
    """FastAPI's operation of a route, with the errors our layers answer in our shapes (FastAPI lists
    only its own 422, in a shape we never send), and the bodies of the classic BES endpoints."""
    op = dict(generated)
    success = {k: v for k, v in op.get("responses", {}).items() if k.startswith("2")}
    if route.endpoint in _CLASSIC_JOB_BODIES:
        request, answer = _CLASSIC_JOB_BODIES[route.endpoint]
        if request is not None:
            op["requestBody"] = _body(request)
        success = {"200": {"description": "OK", "content": {"application/json": {"schema": answer}}}}
    op["responses"] = {**success, **_documented_errors(route, auth_enabled)}
    return op


def _title(param: str) -> str:
    return param.replace("_", " ").title()


def build_openapi(app: FastAPI, model: ScoringModel, settings: ScorerSettings) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    loaded = model if model.ready else None
    comps = doc.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    schemas["ScoreRequest"] = _score_request(loaded, settings.max_rows, settings.sample_data)
    schemas["ScoreResponse"] = _score_response(loaded.task if loaded else None)
    schemas["InferenceRequest"] = _infer_request(loaded, settings.max_rows)
    schemas["Error"] = ERROR_SCHEMA
    schemas["ClassicRequest"] = _classic_request(loaded, settings.max_rows)
    schemas["ClassicError"] = CLASSIC_ERROR_SCHEMA
    schemas["ClassicJobRequest"] = CLASSIC_JOB_REQUEST
    schemas["ClassicJobStatus"] = CLASSIC_JOB_STATUS
    generated = doc["paths"]
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        method = route.method.lower()
        if route.fast:
            op = _scoring_operation(route, settings.auth_enabled)
        else:
            op = _generated_operation(route, generated[route.path][method], settings.auth_enabled)
        if route.needs_key and settings.auth_enabled:
            op["security"] = [{"bearerAuth": []}]
        paths.setdefault(route.path, {})[method] = op
    doc["paths"] = paths
    for item in paths.values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param.get("name") == "name":
                    param["schema"] = {"type": "string", "enum": [settings.model_name]}
                elif param.get("name") == "version" and loaded is not None:
                    param["schema"] = {"type": "string", "enum": [loaded.digest]}
    if settings.auth_enabled:
        comps["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    return doc
