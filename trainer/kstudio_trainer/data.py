"""Training data: read a CSV/Parquet table, check it against the spec, decide each column's role.

Every problem found here is the user's to fix (DataError, exit 2), and the message names the column,
the value and the row (1-based data row, header excluded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from kstudio_core.ilearner import ColumnSpec
from kstudio_trainer.errors import DataError
from kstudio_trainer.spec import ExperimentSnapshot

log = logging.getLogger("kstudio.train")

MIN_ROWS = 10
# An object column where at least this share of values parse as numbers is taken to be a numeric
# column with stray text in it (a data error), not a categorical column.
MOSTLY_NUMERIC = 0.8
MAX_CATEGORIES_IN_SCHEMA = 100


@dataclass(frozen=True)
class ColumnPlan:
    numeric: list[str]
    categorical: list[str]


@dataclass(frozen=True)
class TrainingData:
    x: pd.DataFrame
    y: pd.Series
    plan: ColumnPlan
    schema: list[ColumnSpec]
    dropped_rows: int


def table_format(path_or_uri: str, declared: str | None) -> str:
    if declared:
        return declared
    return "parquet" if path_or_uri.lower().endswith((".parquet", ".pq")) else "csv"


def read_table(path: Path, fmt: str, source: str) -> pd.DataFrame:
    """Read a local CSV/Parquet file; DataError naming `source` if it cannot be read as that format."""
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise DataError(f"dataset {source} does not exist") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"dataset {source} is empty (no header, no rows)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset {source} is not a readable CSV file: {_first_line(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset {source} is not a readable {fmt} file: {_first_line(exc)}") from exc
    except Exception as exc:  # pyarrow raises its own hierarchy (ArrowInvalid, ...)
        if type(exc).__module__.startswith("pyarrow"):
            raise DataError(f"dataset {source} is not a readable parquet file: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def prepare(frame: pd.DataFrame, spec: ExperimentSnapshot) -> TrainingData:
    """Check the table against the spec and split it into features, label and a column plan."""
    frame, columns = _named_columns(frame)
    if spec.target not in columns:
        raise DataError(f"label column {spec.target!r} is not in the dataset; columns are: {_names(columns)}")
    features = spec.features if spec.features is not None else [c for c in columns if c != spec.target]
    _check_features(features, columns, spec, f"besides the label {spec.target!r}")
    if len(frame) == 0:
        raise DataError("dataset is empty: it has a header but no rows")
    y = frame[spec.target]
    keep = y.notna()
    dropped = int((~keep).sum())
    if dropped:
        log.info("dropping %d row(s) with no value in label column %r", dropped, spec.target)
    frame = frame.loc[keep].reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise DataError(
            f"dataset is too small: {len(frame)} row(s) with a label, at least {MIN_ROWS} are needed"
        )
    y = _label(frame[spec.target], spec)
    x, plan, schema = plan_columns(frame, features, spec)
    return TrainingData(x=x, y=y, plan=plan, schema=schema, dropped_rows=dropped)


def prepare_features(
    frame: pd.DataFrame, spec: ExperimentSnapshot
) -> tuple[pd.DataFrame, ColumnPlan, list[ColumnSpec]]:
    """A transform's table: its feature columns (default: all), their plan and input schema."""
    frame, columns = _named_columns(frame)
    features = spec.features if spec.features is not None else columns
    _check_features(features, columns, spec, "")
    if len(frame) < MIN_ROWS:
        raise DataError(f"dataset is too small: {len(frame)} row(s), at least {MIN_ROWS} are needed")
    return plan_columns(frame, features, spec)


def _named_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if frame.empty and not columns:
        raise DataError("dataset has no columns")
    return frame, columns


def _check_features(features: list[str], columns: list[str], spec: ExperimentSnapshot, besides: str) -> None:
    unknown = [f for f in features if f not in columns]
    if unknown:
        raise DataError(
            f"unknown feature column(s) {_names(unknown)}, not in the dataset; columns are: "
            + _names(columns)
        )
    if not features:
        raise DataError(f"dataset has no feature columns {besides}".rstrip())
    pre = spec.preprocessing
    for where, declared in (
        ("numericColumns", pre.numeric_columns),
        ("categoricalColumns", pre.categorical_columns),
    ):
        stray = [c for c in declared or [] if c not in features]
        if stray:
            raise DataError(f"preprocessing.{where} names column(s) {_names(stray)} that are not features")


def plan_columns(
    frame: pd.DataFrame, features: list[str], spec: ExperimentSnapshot
) -> tuple[pd.DataFrame, ColumnPlan, list[ColumnSpec]]:
    """Each feature numeric or categorical (declared, else from the data), its values converted, and the
    input schema scoring requests are read by."""
    pre = spec.preprocessing
    x = frame[features].copy()
    numeric, categorical = [], []
    declared_numeric = set(pre.numeric_columns or [])
    declared_categorical = set(pre.categorical_columns or [])
    for col in features:
        if x[col].isna().all():
            raise DataError(f"feature column {col!r} has no values")
        if col in declared_categorical:
            x[col] = _as_categories(x[col])
            categorical.append(col)
        elif col in declared_numeric:
            x[col] = _as_numbers(x[col], col, declared=True)
            numeric.append(col)
        elif ptypes.is_bool_dtype(x[col]):
            x[col] = x[col].astype(object)
            categorical.append(col)
        elif ptypes.is_numeric_dtype(x[col]):
            numeric.append(col)
        elif _looks_numeric(x[col]):
            x[col] = _as_numbers(x[col], col, declared=False)
            numeric.append(col)
        else:
            x[col] = _as_categories(x[col])
            categorical.append(col)
    schema = [_column_spec(frame[c], x[c], c, c in numeric) for c in features]
    return x, ColumnPlan(numeric, categorical), schema


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _label(y: pd.Series, spec: ExperimentSnapshot) -> pd.Series:
    if spec.task == "regression":
        parsed = pd.to_numeric(y, errors="coerce")
        bad = parsed.isna() & y.notna()
        if bad.any():
            raise DataError(
                f"label column {spec.target!r} must be numeric for regression; found {_examples(y, bad)}"
            )
        return parsed.astype(float)
    if ptypes.is_float_dtype(y) and (y % 1 == 0).all():
        y = y.astype(int)  # 0.0/1.0 labels read from CSV with gaps: keep them integers
    elif not ptypes.is_numeric_dtype(y) and not ptypes.is_bool_dtype(y):
        y = y.astype(str)
    classes = y.nunique()
    if classes < 2:
        raise DataError(
            f"label column {spec.target!r} has a single class ({y.iloc[0]!r}); "
            "classification needs at least two"
        )
    return y


def _examples(values: pd.Series, mask: pd.Series, limit: int = 3) -> str:
    rows = list(values[mask].index[:limit])
    shown = ", ".join(f"{values[r]!r} (row {int(r) + 1})" for r in rows)
    more = int(mask.sum()) - len(rows)
    return shown + (f" and {more} more" if more > 0 else "")


def _looks_numeric(col: pd.Series) -> bool:
    present = col.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    return bool(parsed.notna().mean() >= MOSTLY_NUMERIC)


def _as_numbers(col: pd.Series, name: str, declared: bool) -> pd.Series:
    parsed = pd.to_numeric(col, errors="coerce")
    bad = parsed.isna() & col.notna()
    if bad.any():
        why = "is declared numeric" if declared else "looks numeric"
        hint = "" if declared else " (or list it in preprocessing.categoricalColumns)"
        raise DataError(
            f"column {name!r} {why} but has non-numeric text: {_examples(col, bad)}; fix the data{hint}"
        )
    return parsed.astype(float)


def _as_categories(col: pd.Series) -> pd.Series:
    # One type per column (the encoders refuse a mix of numbers and strings); missing stays missing.
    return col.map(lambda v: v if pd.isna(v) else str(v)).astype(object)


def _column_spec(raw: pd.Series, prepared: pd.Series, name: str, numeric: bool) -> ColumnSpec:
    if numeric:
        kind = "integer" if ptypes.is_integer_dtype(raw) else "number"
        return ColumnSpec(name=name, type=kind)
    if ptypes.is_bool_dtype(raw):
        return ColumnSpec(name=name, type="boolean")
    values: list[Any] = sorted({str(v) for v in prepared.dropna()})
    return ColumnSpec(
        name=name, type="string", categories=values if len(values) <= MAX_CATEGORIES_IN_SCHEMA else None
    )
