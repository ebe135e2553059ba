"""Score one shard of a BatchJob: its slices of the input (shard_input.py) → its part and its errors, then
its result document (kstudio_core.batch), in that order.

Rows are read, validated, scored and rendered exactly as the scorer's own batch scoring does
(bes/file_scoring.py: the same CSV reader options, `columns_from_arrow`, `ScoringModel.predict`,
`scored_table`, the same Parquet writer settings), so the parts, merged in shard order, are what
`POST /jobs` would have written, row for row.

Rows that cannot be scored (a value of the wrong type, a line with the wrong number of fields, a row the
model refuses) do not stop the shard: a chunk that fails is split in halves until the failing rows stand
alone, the good rows are scored as before and each bad row goes to the errors file with its row number
(within this shard's slice of that input; the operator renumbers them within the input) and the reason.
That costs a few parses of the chunk per bad row, nothing when there is none. Beyond the error threshold
the shard stops (exit 2). A missing column is no bad row: the shard stops at once, naming it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kstudio_core.batch import (
    ERRORS_HEADER,
    BatchPlan,
    PartFile,
    ShardResult,
    SliceResult,
    shard_byte_slices,
)
from kstudio_core.storage import ObjectNotFoundError
from kstudio_scorer.bes.file_scoring import (
    columns_from_arrow,
    csv_column_types,
    name_csv_column,
    parquet_write_options,
    scored_table,
)
from kstudio_scorer.bes.shard_input import (
    ByteSource,
    CsvHeader,
    ShardInputError,
    StoreObject,
    csv_chunks,
    open_parquet,
    owned_row_groups,
    parse_csv,
    read_csv_header,
    split_lines,
)
from kstudio_scorer.bes.shard_output import UploadSink
from kstudio_scorer.errors import InputValidationError, PredictionError
from kstudio_scorer.model.columns import Column
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ScoringModel

log = logging.getLogger(__name__)

# What makes a row bad rather than the job: pyarrow cannot read it, it does not fit the model's input
# schema, or the model refuses it.
ROW_ERRORS = (pa.ArrowInvalid, InputValidationError, PredictionError)
_CSV_COLUMN = re.compile(r"In CSV column #(\d+)")
_ROW_PREFIX = re.compile(r"^row \d+, ")
_ARROW_ROW = re.compile(r"Row #\d+: ")  # pyarrow's row number within the lines it was given
_CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
REASON_CHARS = 500


@dataclass(frozen=True)
class ShardLimits:
    csv_block_bytes: int = 1024 * 1024  # CSV bytes parsed, scored and written at a time
    chunk_rows: int = 16_384  # Parquet rows per batch
    parquet_buffer_bytes: int = 1024 * 1024  # column chunk bytes read at a time


@dataclass
class BadRow:
    input: str
    row: int  # 1-based, within this shard's slice of `input`
    column: str
    reason: str


class ErrorThresholdExceeded(ShardInputError):
    def __init__(self, message: str) -> None:
        super().__init__("ErrorThresholdExceeded", message)


@dataclass
class _Progress:
    scored: int = 0
    rejected: int = 0
    slices: list[SliceResult] = field(default_factory=list)
    first_bad: BadRow | None = None


class ShardScorer:
    """One shard, start to end: `run()` returns its result (already written to the store) or raises
    ShardInputError (exit 2; the result, with ok false, is written for a threshold), StorageError."""

    def __init__(
        self,
        plan: BatchPlan,
        index: int,
        model: ScoringModel,
        store: Any,
        limits: ShardLimits | None = None,
        pod: str = "",
    ) -> None:
        if not 0 <= index < plan.shards:
            raise ShardInputError("InvalidIndex", f"shard index {index} is not in 0..{plan.shards - 1}")
        self.plan = plan
        self.index = index
        self.model = model
        self.store = store
        self.limits = limits or ShardLimits()
        self.pod = pod
        self.layout = plan.layout
        try:
            self.projection = OutputProjection.for_task(model.task, plan.columns, plan.include_inputs)
        except ValueError as exc:
            raise ShardInputError("InvalidOutputColumns", str(exc)) from exc
        self.schema: tuple[Column, ...] = model.schema
        self.progress = _Progress()
        self._writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
        self._out_schema: pa.Schema | None = None
        self._part: UploadSink | None = None
        self._errors: UploadSink | None = None
        self._reference_columns: list[str] | None = None

    # --- the run ---------------------------------------------------------------------------------------
    def run(self) -> ShardResult:
        started = datetime.now(UTC)
        clock = time.monotonic()
        sizes = [o.size_bytes for o in self.plan.inputs]
        try:
            for piece in shard_byte_slices(sizes, self.index, self.plan.shards):
                obj = self.plan.inputs[piece.input]
                source = StoreObject(self.store, obj.uri, obj.size_bytes)
                if self.plan.input_format == "csv":
                    rows = self._score_csv(source, piece)
                else:
                    rows = self._score_parquet(source, piece)
                self.progress.slices.append(SliceResult(input=obj.uri, rows=rows))
            part = self._finish_part()
        except ErrorThresholdExceeded as exc:
            self._discard_part(exc)
            errors = self._finish_errors()
            self._write_result(started, clock, None, errors, ok=False, reason=exc.reason, message=exc.message)
            raise
        except BaseException as exc:
            self._discard_part(exc)
            if self._errors is not None:
                self._errors.abort(exc)
            raise
        errors = self._finish_errors()
        return self._write_result(started, clock, part, errors, ok=True)

    def _write_result(
        self,
        started: datetime,
        clock: float,
        part: PartFile | None,
        errors: PartFile | None,
        *,
        ok: bool,
        reason: str | None = None,
        message: str | None = None,
    ) -> ShardResult:
        result = ShardResult(
            uid=self.plan.uid,
            index=self.index,
            pod=self.pod,
            ok=ok,
            reason=reason,
            message=message,
            rows_scored=self.progress.scored,
            rows_rejected=self.progress.rejected,
            slices=self.progress.slices,
            part=part,
            errors=errors,
            model_sha256=self.model.digest,
            started_at=started,
            finished_at=datetime.now(UTC),
            seconds=round(time.monotonic() - clock, 3),
            peak_rss_bytes=peak_rss_bytes(),
        )
        # Last: the result says the part and the errors are in place.
        self.store.put_bytes(result.to_json(), self.layout.result(self.index), "application/json")
        return result

    # --- CSV -------------------------------------------------------------------------------------------
    def _score_csv(self, source: ByteSource, piece: Any) -> int:
        header = read_csv_header(source)
        self._check_columns(source.name, header.names)
        names = [c.name for c in self.schema]
        types = csv_column_types(self.schema)
        include = names
        if self.plan.include_inputs:
            # Columns the model does not read pass through as the text they are.
            types = {n: pa.string() for n in header.names} | types
            include = list(header.names)
        rows = 0
        for chunk in csv_chunks(source, piece, self.limits.csv_block_bytes):
            try:
                batch = parse_csv(chunk.data, header.names, types, include)
                self._write(self._score(batch))
                self.progress.scored += batch.num_rows
                rows += batch.num_rows
            except ROW_ERRORS:
                lines = split_lines(chunk.data)

                def score_lines(lo: int, hi: int, lines: list[bytes] = lines) -> pa.Table:
                    batch = parse_csv(b"".join(lines[lo:hi]), header.names, types, include)
                    if batch.num_rows != hi - lo:  # cannot happen with lines cut as the reader cuts them
                        raise pa.ArrowInvalid(f"{hi - lo} lines read as {batch.num_rows} rows")
                    return self._score(batch)

                self._score_apart(len(lines), score_lines, source.name, rows, header)
                rows += len(lines)
            self._check_threshold()
        return rows

    # --- Parquet -----------------------------------------------------------------------------------------
    def _score_parquet(self, source: ByteSource, piece: Any) -> int:
        parquet = open_parquet(source, self.limits.parquet_buffer_bytes)
        schema = parquet.schema_arrow
        self._check_columns(source.name, list(schema.names))
        for col in self.schema:
            kind = schema.field(col.name).type
            numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
            if col.type in ("number", "integer") and not numeric:
                raise ShardInputError(
                    "WrongColumnType",
                    f"{source.name}: column {col.name!r} holds {kind}, the model needs numbers",
                )
        columns = None if self.plan.include_inputs else [c.name for c in self.schema]
        groups = owned_row_groups(parquet.metadata, piece, source.size)
        rows = 0
        if not groups:
            return 0
        for batch in parquet.iter_batches(
            batch_size=self.limits.chunk_rows, row_groups=groups, columns=columns, use_threads=False
        ):
            try:
                self._write(self._score(batch))
                self.progress.scored += batch.num_rows
            except ROW_ERRORS:

                def score_rows(lo: int, hi: int, batch: pa.RecordBatch = batch) -> pa.Table:
                    return self._score(batch.slice(lo, hi - lo))

                self._score_apart(batch.num_rows, score_rows, source.name, rows, None)
            rows += batch.num_rows
            self._check_threshold()
        return rows

    # --- scoring -------------------------------------------------------------------------------------
    def _check_columns(self, name: str, present: list[str]) -> None:
        missing = [c.name for c in self.schema if c.name not in present]
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            raise ShardInputError(
                "MissingColumn",
                f"{name} has no column {listed}, which the model needs (it has {', '.join(present)})",
            )
        if not self.plan.include_inputs:
            return
        if self._reference_columns is None:
            self._reference_columns = present
        elif present != self._reference_columns:
            raise ShardInputError(
                "InputsDiffer",
                f"{name} has the columns {present}, other inputs {self._reference_columns}: with "
                "includeInputs every input must have the same columns",
            )

    def _score(self, batch: pa.RecordBatch) -> pa.Table:
        columns = columns_from_arrow(batch, self.schema, 0)
        prediction = self.model.predict(columns)
        return scored_table(batch, prediction, self.model.classes, self.projection)

    def _score_apart(
        self,
        count: int,
        score_range: Callable[[int, int], pa.Table],
        input_name: str,
        rows_before: int,
        header: CsvHeader | None,
    ) -> None:
        """Score rows [0, count) of a chunk that failed as a whole: halves until the bad rows stand alone.
        Good rows are written in their order; each bad row is recorded."""
        for outcome in _bisect(0, count, score_range):
            if isinstance(outcome, pa.Table):
                self._write(outcome)
                self.progress.scored += outcome.num_rows
            else:
                position, error = outcome
                self._record_bad(input_name, rows_before + position + 1, error, header)

    def _write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            fmt = self.plan.output_format
            self._part = UploadSink(self.store, self.layout.part(self.index, fmt), _CONTENT_TYPES[fmt])
            self._out_schema = table.schema
            if fmt == "csv":
                self._writer = pacsv.CSVWriter(self._part, table.schema)
            else:
                self._writer = pq.ParquetWriter(
                    self._part, table.schema, **parquet_write_options(table.schema)
                )
        elif self._out_schema is not None and table.schema != self._out_schema:
            table = table.cast(self._out_schema)
        self._writer.write_table(table)

    def _finish_part(self) -> PartFile | None:
        if self._writer is None or self._part is None:
            return None
        self._writer.close()
        written = self._part.finish()
        header = written.first_line_bytes if self.plan.output_format == "csv" else 0
        return PartFile(
            uri=written.uri,
            size_bytes=written.size_bytes,
            sha256=written.sha256,
            header_bytes=header,
            rows=self.progress.scored,
        )

    def _discard_part(self, error: BaseException) -> None:
        if self._part is not None:
            self._part.abort(error)

    # --- bad rows --------------------------------------------------------------------------------------
    def _record_bad(self, input_name: str, row: int, error: Exception, header: CsvHeader | None) -> None:
        column, reason = _explain(error, header)
        bad = BadRow(input_name, row, column, reason)
        self.progress.rejected += 1
        if self.progress.first_bad is None:
            self.progress.first_bad = bad
        if self._errors is None:
            self._errors = UploadSink(self.store, self.layout.errors_part(self.index), "text/csv")
            self._errors.write(_csv_line(ERRORS_HEADER))
        self._errors.write(_csv_line((bad.input, str(bad.row), bad.column, bad.reason)))

    def _check_threshold(self) -> None:
        limit = self.plan.error_threshold.rows_limit()
        rejected = self.progress.rejected
        if limit is None or rejected <= limit:
            return
        first = self.progress.first_bad
        said = (
            f"; the first: row {first.row} of this shard's part of {first.input}: {first.reason}"
            if first
            else ""
        )
        raise ErrorThresholdExceeded(
            f"shard {self.index}: {rejected} rows could not be scored ({self.progress.scored} scored), "
            f"beyond {self.plan.error_threshold.describe()}{said}"
        )

    def _finish_errors(self) -> PartFile | None:
        if self._errors is None:
            # A retried shard that now has no bad row leaves no stale errors behind.
            with contextlib.suppress(ObjectNotFoundError):
                self.store.remove(self.layout.errors_part(self.index))
            return None
        written = self._errors.finish()
        return PartFile(
            uri=written.uri,
            size_bytes=written.size_bytes,
            sha256=written.sha256,
            header_bytes=written.first_line_bytes,
            rows=self.progress.rejected,
        )


def _bisect(
    lo: int, hi: int, score_range: Callable[[int, int], pa.Table]
) -> Iterator[pa.Table | tuple[int, Exception]]:
    """Scored tables of the good rows of [lo, hi) in order, and (position, error) of each bad row."""
    if hi <= lo:
        return
    try:
        yield score_range(lo, hi)
        return
    except ROW_ERRORS as exc:
        if hi - lo == 1:
            yield (lo, exc)
            return
    middle = (lo + hi) // 2
    yield from _bisect(lo, middle, score_range)
    yield from _bisect(middle, hi, score_range)


def _explain(error: Exception, header: CsvHeader | None) -> tuple[str, str]:
    """(column, reason) of a bad row, in the words of the reader or the model."""
    column = ""
    if isinstance(error, InputValidationError):
        column = error.column or ""
        reason = _ROW_PREFIX.sub("", error.message)
    elif isinstance(error, PredictionError):
        reason = error.message
    else:
        text = str(error)
        match = _CSV_COLUMN.search(text)
        if match and header is not None and int(match.group(1)) < len(header.names):
            column = header.names[int(match.group(1))]
            text = name_csv_column(text, header.names)
        reason = _ARROW_ROW.sub("", text)
    return column, " ".join(reason.split())[:REASON_CHARS]


def peak_rss_bytes() -> int:
    """This process's peak resident memory: VmHWM, which a new program starts afresh (getrusage's ru_maxrss
    keeps the parent's high-water mark across fork and exec, so a small shard started by a big process
    would report the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _csv_line(values: tuple[str, ...]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().encode()
