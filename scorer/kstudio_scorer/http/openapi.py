"""The OpenAPI document, with request schemas generated from the served model's input schema.

FastAPI describes the routes; this module replaces the bodies of the hot routes (which parse raw bytes
for speed) with JSON Schemas built from `manifest.inputSchema`: column names, types, nullability, and the
row limit. Until the model is loaded, the generic shapes are served (and not cached).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

from kstudio_scorer.model.columns import Column
from kstudio_scorer.model.scored_columns import SCORED_COLUMNS
from kstudio_scorer.protocols.oip import output_names

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kstudio_scorer.model.served_model import ScoringModel
    from kstudio_scorer.settings import ScorerSettings

_JSON_TYPES = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}
_V2_TYPES = {
    "number": ["FP64", "FP32", "INT64", "INT32"],
    "integer": ["INT64", "INT32", "FP64"],
    "string": ["BYTES"],
    "boolean": ["BOOL"],
}
EXECUTE = "/workspaces/{workspace}/services/{service}/execute"
CLASSIC_JOBS = "/workspaces/{workspace}/services/{service}/jobs"
PROTECTED = (
    "/score",
    EXECUTE,
    CLASSIC_JOBS,
    CLASSIC_JOBS + "/{job_id}",
    CLASSIC_JOBS + "/{job_id}/start",
    "/jobs",
    "/jobs/{job_id}",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)

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
    typed: dict[str, Any] = {"type": _JSON_TYPES[col.type]}
    if categories:
        typed["examples"] = categories[:5]
    if col.type == "boolean":
        return typed
    return {"anyOf": [typed, {"type": "null"}], "description": f"{col.type}; null = missing value"}


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
        "description": "one row: every input column of the model, no other",
        "required": [c.name for c in model.schema],
        "additionalProperties": False,
        "properties": {c.name: _column_schema(c, cats.get(c.name)) for c in model.schema},
        "example": {c.name: _example_value(c, cats.get(c.name)) for c in model.schema},
    }


def _score_request(model: ScoringModel | None, max_rows: int, sample_data: bool) -> dict[str, Any]:
    row: dict[str, Any] = _row_schema(model, sample_data) if model is not None else {"type": "object"}
    return {
        "type": "object",
        "required": ["Inputs"],
        "properties": {
            "Inputs": {
                "type": "object",
                "required": ["input1"],
                "additionalProperties": False,
                "properties": {
                    "input1": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": row}
                },
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
    return {
        "type": "object",
        "required": ["Inputs"],
        "properties": {
            "Inputs": {
                "type": "object",
                "required": ["input1"],
                "additionalProperties": False,
                "properties": {"input1": {"oneOf": [table, records]}},
            },
            "GlobalParameters": {"type": "object"},
        },
    }


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
        datatypes = sorted({d for c in model.schema for d in _V2_TYPES[c.type]})
        description = (
            f"one tensor per column ({', '.join(names)}; shape [N] or [N, 1]) "
            "or a single 2-D tensor of shape "
            f"[N, {len(names)}] with the columns in that order"
        )
        outputs = list(output_names(model.task))
    else:
        datatypes, description, outputs = sorted({d for v in _V2_TYPES.values() for d in v}), "tensors", []
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
        400: "malformed request",
        401: "missing or invalid API key",
        404: "no such model or job",
        413: "body or row count over the limit",
        422: "a value does not fit the input schema (names row and column)",
        429: "too many concurrent calls (see Retry-After)",
        503: "model not ready",
    }
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {str(s): {"description": text[s], "content": content} for s in statuses}


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
    paths = doc["paths"]
    score_op = paths["/score"]["post"]
    score_op["summary"] = "Score rows (Azure ML Studio request-response format)"
    score_op["requestBody"] = _body("ScoreRequest")
    score_op["responses"] = {
        "200": {
            "description": "scored rows",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScoreResponse"}}},
        },
        **_errors(400, 401, 413, 422, 429, 503),
    }
    execute_op = paths[EXECUTE]["post"]
    execute_op["summary"] = "Score rows (Azure ML Studio (classic) request-response, unchanged clients)"
    execute_op["description"] = (
        "Query: api-version=2.0, details=true (adds ColumnTypes), format=swagger (records in and out). "
        "The answer has the request's shape, every value a string; scored columns are named as "
        "classic's Score Model named them."
    )
    execute_op["parameters"] = [
        *execute_op.get("parameters", []),
        *(
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in (
                ("api-version", {"type": "string", "enum": ["2.0"]}),
                ("details", {"type": "string", "enum": ["true", "false"]}),
                ("format", {"type": "string", "enum": ["swagger"]}),
            )
        ),
    ]
    execute_op["requestBody"] = _body("ClassicRequest")
    execute_op["responses"] = {
        "200": {"description": "scored rows, classic shape"},
        **_errors(400, 401, 413, 422, 429, 503, schema="ClassicError"),
    }
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        op = paths[path]["post"]
        op["summary"] = "Open Inference Protocol V2 inference"
        op["requestBody"] = _body("InferenceRequest")
        op["responses"] = {
            "200": {"description": "inference response"},
            **_errors(400, 401, 404, 413, 422, 429, 503),
        }
    for item in paths.values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param.get("name") == "name":
                    param["schema"] = {"type": "string", "enum": [settings.model_name]}
                elif param.get("name") == "version" and loaded is not None:
                    param["schema"] = {"type": "string", "enum": [loaded.digest]}
    if settings.auth_enabled:
        comps["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        for path in PROTECTED:
            for op in paths.get(path, {}).values():
                op["security"] = [{"bearerAuth": []}]
    return doc
