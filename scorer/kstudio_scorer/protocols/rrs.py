"""Azure ML Studio (classic) request-response scoring: `POST /score`.

Request:  {"Inputs": {"input1": [{col: value, ...}, ...]}, "GlobalParameters": {}}
Response: {"Results": {"output1": [{"Scored Labels": ..., "Scored Probabilities": {class: p}}, ...]}}
(regression: "Scored Values"; a transform: its transformed columns by name). Which scored columns are
returned, and whether the input columns are echoed, is the endpoint's output projection
(model/scored_columns.py, Azure's "Project Columns").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from kstudio_scorer.errors import MalformedRequestError
from kstudio_scorer.model.scored_columns import (
    SCORED_LABELS,
    SCORED_PROBABILITIES,
    SCORED_VALUES,
    OutputProjection,
)
from kstudio_scorer.model.served_model import Prediction


def read_inputs(body: bytes) -> tuple[str, Any]:
    """The one input of an `{"Inputs": {...}, "GlobalParameters": {...}}` body: (its name, its payload).

    The payload is a list of row objects (records) or a classic `{"ColumnNames", "Values"}` table.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Inputs"), dict):
        raise MalformedRequestError(
            'body must be {"Inputs": {"input1": [{...}, ...]}, "GlobalParameters": {}} or '
            '{"Inputs": {"input1": {"ColumnNames": [...], "Values": [[...], ...]}}, "GlobalParameters": {}}'
        )
    params = doc.get("GlobalParameters", {})
    if params is not None and not isinstance(params, dict):
        raise MalformedRequestError("GlobalParameters must be an object")
    inputs = doc["Inputs"]
    if "input1" in inputs:
        return "input1", inputs["input1"]
    if len(inputs) == 1:
        name, payload = next(iter(inputs.items()))
        return str(name), payload
    raise MalformedRequestError(
        f"Inputs must hold one input (this service has one, input1); got {len(inputs)}: {', '.join(inputs)}"
    )


def scored_lists(pred: Prediction, classes: Sequence[Any], wanted: Sequence[str]) -> dict[str, list[Any]]:
    """Scored columns as Python lists (one value per row), only those `wanted` (a transform: all of its
    transformed columns, `wanted` being their names)."""
    if pred.transformed is not None:
        return {name: pred.transformed[:, k].tolist() for k, name in enumerate(wanted)}
    out: dict[str, list[Any]] = {}
    for name in wanted:
        if name == SCORED_LABELS and pred.labels is not None:
            out[name] = pred.labels.tolist()
        elif name == SCORED_PROBABILITIES and pred.probabilities is not None:
            keys = [str(c) for c in classes]
            out[name] = [dict(zip(keys, row, strict=True)) for row in pred.probabilities.tolist()]
        elif name == SCORED_VALUES and pred.values is not None:
            out[name] = pred.values.tolist()
    return out


def render_response(
    pred: Prediction, records: list[dict[str, Any]], classes: Sequence[Any], projection: OutputProjection
) -> bytes:
    lists = scored_lists(pred, classes, projection.columns)
    names = list(lists)
    rows: list[dict[str, Any]]
    if len(names) == 1:
        only = names[0]
        rows = [{only: v} for v in lists[only]]
    else:
        rows = [dict(zip(names, values, strict=True)) for values in zip(*lists.values(), strict=True)]
    if projection.include_inputs:
        rows = [{**rec, **row} for rec, row in zip(records, rows, strict=True)]
    return orjson.dumps({"Results": {"output1": rows}})
