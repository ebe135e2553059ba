"""How the trainer reads a table: roles and types of columns, rows without a label."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kstudio_trainer.data import prepare
from kstudio_trainer.spec import parse_snapshot


def _spec(**overrides: Any) -> Any:
    doc: dict[str, Any] = {
        "dataset": {"uri": "x.csv"},
        "label": "y",
        "task": "classification",
        "algorithm": {"name": "LogisticRegression"},
    }
    doc.update(overrides)
    return parse_snapshot(doc)


def _frame(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "code": rng.choice([1, 2, 3], n),
            "text_numbers": [str(v) for v in rng.integers(0, 100, n)],
            "mixed": pd.Series(["a", 1, 2.5] * (n // 3), dtype=object),
            "y": rng.choice([0.0, 1.0], n),
        }
    )


def test_rows_without_label_are_dropped_and_counted() -> None:
    f = _frame()
    f.loc[[3, 7], "y"] = np.nan
    data = prepare(f, _spec())
    assert data.dropped_rows == 2 and len(data.x) == 28


def test_float_class_labels_that_are_whole_numbers_become_integers() -> None:
    data = prepare(_frame(), _spec())
    assert data.y.dtype.kind == "i" and set(data.y) == {0, 1}


def test_numbers_stored_as_text_are_numeric() -> None:
    data = prepare(_frame(), _spec())
    assert "text_numbers" in data.plan.numeric
    assert data.x["text_numbers"].dtype.kind == "f"


def test_mixed_values_in_a_categorical_column_become_strings() -> None:
    f = _frame()
    data = prepare(f, _spec())
    assert "mixed" in data.plan.categorical
    assert set(data.x["mixed"]) == {"a", "1", "2.5"}


def test_declared_categorical_overrides_inference() -> None:
    data = prepare(_frame(), _spec(preprocessing={"categoricalColumns": ["code"]}))
    assert "code" in data.plan.categorical
    schema = {c.name: c for c in data.schema}
    assert schema["code"].type == "string" and schema["code"].categories == ["1", "2", "3"]


def test_features_restrict_the_columns_in_order() -> None:
    data = prepare(_frame(), _spec(features=["code", "num"]))
    assert list(data.x.columns) == ["code", "num"]
    assert [c.name for c in data.schema] == ["code", "num"]
