"""Batch scoring (Azure's BES): `POST /jobs` scores an s3:// CSV or Parquet object into another one.

A job streams: CSV is parsed block by block straight from the object's HTTP stream; Parquet (which needs
random access) is spooled to local disk first and read one row group slice at a time. Each chunk is
validated, scored and appended to a local output file, which is uploaded at the end. Memory is bounded by
the chunk size, not by the file size. Jobs run one at a time on a worker thread; their state is kept in
memory (a restarted scorer forgets its jobs: callers resubmit).
"""

from __future__ import annotations

import csv
import logging
import queue
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kstudio_core.storage import ObjectStore, S3Uri, StorageError
from kstudio_scorer.columns import Column, Columns
from kstudio_scorer.errors import InputValidationError, JobNotFoundError, ScorerError
from kstudio_scorer.model import Prediction, ScoringModel
from kstudio_scorer.rrs import SCORED_LABELS, SCORED_PROBABILITIES, SCORED_VALUES, OutputProjection

log = logging.getLogger(__name__)

JobState = Literal["Queued", "Running", "Succeeded", "Failed"]
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


@dataclass
class Job:
    id: str
    input: str
    output: str
    input_format: Format
    output_format: Format
    state: JobState = "Queued"
    rows_done: int = 0
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        def ts(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "id": self.id,
            "state": self.state,
            "input": self.input,
            "output": self.output,
            "inputFormat": self.input_format,
            "outputFormat": self.output_format,
            "rowsDone": self.rows_done,
            "error": self.error,
            "createdAt": ts(self.created_at),
            "startedAt": ts(self.started_at),
            "finishedAt": ts(self.finished_at),
        }


def _name_csv_column(message: str, names: list[str]) -> str:
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
    batch: pa.RecordBatch, pred: Prediction, classes: list[Any], projection: OutputProjection
) -> pa.Table:
    """The output chunk: input columns (if projected) then the scored columns, Azure BES style."""
    names: list[str] = []
    arrays: list[pa.Array] = []
    if projection.include_inputs:
        names.extend(batch.schema.names)
        arrays.extend(batch.columns)
    for c in projection.columns:
        if c == SCORED_LABELS and pred.labels is not None:
            names.append(SCORED_LABELS)
            arrays.append(pa.array(pred.labels.tolist() if pred.labels.dtype.kind == "O" else pred.labels))
        elif c == SCORED_PROBABILITIES and pred.probabilities is not None:
            for k, cls in enumerate(classes):
                names.append(f'Scored Probabilities for Class "{cls}"')
                arrays.append(pa.array(pred.probabilities[:, k]))
        elif c == SCORED_VALUES and pred.values is not None:
            names.append(SCORED_VALUES)
            arrays.append(pa.array(pred.values))
    return pa.Table.from_arrays(arrays, names=names)


class JobManager:
    """Accepts jobs and runs them, one at a time, on a worker thread."""

    def __init__(
        self,
        model: ScoringModel,
        store_factory: Callable[[], ObjectStore],
        projection: Callable[[], OutputProjection],
        work_dir: Path,
        *,
        chunk_rows: int = 65_536,
        csv_block_bytes: int = 8 * 1024 * 1024,
        max_kept: int = 1000,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self._model = model
        self._store_factory = store_factory
        self._projection = projection
        self._work_dir = work_dir
        self._chunk_rows = chunk_rows
        self._csv_block_bytes = csv_block_bytes
        self._max_kept = max_kept
        self._on_finished = on_finished or (lambda job: None)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kstudio-jobs", daemon=True)
        self._thread.start()

    def submit(
        self, input_uri: str, output_uri: str, input_format: str | None, output_format: str | None
    ) -> Job:
        """Validate URIs and formats (ValueError names the problem) and queue the job."""
        S3Uri.parse(input_uri)
        S3Uri.parse(output_uri)
        job = Job(
            id=uuid.uuid4().hex,
            input=input_uri,
            output=output_uri,
            input_format=format_of(input_uri, input_format),
            output_format=format_of(output_uri, output_format),
        )
        with self._lock:
            self._jobs[job.id] = job
            self._evict()
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} (jobs are kept in memory by the scorer that ran them)")
        return job

    def _evict(self) -> None:
        while len(self._jobs) > self._max_kept:
            oldest = next((k for k, j in self._jobs.items() if j.state in ("Succeeded", "Failed")), None)
            if oldest is None:
                return
            del self._jobs[oldest]

    def _run(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self._jobs.get(job_id)
            if job is None:
                continue
            job.state = "Running"
            job.started_at = datetime.now(UTC)
            try:
                self.run(job)
                job.state = "Succeeded"
            except JobCancelledError:
                job.state, job.error = "Failed", "the scorer shut down while the job ran; resubmit it"
            except (ScorerError, StorageError) as exc:
                job.state, job.error = "Failed", str(getattr(exc, "message", exc))
            except (pa.ArrowException, ValueError, OSError) as exc:
                job.state, job.error = "Failed", f"cannot read {job.input}: {exc}"
            except Exception as exc:  # never let one job kill the worker
                log.exception("job %s failed", job.id)
                job.state, job.error = "Failed", f"{type(exc).__name__}: {exc}"
            job.finished_at = datetime.now(UTC)
            log.info(
                "job %s %s after %d rows%s",
                job.id,
                job.state,
                job.rows_done,
                f": {job.error}" if job.error else "",
            )
            self._on_finished(job)

    def _batches(self, job: Job, store: ObjectStore, spool: Path) -> Iterator[pa.RecordBatch]:
        schema = self._model.schema
        if job.input_format == "csv":
            stream = store.open_stream(S3Uri.parse(job.input))
            with stream:
                # the header, to name columns in pyarrow's errors ("In CSV column #2")
                first = stream.peek(64 * 1024).split(b"\n", 1)[0].decode("utf-8", "replace")
                names = next(csv.reader([first]), [])
                try:
                    reader = pacsv.open_csv(
                        stream,
                        read_options=pacsv.ReadOptions(block_size=self._csv_block_bytes),
                        convert_options=pacsv.ConvertOptions(
                            column_types={c.name: _ARROW_TYPES[c.type] for c in schema},
                            strings_can_be_null=True,
                        ),
                    )
                    yield from reader
                except pa.ArrowInvalid as exc:
                    raise InputValidationError(f"{job.input}: {_name_csv_column(str(exc), names)}") from exc
        else:
            local = spool / "input.parquet"
            store.download(S3Uri.parse(job.input), local)
            pf = pq.ParquetFile(local)
            yield from pf.iter_batches(batch_size=self._chunk_rows)

    def run(self, job: Job) -> None:
        """Score `job` synchronously (the worker calls this; tests may too)."""
        if not self._model.ready:
            raise ScorerError("the model is not ready")
        store = self._store_factory()
        projection = self._projection()
        spool = self._work_dir / job.id
        spool.mkdir(parents=True, exist_ok=True)
        out_path = spool / f"output.{job.output_format}"
        writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
        try:
            for batch in self._batches(job, store, spool):
                if self._stop.is_set():
                    raise JobCancelledError
                if batch.num_rows == 0:
                    continue
                columns = columns_from_arrow(batch, self._model.schema, job.rows_done)
                pred = self._model.predict(columns)
                table = scored_table(batch, pred, self._model.classes, projection)
                if writer is None:
                    if job.output_format == "csv":
                        writer = pacsv.CSVWriter(out_path, table.schema)
                    else:
                        writer = pq.ParquetWriter(out_path, table.schema)
                writer.write_table(table)
                job.rows_done += batch.num_rows
            if writer is None:
                raise InputValidationError(f"{job.input} has no rows")
            writer.close()
            writer = None
            store.upload(out_path, S3Uri.parse(job.output))
        finally:
            if writer is not None:
                writer.close()
            shutil.rmtree(spool, ignore_errors=True)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
