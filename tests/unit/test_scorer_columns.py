"""Request payloads -> validated numpy columns (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kstudio_scorer.errors import InputValidationError, MalformedRequestError, TooManyRowsError
from kstudio_scorer.model.columns import Column, concat
from kstudio_scorer.protocols.request_columns import (
    columns_from_records,
    columns_from_table,
    columns_from_v2_inputs,
)

SCHEMA = (Column("x", "number"), Column("n", "integer"), Column("s", "string"), Column("b", "boolean"))


def test_records_become_typed_arrays_with_missing_values() -> None:
    cols = columns_from_records(
        [{"x": 1, "n": 2, "s": "a", "b": True}, {"x": None, "n": 3.0, "s": None, "b": False}], SCHEMA, 10
    )
    assert cols.n_rows == 2
    assert cols.arrays["x"].dtype == np.float64 and math.isnan(cols.arrays["x"][1])
    assert cols.arrays["n"].tolist() == [2.0, 3.0]
    assert cols.arrays["s"].dtype == object and cols.arrays["s"].tolist() == ["a", None]
    assert cols.arrays["b"].dtype == bool


@pytest.mark.parametrize(
    ("row", "column", "value", "words"),
    [
        (1, "x", True, "expected a number"),
        (0, "x", "one", "expected a number"),
        (1, "x", "1_000", "expected a number"),
        (0, "n", "2.5", "expected an integer"),
        (1, "b", "yes", "expected a boolean"),
        (0, "b", "", "expected a boolean, got null"),
        (1, "n", 1.5, "expected an integer"),
        (0, "s", 1, "expected a string"),
        (1, "b", 1, "expected a boolean"),
        (0, "b", None, "expected a boolean, got null"),
    ],
)
def test_records_errors_name_row_and_column(row: int, column: str, value: object, words: str) -> None:
    rows = [{"x": 1.0, "n": 1, "s": "a", "b": True}, {"x": 2.0, "n": 2, "s": "b", "b": False}]
    rows[row][column] = value
    with pytest.raises(InputValidationError) as info:
        columns_from_records(rows, SCHEMA, 10)
    assert (info.value.row, info.value.column) == (row, column)
    assert words in info.value.message and f"row {row}" in info.value.message


def test_string_values_are_read_by_the_schema_as_classic_clients_send_them() -> None:
    rows = [
        {"x": "3.5", "n": "2", "s": "7", "b": "true"},
        {"x": "", "n": " 4 ", "s": "", "b": "0"},
        {"x": "-1e3", "n": "", "s": "c", "b": "False"},
    ]
    cols = columns_from_records(rows, SCHEMA, 10)
    assert cols.arrays["x"][0] == 3.5 and math.isnan(cols.arrays["x"][1]) and cols.arrays["x"][2] == -1000
    assert cols.arrays["n"][:2].tolist() == [2.0, 4.0] and math.isnan(cols.arrays["n"][2])
    assert cols.arrays["s"].tolist() == ["7", "", "c"]  # a string column keeps its strings
    assert cols.arrays["b"].tolist() == [True, False, False]


def test_records_ignore_unused_columns_and_name_every_missing_one() -> None:
    cols = columns_from_records([{"x": 1, "n": 2, "s": "a", "b": True, "label": "z"}], SCHEMA, 10)
    assert set(cols.arrays) == {"x", "n", "s", "b"}
    with pytest.raises(InputValidationError) as info:
        columns_from_records([{"x": 1, "n": 2, "s": "a", "b": True}, {"x": 1, "other": 3}], SCHEMA, 10)
    assert (info.value.row, info.value.column) == (1, "n")
    assert "columns 'n', 's', 'b'" in info.value.message


def test_classic_table_becomes_columns_in_schema_order() -> None:
    table = {"ColumnNames": ["b", "unused", "s", "n", "x"], "Values": [["1", "q", "a", "3", "0.5"]]}
    cols = columns_from_table(table, SCHEMA, 10)
    assert list(cols.arrays) == ["x", "n", "s", "b"]
    assert (cols.arrays["x"][0], cols.arrays["n"][0], cols.arrays["s"][0], cols.arrays["b"][0]) == (
        0.5,
        3.0,
        "a",
        True,
    )


def test_classic_table_errors_name_rows_and_columns() -> None:
    names = ["x", "n", "s", "b"]
    with pytest.raises(InputValidationError, match="row 1: the row has 3 values, ColumnNames has 4"):
        columns_from_table(
            {"ColumnNames": names, "Values": [["1", "2", "a", "true"], ["1", "2", "a"]]}, SCHEMA, 10
        )
    with pytest.raises(InputValidationError, match="columns 's', 'b'"):
        columns_from_table({"ColumnNames": ["x", "n"], "Values": [["1", "2"]]}, SCHEMA, 10)
    with pytest.raises(MalformedRequestError, match="more than once"):
        columns_from_table({"ColumnNames": ["x", "x"], "Values": []}, SCHEMA, 10)
    with pytest.raises(MalformedRequestError, match="ColumnNames"):
        columns_from_table({"Values": []}, SCHEMA, 10)
    with pytest.raises(TooManyRowsError):
        columns_from_table({"ColumnNames": names, "Values": [["1", "2", "a", "1"]] * 3}, SCHEMA, 2)
    with pytest.raises(InputValidationError) as info:
        columns_from_table(
            {"ColumnNames": names, "Values": [["1", "2", "a", "1"], ["1", "x", "a", "1"]]}, SCHEMA, 10
        )
    assert (info.value.row, info.value.column) == (1, "n")


def test_records_shape_errors() -> None:
    with pytest.raises(MalformedRequestError):
        columns_from_records({"x": 1}, SCHEMA, 10)
    with pytest.raises(InputValidationError, match="no rows"):
        columns_from_records([], SCHEMA, 10)
    with pytest.raises(TooManyRowsError, match=r"3 rows .* limit is 2"):
        columns_from_records([{}] * 3, SCHEMA, 2)
    with pytest.raises(InputValidationError, match="must be an object"):
        columns_from_records([[1, 2]], SCHEMA, 10)


NUMERIC = (Column("a", "number"), Column("b", "number"))


def test_v2_single_matrix_and_named_columns_agree() -> None:
    matrix = columns_from_v2_inputs(
        [{"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}], NUMERIC, 10
    )
    named = columns_from_v2_inputs(
        [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 3]},
            {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [[2], [4]]},
        ],
        NUMERIC,
        10,
    )
    for cols in (matrix, named):
        assert cols.arrays["a"].tolist() == [1.0, 3.0] and cols.arrays["b"].tolist() == [2.0, 4.0]
    binary = columns_from_v2_inputs(
        [
            {
                "name": "m",
                "shape": [2, 2],
                "datatype": "FP32",
                "data": np.array([1, 2, 3, 4], dtype=np.float32),
            }
        ],
        NUMERIC,
        10,
    )
    assert binary.arrays["b"].tolist() == [2.0, 4.0]


def test_v2_errors() -> None:
    with pytest.raises(MalformedRequestError, match=r"shape \[N, 2\]"):
        columns_from_v2_inputs(
            [{"name": "m", "shape": [2, 3], "datatype": "FP64", "data": [0] * 6}], NUMERIC, 10
        )
    with pytest.raises(MalformedRequestError, match="needs 4 values"):
        columns_from_v2_inputs(
            [{"name": "m", "shape": [2, 2], "datatype": "FP64", "data": [0] * 3}], NUMERIC, 10
        )
    with pytest.raises(InputValidationError, match="unknown input") as info:
        columns_from_v2_inputs(
            [
                {"name": "a", "shape": [1], "datatype": "FP64", "data": [0]},
                {"name": "z", "shape": [1], "datatype": "FP64", "data": [0]},
            ],
            NUMERIC,
            10,
        )
    assert info.value.column == "z"
    with pytest.raises(InputValidationError, match="infinite") as info:
        columns_from_v2_inputs(
            [{"name": "m", "shape": [2, 2], "datatype": "FP64", "data": np.array([0, 0, 0, np.inf])}],
            NUMERIC,
            10,
        )
    assert (info.value.row, info.value.column) == (1, "b")
    with pytest.raises(TooManyRowsError):
        columns_from_v2_inputs(
            [{"name": "m", "shape": [3, 2], "datatype": "FP64", "data": [0] * 6}], NUMERIC, 2
        )


def test_concat_keeps_order() -> None:
    one = columns_from_records([{"a": 1, "b": 2}], NUMERIC, 10)
    two = columns_from_records([{"a": 3, "b": 4}, {"a": 5, "b": 6}], NUMERIC, 10)
    merged = concat([one, two])
    assert merged.n_rows == 3 and merged.arrays["a"].tolist() == [1, 3, 5]
