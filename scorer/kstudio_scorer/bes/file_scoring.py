"""Batch scoring (Azure's BES): score an s3:// CSV or Parquet object into another one, streaming.

CSV is parsed block by block straight from the object's HTTP stream; Parquet (which needs random access)
is spooled to local disk first and read one row group slice at a time. Each chunk is validated, scored and
appended to a local output file, which is uploaded at the end. Memory is bounded by the chunk size, not
by the file size. Job records, their state and who runs them are jobs.py's business.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kstudio_core.storage import ObjectStore, S3Uri
from kstudio_scorer.errors import InputValidationError, ScorerError
from kstudio_scorer.model.columns import Column, Columns
from kstudio_scorer.model.scored_columns import (
    SCORED_LABELS,
    SCORED_PROBABILITIES,
    SCORED_VALUES,
    OutputProjection,
    probability_column,
)
from kstudio_scorer.model.served_model import Prediction, ScoringModel

Format = Literal["csv", "parquet"]

_ARROW_TYPES = {"number": pa.float64(), "integer": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}


def format_of(uri: str, explicit: str | None) -> Format:
    """The file format: explicit, else from the key's extension. ValueError if neither tells."""
    if explicit:
        if explicit not in ("csv", "parquet"):
            raise ValueError(f"unknown format {explicit!r} (csv or parquet)")
        return explicit  # type: ignore[return-value]
    lower = uri.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    raise ValueError(
        f"cannot tell the format of {uri} from its extension; give it explicitly (csv or parquet)"
    )


def csv_column_types(schema: tuple[Column, ...]) -> dict[str, pa.DataType]:
    """How the CSV reader types each model column (the rest it infers)."""
    return {c.name: _ARROW_TYPES[c.type] for c in schema}


def name_csv_column(message: str, names: list[str]) -> str:
    """pyarrow says "In CSV column #2: ..."; say the column's name instead."""
    match = re.search(r"In CSV column #(\d+)", message)
    if match and int(match.group(1)) < len(names):
        return message.replace(match.group(0), f"In column {names[int(match.group(1))]!r}")
    return message


class JobCancelledError(Exception):
    pass


def columns_from_arrow(batch: pa.RecordBatch, schema: tuple[Column, ...], row_offset: int) -> Columns:
    """Arrow columns -> validated numpy columns (nulls: NaN for numbers, None for strings)."""
    arrays: dict[str, Any] = {}
    for col in schema:
        try:
            arr = batch.column(col.name)
        except KeyError as exc:
            raise InputValidationError("the input has no such column", column=col.name) from exc
        if col.type in ("number", "integer"):
            if not (
                pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_null(arr.type)
            ):
                raise InputValidationError(f"expected numbers, the file has {arr.type}", column=col.name)
            values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
            if col.type == "integer":
                bad = np.flatnonzero(np.isfinite(values) & (values != np.round(values)))
                if bad.size:
                    raise InputValidationError(
                        f"expected an integer, got {values[bad[0]]!r}",
                        row=row_offset + int(bad[0]),
                        column=col.name,
                    )
            arrays[col.name] = values
        elif col.type == "boolean":
            if arr.null_count:
                raise InputValidationError("missing boolean value", column=col.name)
            arrays[col.name] = arr.cast(pa.bool_()).to_numpy(zero_copy_only=False)
        else:
            arrays[col.name] = arr.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
    return Columns(arrays, batch.num_rows)


def scored_table(
    batch: pa.RecordBatch,
    pred: Prediction,
    classes: list[Any],
    projection: OutputProjection,
    *,
    classic_names: bool = False,
) -> pa.Table:
    """The output chunk: input columns (if projected) then the scored columns, Azure BES style.

    `classic_names`: as classic's Score Model named them (two classes: one `Scored Probabilities`;
    regression: `Scored Labels`), for the classic BES routes.
    """
    names: list[str] = []
    arrays: list[pa.Array] = []
    if projection.include_inputs:
        names.extend(batch.schema.names)
        arrays.extend(batch.columns)
    if pred.transformed is not None:  # a transform: its transformed columns, named by the projection
        names.extend(projection.columns)
        arrays.extend(pa.array(pred.transformed[:, k]) for k in range(len(projection.columns)))
    for c in projection.columns if pred.transformed is None else ():
        if c == SCORED_LABELS and pred.labels is not None:
            names.append(SCORED_LABELS)
            arrays.append(pa.array(pred.labels.tolist() if pred.labels.dtype.kind == "O" else pred.labels))
        elif c == SCORED_PROBABILITIES and pred.probabilities is not None:
            if classic_names and len(classes) == 2:
                names.append(SCORED_PROBABILITIES)
                arrays.append(pa.array(pred.probabilities[:, 1]))
                continue
            for k, cls in enumerate(classes):
                names.append(probability_column(cls))
                arrays.append(pa.array(pred.probabilities[:, k]))
        elif c == SCORED_VALUES and pred.values is not None:
            names.append(SCORED_LABELS if classic_names else SCORED_VALUES)
            arrays.append(pa.array(pred.values))
    return pa.Table.from_arrays(arrays, names=names)


def parquet_write_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionary-encode only the columns that repeat (labels, strings, booleans): on probabilities and
    other floats it is pure cost, 4x the write time for a larger file."""
    return {"use_dictionary": [f.name for f in schema if not pa.types.is_floating(f.type)]}


@dataclass(frozen=True)
class ScoringTask:
    """One file to score: where from and to, the stores to use for each, and how to name scored columns."""

    input: S3Uri
    output: S3Uri
    input_format: Format
    output_format: Format
    input_store: ObjectStore
    output_store: ObjectStore
    classic_names: bool = False


@dataclass(frozen=True)
class StreamLimits:
    chunk_rows: int = 65_536
    csv_block_bytes: int = 8 * 1024 * 1024


def _batches(
    task: ScoringTask, schema: tuple[Column, ...], spool: Path, limits: StreamLimits
) -> Iterator[pa.RecordBatch]:
    if task.input_format == "csv":
        stream = task.input_store.open_stream(task.input)
        with stream:
            # the header, to name columns in pyarrow's errors ("In CSV column #2")
            first = stream.peek(64 * 1024).split(b"\n", 1)[0].decode("utf-8", "replace")
            names = next(csv.reader([first]), [])
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=limits.csv_block_bytes),
                    convert_options=pacsv.ConvertOptions(
                        column_types=csv_column_types(schema),
                        strings_can_be_null=True,
                    ),
                )
                yield from reader
            except pa.ArrowInvalid as exc:
                raise InputValidationError(f"{task.input}: {name_csv_column(str(exc), names)}") from exc
    else:
        local = spool / "input.parquet"
        task.input_store.download(task.input, local)
        pf = pq.ParquetFile(local)
        yield from pf.iter_batches(batch_size=limits.chunk_rows)


def score_file(
    task: ScoringTask,
    model: ScoringModel,
    projection: OutputProjection,
    spool: Path,
    limits: StreamLimits,
    *,
    on_rows: Callable[[int], None],
    should_stop: Callable[[], bool],
) -> int:
    """Score every row of `task.input` into `task.output`; returns the row count.

    `on_rows(n)` after each chunk; `should_stop()` is asked before each chunk (JobCancelledError when true).
    Raises InputValidationError (bad data, naming row/column), StorageError, or pyarrow errors.
    """
    if not model.ready:
        raise ScorerError("the model is not ready")
    spool.mkdir(parents=True, exist_ok=True)
    out_path = spool / f"output.{task.output_format}"
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in _batches(task, model.schema, spool, limits):
            if should_stop():
                raise JobCancelledError
            if batch.num_rows == 0:
                continue
            columns = columns_from_arrow(batch, model.schema, rows)
            pred = model.predict(columns)
            table = scored_table(batch, pred, model.classes, projection, classic_names=task.classic_names)
            if writer is None:
                if task.output_format == "csv":
                    writer = pacsv.CSVWriter(out_path, table.schema)
                else:
                    writer = pq.ParquetWriter(out_path, table.schema, **parquet_write_options(table.schema))
            writer.write_table(table)
            rows += batch.num_rows
            on_rows(batch.num_rows)
        if writer is None:
            raise InputValidationError(f"{task.input} has no rows")
        writer.close()
        writer = None
        if should_stop():
            raise JobCancelledError
        task.output_store.upload(out_path, task.output)
        return rows
    finally:
        if writer is not None:
            writer.close()
        shutil.rmtree(spool, ignore_errors=True)
