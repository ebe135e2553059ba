"""Request payloads -> the model's `Columns` (model/columns.py): one numpy array per input column,
validated once per request.

The fast routes do no per-row pydantic work: values of a column are gathered into a list, their Python
types checked with one `set(map(type, ...))`, and converted to numpy in one call. Errors name the row
(0-based, as sent) and the column.

Classic clients (the samples the Azure ML Studio portal generated) send every value as a string: for the
row formats (`/score` records, the classic `ColumnNames`/`Values` table) numeric and boolean columns also
accept strings ("3.5", "0", "true"; "" = missing), converted by the model's input schema only when a
string is actually present, so typed JSON pays nothing for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kstudio_core.ilearner import ColumnType
from kstudio_scorer.errors import InputValidationError, MalformedRequestError, TooManyRowsError
from kstudio_scorer.model.columns import Column, Columns

_ALLOWED: dict[str, frozenset[type]] = {
    "number": frozenset({int, float, type(None)}),
    "integer": frozenset({int, float, type(None)}),
    "string": frozenset({str, type(None)}),
    "boolean": frozenset({bool, type(None)}),
}
_EXPECTED_WORD = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "a boolean"}


def _first_bad(values: Sequence[Any], allowed: frozenset[type]) -> int:
    for i, v in enumerate(values):
        if type(v) not in allowed:
            return i
    return -1  # pragma: no cover - only called when a bad value exists


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_TRUE_WORDS = frozenset({"true", "1"})
_FALSE_WORDS = frozenset({"false", "0"})


def _from_string(text: str, column: Column, row: int) -> Any:
    """One string value of a numeric or boolean column, as classic clients send it ("" = missing)."""
    stripped = text.strip()
    if not stripped:
        return None
    if column.type == "boolean":
        word = stripped.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    elif "_" not in stripped:  # float() accepts "1_000"; a classic client never meant that
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            return None if math.isnan(number) else number
    raise InputValidationError(
        f"expected {_EXPECTED_WORD[column.type]}, got {_describe(text)}", row=row, column=column.name
    )


def coerce_strings(values: Sequence[Any], column: Column, row_offset: int = 0) -> list[Any]:
    """Strings in a numeric or boolean column converted by the schema; other values are left as sent."""
    return [_from_string(v, column, row_offset + i) if type(v) is str else v for i, v in enumerate(values)]


def column_array(
    values: Sequence[Any], column: Column, row_offset: int = 0, *, strings_as_values: bool = False
) -> npt.NDArray[Any]:
    """Validate the values of one column and convert them to a numpy array.

    number/integer -> float64 (null -> NaN), boolean -> bool (null refused), string -> object (null -> None).
    With `strings_as_values`, strings in numeric and boolean columns are read as their values first.
    Raises InputValidationError naming the first offending row and the column.
    """
    allowed = _ALLOWED.get(column.type)
    if allowed is None:
        raise InputValidationError(f"the model declares an unknown type {column.type!r}", column=column.name)
    kinds = set(map(type, values))
    if strings_as_values and str in kinds and column.type != "string":
        values = coerce_strings(values, column, row_offset)
        kinds = set(map(type, values))
    if not kinds <= allowed:
        i = _first_bad(values, allowed)
        raise InputValidationError(
            f"expected {_EXPECTED_WORD[column.type]}, got {_describe(values[i])}",
            row=row_offset + i,
            column=column.name,
        )
    if column.type in ("number", "integer"):
        if type(None) in kinds:
            arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        else:
            arr = np.array(values, dtype=np.float64)
        if column.type == "integer" and float in kinds:
            bad = np.flatnonzero(np.isfinite(arr) & (arr != np.round(arr)))
            if bad.size:
                i = int(bad[0])
                raise InputValidationError(
                    f"expected an integer, got {_describe(values[i])}", row=row_offset + i, column=column.name
                )
        if np.isinf(arr).any():
            i = int(np.flatnonzero(np.isinf(arr))[0])
            raise InputValidationError(
                "infinite values are not accepted", row=row_offset + i, column=column.name
            )
        return arr
    if column.type == "boolean":
        if type(None) in kinds:
            i = _first_bad(values, frozenset({bool}))
            raise InputValidationError("expected a boolean, got null", row=row_offset + i, column=column.name)
        return np.array(values, dtype=bool)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _check_rows(n_rows: int, max_rows: int) -> None:
    if n_rows > max_rows:
        raise TooManyRowsError(f"{n_rows} rows in one request; the limit is {max_rows}")


def _missing_columns_error(missing: Sequence[str], row: int | None = None) -> InputValidationError:
    names = ", ".join(repr(c) for c in missing)
    plural = "s" if len(missing) > 1 else ""
    return InputValidationError(
        f"missing value: the model needs column{plural} {names}", row=row, column=missing[0]
    )


def columns_from_records(records: Any, schema: Sequence[Column], max_rows: int) -> Columns:
    """Azure RRS rows `[{col: value, ...}, ...]` -> Columns.

    Columns the model does not use are ignored (classic clients send the whole training row); a missing
    one is an error naming the row and every missing column.
    """
    if not isinstance(records, list):
        raise MalformedRequestError("Inputs.input1 must be a list of objects (one per row)")
    n = len(records)
    _check_rows(n, max_rows)
    if n == 0:
        raise InputValidationError("no rows to score")
    names = [c.name for c in schema]
    expected = frozenset(names)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            raise InputValidationError(f"a row must be an object, got {_describe(rec)}", row=i)
        if not rec.keys() >= expected:
            raise _missing_columns_error([c for c in names if c not in rec], row=i)
    for col in schema:
        key = col.name
        arrays[key] = column_array([rec[key] for rec in records], col, strings_as_values=True)
    return Columns(arrays, n)


def columns_from_table(table: Any, schema: Sequence[Column], max_rows: int) -> Columns:
    """The classic table `{"ColumnNames": [...], "Values": [[...], ...]}` -> Columns.

    Columns the model does not use are ignored; missing ones are an error naming them all; a row whose
    length differs from ColumnNames is an error naming the row.
    """
    if not isinstance(table, dict) or "ColumnNames" not in table or "Values" not in table:
        raise MalformedRequestError('Inputs.input1 must be {"ColumnNames": [...], "Values": [[...], ...]}')
    names, rows = table["ColumnNames"], table["Values"]
    if not isinstance(names, list) or not all(type(c) is str for c in names):
        raise MalformedRequestError("ColumnNames must be a list of strings")
    if len(set(names)) != len(names):
        twice = next(c for c in names if names.count(c) > 1)
        raise MalformedRequestError(f"ColumnNames lists {twice!r} more than once")
    if not isinstance(rows, list):
        raise MalformedRequestError("Values must be a list of rows (lists of values)")
    n = len(rows)
    _check_rows(n, max_rows)
    if n == 0:
        raise InputValidationError("no rows to score")
    missing = [c.name for c in schema if c.name not in names]
    if missing:
        raise _missing_columns_error(missing)
    width = len(names)
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise InputValidationError(f"a row must be a list of values, got {_describe(row)}", row=i)
        if len(row) != width:
            raise InputValidationError(f"the row has {len(row)} values, ColumnNames has {width}", row=i)
    position = {c: j for j, c in enumerate(names)}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for col in schema:
        j = position[col.name]
        arrays[col.name] = column_array([row[j] for row in rows], col, strings_as_values=True)
    return Columns(arrays, n)


# The OIP V2 datatypes a tensor may declare for a column of each type (the OpenAPI document lists them).
V2_DATATYPES: dict[ColumnType, frozenset[str]] = {
    "number": frozenset(
        {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
    ),
    "integer": frozenset(
        {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP32", "FP64"}
    ),
    "string": frozenset({"BYTES"}),
    "boolean": frozenset({"BOOL"}),
}


def accepted_v2_datatypes(column_types: Iterable[ColumnType]) -> frozenset[str]:
    """Every datatype a request may declare for columns of these types: each column's own, and for an
    all-numeric model every numeric one (a single 2-D tensor of all the columns)."""
    kinds = set(column_types)
    accepted = frozenset().union(*(V2_DATATYPES[k] for k in kinds))
    if kinds <= {"number", "integer"}:
        accepted |= V2_DATATYPES["number"]
    return accepted


def v2_datatype(column_type: ColumnType) -> str:
    """The OIP V2 datatype advertised for a schema column type."""
    return {"number": "FP64", "integer": "INT64", "string": "BYTES", "boolean": "BOOL"}[column_type]


def _shape(tensor: Mapping[str, Any], where: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or not shape:
        raise MalformedRequestError(f"{where}: 'shape' must be a non-empty list of non-negative integers")
    return shape


def _flat(data: Any, where: str) -> list[Any]:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).tolist()
    if not isinstance(data, list):
        raise MalformedRequestError(f"{where}: 'data' must be a list")
    if data and type(data[0]) is list:  # nested row-major data is allowed by the protocol
        out: list[Any] = []
        stack = [data]
        # flatten with an explicit loop: depth is the tensor rank, small
        while stack:
            item = stack.pop()
            if type(item) is list and item and type(item[0]) is list:
                stack.extend(reversed(item))
            elif type(item) is list:
                out.extend(item)
            else:
                out.append(item)
        return out
    return data


def columns_from_v2_inputs(inputs: Any, schema: Sequence[Column], max_rows: int) -> Columns:
    """OIP V2 `inputs` -> Columns.

    Accepted: one tensor per schema column (named after it, shape [N] or [N, 1]), or a single 2-D tensor of
    shape [N, C] whose C columns are the schema's columns in order. `data` may be a numpy array (binary
    extension, already decoded) or a JSON list, flat or nested.
    """
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequestError("'inputs' must be a non-empty list of tensors")
    for t in inputs:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise MalformedRequestError("each input must be an object with a 'name'")
    names = [c.name for c in schema]
    by_name = {t["name"]: t for t in inputs}
    if len(inputs) == 1 and (len(schema) > 1 or inputs[0]["name"] != names[0]):
        return _columns_from_matrix(inputs[0], schema, max_rows)
    unknown = [n for n in by_name if n not in set(names)]
    if unknown:
        raise InputValidationError(
            f"unknown input (the model's inputs are {', '.join(names)}, or one 2-D tensor)", column=unknown[0]
        )
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputValidationError("missing input", column=missing[0])
    arrays: dict[str, npt.NDArray[Any]] = {}
    n_rows: int | None = None
    for col in schema:
        t = by_name[col.name]
        where = f"input {col.name!r}"
        shape = _shape(t, where)
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise MalformedRequestError(f"{where}: shape must be [N] or [N, 1], got {shape}")
        _check_datatype(t, col, where)
        values = _flat(t.get("data"), where)
        if len(values) != shape[0]:
            raise MalformedRequestError(
                f"{where}: shape {shape} announces {shape[0]} values, data has {len(values)}"
            )
        if n_rows is None:
            n_rows = shape[0]
            _check_rows(n_rows, max_rows)
        elif shape[0] != n_rows:
            raise MalformedRequestError(f"{where}: {shape[0]} rows, other inputs have {n_rows}")
        arrays[col.name] = column_array(_decode_bytes(values), col)
    assert n_rows is not None
    if n_rows == 0:
        raise InputValidationError("no rows to score")
    return Columns(arrays, n_rows)


def _check_datatype(tensor: Mapping[str, Any], col: Column, where: str) -> None:
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise MalformedRequestError(f"{where}: 'datatype' is required")
    if datatype not in V2_DATATYPES[col.type]:
        raise InputValidationError(
            f"datatype {datatype} does not fit a {col.type} column (use {v2_datatype(col.type)})",
            column=col.name,
        )


def _decode_bytes(values: list[Any]) -> list[Any]:
    if values and type(values[0]) is bytes:
        return [v.decode("utf-8") if type(v) is bytes else v for v in values]
    return values


def _columns_from_matrix(tensor: Mapping[str, Any], schema: Sequence[Column], max_rows: int) -> Columns:
    where = f"input {tensor['name']!r}"
    shape = _shape(tensor, where)
    ncols = len(schema)
    if len(shape) == 1 and ncols == 1:
        shape = [shape[0], 1]
    if len(shape) != 2 or shape[1] != ncols:
        raise MalformedRequestError(
            f"{where}: a single input must have shape [N, {ncols}] "
            f"(columns {', '.join(c.name for c in schema)}),"
            f" got {shape}"
        )
    n_rows = shape[0]
    _check_rows(n_rows, max_rows)
    if n_rows == 0:
        raise InputValidationError("no rows to score")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise MalformedRequestError(f"{where}: 'datatype' is required")
    data = tensor.get("data")
    all_numeric = all(c.type in ("number", "integer") for c in schema)
    if isinstance(data, np.ndarray) and all_numeric and data.dtype.kind in "iuf":
        if data.size != n_rows * ncols:
            raise MalformedRequestError(
                f"{where}: shape {shape} needs {n_rows * ncols} values, got {data.size}"
            )
        matrix = data.reshape(n_rows, ncols).astype(np.float64, copy=False)
        return _split_numeric_matrix(matrix, schema)
    values = _flat(data, where)
    if len(values) != n_rows * ncols:
        raise MalformedRequestError(
            f"{where}: shape {shape} needs {n_rows * ncols} values, got {len(values)}"
        )
    if all_numeric:
        if datatype not in V2_DATATYPES["number"]:
            raise InputValidationError(f"datatype {datatype} does not fit numeric columns (use FP64)")
        # One C-level pass: numpy infers the dtype. Numbers give kind i/u/f (JSON true/false mixed into
        # numbers count as 1/0, as numpy has it); anything else (strings, nulls) falls through to the
        # column-by-column check below, which names the row and the column.
        try:
            inferred = np.array(values)
        except (ValueError, TypeError):
            inferred = None
        if inferred is not None and inferred.dtype.kind in "iuf" and inferred.ndim == 1:
            matrix = inferred.astype(np.float64, copy=False).reshape(n_rows, ncols)
            return _split_numeric_matrix(matrix, schema)
    values = _decode_bytes(values)
    arrays = {col.name: column_array(values[j::ncols], col) for j, col in enumerate(schema)}
    return Columns(arrays, n_rows)


def _split_numeric_matrix(matrix: npt.NDArray[np.float64], schema: Sequence[Column]) -> Columns:
    if np.isnan(matrix).any() or np.isinf(matrix).any():
        # rare path: re-validate column by column to name the row and the column
        for j, col in enumerate(schema):
            column_array(matrix[:, j].tolist(), col)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for j, col in enumerate(schema):
        arr = matrix[:, j]
        if col.type == "integer":
            bad = np.flatnonzero(np.isfinite(arr) & (arr != np.round(arr)))
            if bad.size:
                raise InputValidationError(
                    f"expected an integer, got {arr[int(bad[0])]!r}", row=int(bad[0]), column=col.name
                )
        arrays[col.name] = arr
    return Columns(arrays, matrix.shape[0])
