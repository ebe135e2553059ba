"""Batch jobs: records, where they are kept, and who runs them.

A job record lives in a JobStore. With `KSTUDIO_JOBS_STORE_URI` (s3://bucket/prefix) that is object storage
next to the endpoint, shared by every replica: any replica answers GET/DELETE for any job, and a restarted
pod's jobs do not vanish. Without it, records are kept in this process's memory (one replica only).

The replica that accepts a job (`POST /jobs`, or classic `.../start`) runs it on its worker thread and owns
its record: it rewrites the record on every state change and every `heartbeat_seconds` while the job is
queued or running. A reader that finds a Queued/Running record whose heartbeat is older than
`lease_seconds` reports it Failed, naming the pod that stopped, and writes that down. Cancelling from
another replica leaves a marker object that the owner sees at its next heartbeat or chunk.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
import pyarrow as pa

from kstudio_core.storage import (
    BucketNotFoundError,
    ObjectNotFoundError,
    ObjectStore,
    S3Uri,
    StorageError,
    StorageSettings,
)
from kstudio_scorer.bes.file_scoring import (
    Format,
    JobCancelledError,
    ScoringTask,
    StreamLimits,
    format_of,
    score_file,
)
from kstudio_scorer.errors import JobNotFoundError, ScorerError
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ScoringModel

log = logging.getLogger(__name__)

JobState = Literal["Created", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]
FINAL_STATES = frozenset({"Succeeded", "Failed", "Cancelled"})
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Job:
    """One batch job. `credentials` (classic jobs: the storage named by their connection strings) are kept
    in the record so any replica can run the job, and never appear in `to_dict()` or logs."""

    id: str
    input: str
    output: str
    input_format: Format
    output_format: Format
    state: JobState = "Queued"
    rows_done: int = 0
    error: str | None = None
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner: str | None = None
    heartbeat_at: datetime | None = None
    cancel_requested: bool = False
    classic: dict[str, str] | None = None  # BES: input/output names, relative and base locations
    credentials: dict[str, StorageSettings] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` shows it (no credentials)."""
        return {
            "id": self.id,
            "state": self.state,
            "input": self.input,
            "output": self.output,
            "inputFormat": self.input_format,
            "outputFormat": self.output_format,
            "rowsDone": self.rows_done,
            "error": self.error,
            "owner": self.owner,
            "createdAt": _ts(self.created_at),
            "startedAt": _ts(self.started_at),
            "finishedAt": _ts(self.finished_at),
        }

    def to_record(self) -> bytes:
        """The stored record: the public fields plus what another replica needs to run or judge it."""
        doc = self.to_dict()
        doc["heartbeatAt"] = _ts(self.heartbeat_at)
        doc["cancelRequested"] = self.cancel_requested
        doc["classic"] = self.classic
        doc["credentials"] = {k: v.model_dump() for k, v in self.credentials.items()}
        return orjson.dumps(doc)

    @classmethod
    def from_record(cls, data: bytes) -> Job:
        doc = orjson.loads(data)
        return cls(
            id=doc["id"],
            input=doc["input"],
            output=doc["output"],
            input_format=doc["inputFormat"],
            output_format=doc["outputFormat"],
            state=doc["state"],
            rows_done=doc["rowsDone"],
            error=doc["error"],
            created_at=_parse_ts(doc["createdAt"]) or _now(),
            started_at=_parse_ts(doc["startedAt"]),
            finished_at=_parse_ts(doc["finishedAt"]),
            owner=doc.get("owner"),
            heartbeat_at=_parse_ts(doc.get("heartbeatAt")),
            cancel_requested=bool(doc.get("cancelRequested")),
            classic=doc.get("classic"),
            credentials={k: StorageSettings(**v) for k, v in (doc.get("credentials") or {}).items()},
        )


class JobStore(Protocol):
    """Where job records live. `shared`: other replicas see the same records."""

    shared: bool

    def save(self, job: Job) -> None: ...

    def load(self, job_id: str) -> Job | None: ...

    def mark_cancel(self, job_id: str) -> None: ...

    def cancel_marked(self, job_id: str) -> bool: ...


class MemoryJobStore:
    """Records in this process only (no KSTUDIO_JOBS_STORE_URI): finished ones beyond `max_kept` go."""

    shared = False

    def __init__(self, max_kept: int = 1000) -> None:
        self._jobs: OrderedDict[str, bytes] = OrderedDict()
        self._cancel: set[str] = set()
        self._max_kept = max_kept
        self._lock = threading.Lock()

    def save(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job.to_record()
            while len(self._jobs) > self._max_kept:
                oldest = next(iter(self._jobs))
                del self._jobs[oldest]
                self._cancel.discard(oldest)

    def load(self, job_id: str) -> Job | None:
        with self._lock:
            data = self._jobs.get(job_id)
        return None if data is None else Job.from_record(data)

    def mark_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def cancel_marked(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancel


class ObjectJobStore:
    """Records as `<prefix>/<id>.json` in object storage; a cancel request is `<prefix>/<id>.cancel`."""

    shared = True

    def __init__(self, store: ObjectStore, root: S3Uri) -> None:
        self._store = store
        self._bucket = root.bucket
        self._prefix = root.key.rstrip("/")
        store.ensure_bucket(root.bucket)

    def _uri(self, job_id: str, suffix: str) -> S3Uri:
        return S3Uri(self._bucket, f"{self._prefix}/{job_id}{suffix}")

    def save(self, job: Job) -> None:
        self._store.put_bytes(job.to_record(), self._uri(job.id, ".json"), content_type="application/json")

    def load(self, job_id: str) -> Job | None:
        try:
            return Job.from_record(self._store.get_bytes(self._uri(job_id, ".json"), max_bytes=1024 * 1024))
        except (ObjectNotFoundError, BucketNotFoundError):
            return None

    def mark_cancel(self, job_id: str) -> None:
        self._store.put_bytes(b"{}", self._uri(job_id, ".cancel"), content_type="application/json")

    def cancel_marked(self, job_id: str) -> bool:
        return self._store.exists(self._uri(job_id, ".cancel"))


@dataclass(frozen=True)
class Ownership:
    """Who this process is and how it keeps its claim on the jobs it runs."""

    pod_name: str
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 30.0


class JobManager:
    """Accepts jobs, runs this replica's one at a time on a worker thread, and keeps their records."""

    def __init__(
        self,
        model: ScoringModel,
        store_factory: Callable[[], ObjectStore],
        projection: Callable[[], OutputProjection],
        work_dir: Path,
        *,
        job_store: JobStore | None = None,
        ownership: Ownership | None = None,
        limits: StreamLimits | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self._model = model
        self._store_factory = store_factory
        self._projection = projection
        self._work_dir = work_dir
        self._records: JobStore = job_store or MemoryJobStore()
        self._me = ownership or Ownership(pod_name="local")
        self._limits = limits or StreamLimits()
        self._on_finished = on_finished or (lambda job: None)
        self._local: dict[str, Job] = {}  # jobs this process owns and has not finished
        self._lock = threading.Lock()  # serialises record writes of local jobs with their removal
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="kstudio-jobs", daemon=True)
        self._worker.start()
        self._heartbeat = threading.Thread(target=self._beat, name="kstudio-jobs-heartbeat", daemon=True)
        self._heartbeat.start()

    # --- accepting jobs --------------------------------------------------------------------------
    def submit(
        self, input_uri: str, output_uri: str, input_format: str | None, output_format: str | None
    ) -> Job:
        """`POST /jobs`: validate URIs and formats (ValueError names the problem), record, and queue here."""
        return self._claim(new_job(input_uri, output_uri, input_format, output_format))

    def create(self, job: Job) -> Job:
        """Classic create: record a job in state Created; it runs when some replica starts it."""
        job.state = "Created"
        self._records.save(job)
        return job

    def start(self, job_id: str) -> Job:
        """Classic start: this replica claims a Created job and queues it. Other states: returned as is."""
        job = self.get(job_id)
        return self._claim(job) if job.state == "Created" else job

    def _claim(self, job: Job) -> Job:
        """Queue `job` here; returns it as queued (the worker may move on at once)."""
        job.state = "Queued"
        job.owner = self._me.pod_name
        job.heartbeat_at = _now()
        with self._lock:
            self._records.save(job)
            self._local[job.id] = job
            queued = replace(job)
        self._queue.put(job.id)
        return queued

    # --- reading and cancelling ------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job as it stands, from any replica. A job whose owner stopped heartbeating is Failed."""
        with self._lock:
            local = self._local.get(job_id)
        if local is not None:
            return local
        job = self._records.load(job_id) if _JOB_ID.match(job_id) else None
        if job is None:
            where = "the shared job store" if self._records.shared else "this scorer's memory"
            raise JobNotFoundError(f"no job {job_id!r} in {where}")
        if job.state in ("Queued", "Running") and self._lease_expired(job):
            self._fail_abandoned(job)
        return job

    def _lease_expired(self, job: Job) -> bool:
        beat = job.heartbeat_at or job.created_at
        return _now() - beat > timedelta(seconds=self._me.lease_seconds)

    def _fail_abandoned(self, job: Job) -> None:
        stopped = "while running the job" if job.state == "Running" else "before running the job"
        if job.cancel_requested or self._records.cancel_marked(job.id):
            job.state, job.error = "Cancelled", None
        else:
            job.state = "Failed"
            job.error = (
                f"scorer pod {job.owner} stopped {stopped} (no heartbeat since {_ts(job.heartbeat_at)}); "
                "start a new job"
            )
        job.finished_at = _now()
        try:
            self._records.save(job)
        except StorageError as exc:  # the answer stays right; the next reader writes it again
            log.warning("could not record that job %s failed: %s", job.id, exc)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if not yet claimed, else its owner stops at its next chunk or heartbeat."""
        with self._lock:
            local = self._local.get(job_id)
            if local is not None:
                local.cancel_requested = True
                if local.state != "Queued":  # running: the worker stops at its next chunk
                    self._records.save(local)
                    return local
                local.state = "Cancelled"  # queued behind another job here: cancelled at once
        if local is not None:
            self._finish(local)
            return local
        job = self.get(job_id)
        if job.final:
            return job
        job.cancel_requested = True
        if job.state == "Created":
            job.state, job.finished_at = "Cancelled", _now()
            self._records.save(job)
        else:
            self._records.mark_cancel(job.id)
        return job

    # --- running ---------------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self._me.heartbeat_seconds):
            with self._lock:
                jobs = list(self._local.values())
            for job in jobs:
                try:
                    if not job.cancel_requested and self._records.cancel_marked(job.id):
                        job.cancel_requested = True
                    with self._lock:
                        if job.id in self._local:
                            job.heartbeat_at = _now()
                            self._records.save(job)
                except StorageError as exc:
                    log.warning("heartbeat of job %s not recorded: %s", job.id, exc)

    def _finish(self, job: Job) -> None:
        job.finished_at = _now()
        with self._lock:
            self._local.pop(job.id, None)
            try:
                self._records.save(job)
            except StorageError as exc:
                log.error("job %s %s but its record could not be written: %s", job.id, job.state, exc)
        log.info(
            "job %s %s after %d rows%s",
            job.id,
            job.state,
            job.rows_done,
            f": {job.error}" if job.error else "",
        )
        self._on_finished(job)

    def _run(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._local.get(job_id)
                if job is None or job.state != "Queued":  # cancelled while it waited
                    continue
                job.state = "Running"
                job.started_at = _now()
            try:
                with self._lock:
                    self._records.save(job)
                self.run(job)
                job.state = "Succeeded"
            except JobCancelledError:
                if job.cancel_requested:
                    job.state = "Cancelled"
                else:
                    job.state, job.error = "Failed", self._shutdown_reason()
            except (ScorerError, StorageError) as exc:
                job.state, job.error = "Failed", str(getattr(exc, "message", exc))
            except (pa.ArrowException, ValueError, OSError) as exc:
                job.state, job.error = "Failed", f"cannot read {job.input}: {exc}"
            except Exception as exc:  # never let one job kill the worker
                log.exception("job %s failed", job.id)
                job.state, job.error = "Failed", f"{type(exc).__name__}: {exc}"
            self._finish(job)

    def _shutdown_reason(self) -> str:
        return (
            f"scorer pod {self._me.pod_name} shut down while the job was queued or running; start a new job"
        )

    def _store_for(self, job: Job, role: str) -> ObjectStore:
        settings = job.credentials.get(role)
        return ObjectStore(settings) if settings is not None else self._store_factory()

    def run(self, job: Job) -> None:
        """Score `job` synchronously (the worker calls this)."""

        def progress(n: int) -> None:
            job.rows_done += n

        task = ScoringTask(
            input=S3Uri.parse(job.input),
            output=S3Uri.parse(job.output),
            input_format=job.input_format,
            output_format=job.output_format,
            input_store=self._store_for(job, "input"),
            output_store=self._store_for(job, "output"),
            classic_names=job.classic is not None,
        )
        score_file(
            task,
            self._model,
            self._projection(),
            self._work_dir / job.id,
            self._limits,
            on_rows=progress,
            should_stop=lambda: job.cancel_requested or self._stop.is_set(),
        )

    def close(self) -> None:
        """Stop: the running job fails with the reason, queued ones too (their records say so)."""
        self._stop.set()
        self._queue.put(None)
        self._worker.join(timeout=30)
        with self._lock:
            left = [j for j in self._local.values() if not j.final]
        for job in left:
            job.state, job.error = "Failed", self._shutdown_reason()
            self._finish(job)


def new_job(
    input_uri: str,
    output_uri: str,
    input_format: str | None,
    output_format: str | None,
    *,
    classic: dict[str, str] | None = None,
    credentials: dict[str, StorageSettings] | None = None,
) -> Job:
    """A job record with a fresh id; ValueError names a bad URI or format."""
    S3Uri.parse(input_uri)
    S3Uri.parse(output_uri)
    return Job(
        id=uuid.uuid4().hex,
        input=input_uri,
        output=output_uri,
        input_format=format_of(input_uri, input_format),
        output_format=format_of(output_uri, output_format),
        classic=classic,
        credentials=credentials or {},
    )
