"""Azure ML Studio (classic) request-response wire formats, so the client code its portal generated works
unchanged against `POST /workspaces/{workspace}/services/{service}/execute` (and `/score`).

Requests (either input shape; values may be strings, see request_columns.py):
  table:   {"Inputs": {"input1": {"ColumnNames": [...], "Values": [[...], ...]}}, "GlobalParameters": {}}
  records: {"Inputs": {"input1": [{"col": value, ...}, ...]}, "GlobalParameters": {}}   (format=swagger)
Responses follow the request's shape, every value rendered as a string as classic did:
  table:   {"Results": {"output1": {"type": "table", "value": {"ColumnNames": [...],
            "ColumnTypes": [...] (details=true only), "Values": [["...", ...], ...]}}}}
  records: {"Results": {"output1": [{"Scored Labels": "...", ...}, ...]}}
Scored columns are named as classic's Score Model named them: `Scored Labels`; two classes: `Scored
Probabilities` (of the positive class, the second of the sorted classes); more classes: one `Scored
Probabilities for Class "<class>"` per class; regression: `Scored Labels` (the predicted value); a
transform: its transformed columns, by name.
Errors: {"error": {"code", "message", "details": [{"code", "target", "message"}]}}, same HTTP statuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import numpy as np
import orjson

from kstudio_scorer.errors import MalformedRequestError
from kstudio_scorer.model.columns import Column, Columns
from kstudio_scorer.model.scored_columns import (
    SCORED_LABELS,
    SCORED_PROBABILITIES,
    SCORED_VALUES,
    OutputProjection,
    probability_column,
)
from kstudio_scorer.model.served_model import Prediction
from kstudio_scorer.protocols.request_columns import columns_from_records, columns_from_table

API_VERSIONS = ("2.0",)
OUTPUT_NAME = "output1"

Shape = Literal["table", "records"]

# Top-level error codes as classic's envelope had them, by HTTP status.
_ERROR_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    422: "BadArgument",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}
# Column types as classic's details=true listed them (.NET type names).
_SCHEMA_TYPES = {"number": "Double", "integer": "Int64", "string": "String", "boolean": "Boolean"}


class UnsupportedApiVersionError(MalformedRequestError):
    """api-version other than the ones classic clients send (400)."""

    code = "unsupported_api_version"
    target = "api-version"


@dataclass(frozen=True)
class ClassicQuery:
    """The query parameters classic clients send: api-version=2.0, details=true, format=swagger."""

    details: bool = False
    swagger: bool = False

    @classmethod
    def parse(cls, query_string: str) -> ClassicQuery:
        """Raises UnsupportedApiVersionError for an api-version classic never had (absent = 2.0)."""
        params = {k.lower(): v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        version = params.get("api-version")
        if version is not None and version not in API_VERSIONS:
            raise UnsupportedApiVersionError(
                f"api-version {version!r} is not supported; use api-version={API_VERSIONS[0]} "
                "(the version Azure ML Studio (classic) clients send)"
            )
        return cls(
            details=params.get("details", "").lower() == "true",
            swagger=params.get("format", "").lower() == "swagger",
        )


@dataclass
class ClassicRequest:
    """A parsed request: validated model columns, plus the input as sent (echoed if projected)."""

    columns: Columns
    shape: Shape
    input_names: list[str]
    input_rows: list[list[Any]] = field(repr=False)


def parse_request(payload: Any, schema: Sequence[Column], max_rows: int) -> ClassicRequest:
    """The payload of `read_inputs` in either classic shape -> ClassicRequest (errors name row/column)."""
    if isinstance(payload, dict):
        columns = columns_from_table(payload, schema, max_rows)
        return ClassicRequest(columns, "table", list(payload["ColumnNames"]), payload["Values"])
    columns = columns_from_records(payload, schema, max_rows)
    names = list(dict.fromkeys(k for rec in payload for k in rec))
    rows = [[rec.get(k) for k in names] for rec in payload]
    return ClassicRequest(columns, "records", names, rows)


# --- rendering -----------------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A value as classic rendered it: .NET's default ToString (15 significant digits, True/False, "")."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "NaN"
        return format(float(value), ".15g")
    return str(value)


def _type_of_labels(labels: Sequence[Any]) -> str:
    sample = labels[0] if len(labels) else ""
    if isinstance(sample, bool | np.bool_):
        return "Boolean"
    if isinstance(sample, int | np.integer):
        return "Int64"
    if isinstance(sample, float | np.floating):
        return "Double"
    return "String"


def scored_columns(
    pred: Prediction, classes: Sequence[Any], projection: OutputProjection
) -> list[tuple[str, str, list[str]]]:
    """(name, classic type, values as strings) of every projected scored column, classic's names (a
    transform: its transformed columns)."""
    if pred.transformed is not None:
        return [
            (name, "Double", [text(v) for v in pred.transformed[:, k].tolist()])
            for k, name in enumerate(projection.columns)
        ]
    out: list[tuple[str, str, list[str]]] = []
    for wanted in projection.columns:
        if wanted == SCORED_LABELS and pred.labels is not None:
            labels = pred.labels.tolist()
            out.append((SCORED_LABELS, _type_of_labels(labels), [text(v) for v in labels]))
        elif wanted == SCORED_PROBABILITIES and pred.probabilities is not None:
            proba = pred.probabilities
            if len(classes) == 2:
                out.append((SCORED_PROBABILITIES, "Double", [text(v) for v in proba[:, 1].tolist()]))
            else:
                for k, cls in enumerate(classes):
                    out.append((probability_column(cls), "Double", [text(v) for v in proba[:, k].tolist()]))
        elif wanted == SCORED_VALUES and pred.values is not None:
            out.append((SCORED_LABELS, "Double", [text(v) for v in pred.values.tolist()]))
    return out


def render_response(
    request: ClassicRequest,
    pred: Prediction,
    classes: Sequence[Any],
    projection: OutputProjection,
    schema: Sequence[Column],
    *,
    details: bool,
) -> bytes:
    scored = scored_columns(pred, classes, projection)
    names = [name for name, _, _ in scored]
    types = [kind for _, kind, _ in scored]
    columns = [values for _, _, values in scored]
    rows: list[list[str]] = [list(r) for r in zip(*columns, strict=True)] if columns else []
    if projection.include_inputs:
        known = {c.name: _SCHEMA_TYPES.get(c.type, "String") for c in schema}
        echoed = [n for n in request.input_names if n not in names]
        positions = [request.input_names.index(n) for n in echoed]
        names = echoed + names
        types = [known.get(n, "String") for n in echoed] + types
        scored_rows = rows or [[] for _ in request.input_rows]
        rows = [
            [text(row[j]) for j in positions] + scored_row
            for row, scored_row in zip(request.input_rows, scored_rows, strict=True)
        ]
    if request.shape == "records":
        return orjson.dumps({"Results": {OUTPUT_NAME: [dict(zip(names, r, strict=True)) for r in rows]}})
    value: dict[str, Any] = {"ColumnNames": names}
    if details:
        value["ColumnTypes"] = types
    value["Values"] = rows
    return orjson.dumps({"Results": {OUTPUT_NAME: {"type": "table", "value": value}}})


def _pascal(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


# Our error codes whose case classic's REST API error reference names (learn.microsoft.com, "Azure Machine
# Learning Studio (classic) REST API Error Codes"): (class, detail code). Classic answered a value that does
# not parse with 400 and a throttled call with 503; the statuses stay ours (422, 429), the words are its.
_REFERENCE_CODES = {
    "invalid_input": ("BadUserArgument", "InputParseError"),
    "malformed_request": ("BadArgument", "RequestBodyInvalid"),
    "unsupported_api_version": ("BadArgument", "BadVersionCall"),
    "unauthorized": ("Unauthorized", "ScoreRequestUnauthorized"),
    "too_many_requests": ("ServiceUnavailable", "TooManyConcurrentRequests"),
}


def error_envelope(status: int, message: str, code: str, target: str | None = None) -> bytes:
    """classic's error body: the class of the error as the top-level code, the specific code and target in
    details; both as classic's error reference names them where it has the case, else by HTTP status and
    our own code."""
    top, detail_code = _REFERENCE_CODES.get(code, (None, _pascal(code)))
    top = top or _ERROR_CODES.get(status, "InternalError" if status >= 500 else "BadArgument")
    detail = {"code": detail_code, "target": target or "request", "message": message}
    return orjson.dumps({"error": {"code": top, "message": message, "details": [detail]}})
