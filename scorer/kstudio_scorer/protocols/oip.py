"""Open Inference Protocol V2 (KServe/Triton/MLServer) request parsing and response rendering.

Accepts JSON bodies and Triton's binary tensor extension (header `Inference-Header-Content-Length`:
JSON header followed by raw tensor bytes, `parameters.binary_data_size` per input), so tritonclient's
HTTP client works unmodified with or without binary data. Responses are JSON.

Outputs follow MLServer's scikit-learn runtime names: classification `predict` (labels) and
`predict_proba` ([N, K] in the order of the model's classes); regression `predict`. A transform answers
with one FP64 tensor [N] per transformed column, named as the column.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from kstudio_scorer.errors import MalformedRequestError
from kstudio_scorer.model.columns import Column, Columns
from kstudio_scorer.model.served_model import Prediction
from kstudio_scorer.protocols.request_columns import columns_from_v2_inputs

BINARY_HEADER = "inference-header-content-length"

_NP_DTYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def output_names(task: str, transformed: Sequence[str] = ()) -> tuple[str, ...]:
    if task == "transform":
        return tuple(transformed)
    return ("predict", "predict_proba") if task == "classification" else ("predict",)


def _decode_bytes_tensor(raw: bytes, where: str) -> np.ndarray[Any, Any]:
    items: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise MalformedRequestError(f"{where}: truncated BYTES element")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise MalformedRequestError(f"{where}: truncated BYTES element")
        try:
            items.append(raw[pos : pos + n].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise MalformedRequestError(f"{where}: BYTES element is not UTF-8") from exc
        pos += n
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def parse_request(body: bytes, binary_header_length: str | None) -> dict[str, Any]:
    """The inference request as a dict; binary tensors are decoded into numpy arrays under `data`."""
    if binary_header_length is not None:
        try:
            n = int(binary_header_length)
        except ValueError as exc:
            raise MalformedRequestError("Inference-Header-Content-Length must be an integer") from exc
        if n < 0 or n > len(body):
            raise MalformedRequestError("Inference-Header-Content-Length is larger than the body")
        header, rest = body[:n], memoryview(body)[n:]
    else:
        header, rest = body, memoryview(b"")
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedRequestError("the inference request must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list):
        raise MalformedRequestError("'inputs' must be a list of tensors")
    offset = 0
    for t in inputs:
        if not isinstance(t, dict):
            raise MalformedRequestError("each input must be an object")
        params = t.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        where = f"input {t.get('name')!r}"
        if type(size) is not int or size < 0 or offset + size > len(rest):
            raise MalformedRequestError(f"{where}: binary_data_size does not fit the binary part of the body")
        raw = bytes(rest[offset : offset + size])
        offset += size
        datatype = t.get("datatype")
        if datatype == "BYTES":
            t["data"] = _decode_bytes_tensor(raw, where)
        elif datatype in _NP_DTYPES:
            dtype = np.dtype(_NP_DTYPES[datatype]).newbyteorder("<")
            if len(raw) % dtype.itemsize:
                raise MalformedRequestError(f"{where}: {len(raw)} bytes is not a whole number of {datatype}")
            t["data"] = np.frombuffer(raw, dtype=dtype)
        else:
            raise MalformedRequestError(f"{where}: unknown datatype {datatype!r}")
    return doc


def requested_outputs(doc: dict[str, Any], available: Sequence[str]) -> tuple[str, ...]:
    """The outputs the request asks for (default: all `available`, output_names of the model)."""
    outputs = doc.get("outputs")
    if outputs is None:
        return tuple(available)
    if not isinstance(outputs, list):
        raise MalformedRequestError("'outputs' must be a list")
    names: list[str] = []
    for o in outputs:
        name = o.get("name") if isinstance(o, dict) else None
        if not isinstance(name, str) or name not in available:
            raise MalformedRequestError(f"unknown output {name!r}; this model has {list(available)}")
        names.append(name)
    return tuple(names)


def to_columns(doc: dict[str, Any], schema: Sequence[Column], max_rows: int) -> Columns:
    return columns_from_v2_inputs(doc["inputs"], schema, max_rows)


def label_datatype(labels: np.ndarray[Any, Any]) -> str:
    kind = labels.dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}.get(kind, "BYTES")


def render_response(
    doc: dict[str, Any],
    pred: Prediction,
    wanted: Sequence[str],
    model_name: str,
    model_version: str,
    transformed: Sequence[str] = (),
) -> bytes:
    outputs: list[dict[str, Any]] = []
    if pred.transformed is not None:
        for name, column in zip(transformed, pred.transformed.T, strict=True):
            if name in wanted:
                outputs.append({"name": name, "shape": [len(column)], "datatype": "FP64", "data": column})
    for name in wanted if pred.transformed is None else ():
        if name == "predict":
            values = pred.labels if pred.labels is not None else pred.values
            assert values is not None
            datatype = label_datatype(values)
            data: Any = values.tolist() if datatype == "BYTES" else values
            outputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": data})
        elif name == "predict_proba" and pred.probabilities is not None:
            p = pred.probabilities
            outputs.append({"name": name, "shape": list(p.shape), "datatype": "FP64", "data": p.reshape(-1)})
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if isinstance(doc.get("id"), str):
        response["id"] = doc["id"]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
