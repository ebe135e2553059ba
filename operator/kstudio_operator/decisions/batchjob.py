"""The BatchJob decision: which model, whether its input exists, how many shards, the Job, and from the
Job, its pods and the shards' result documents the status, the output to publish, and why it failed.

The handler observes what this needs before calling it: the indexes (models, the Endpoint, the Job, its
pods), and from object storage the input listing (before the Job exists) and the shards' results (once the
Job completed). Everything the operator decided is kept on the Job (annotation kstudio.io/batch-plan) and
in the plan document, so a restarted operator rebuilds the status from them and the Job runs on meanwhile.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kstudio_core.batch import (
    BatchManifest,
    ErrorThreshold,
    InputObject,
    ManifestPart,
    OutputLayout,
    PlannedModel,
    ShardResult,
    numbered_slices,
)
from kstudio_operator import constants as c
from kstudio_operator.builders.batchjob import JobPlan, batch_plan, job_name, output_prefix, shard_job
from kstudio_operator.builders.ownership import own
from kstudio_operator.decisions import Decision, Event, describe_validation_error
from kstudio_operator.decisions.run_history import job_phase, parse_time
from kstudio_operator.resources.batchjob import (
    LISTED_FAILED_SHARDS,
    MAX_SHARDS,
    BatchJobSpec,
    BatchJobStatus,
    FailedShard,
    InputSummary,
    RowCounts,
    ShardCounts,
)
from kstudio_operator.resources.common import digest_prefix, set_condition
from kstudio_operator.settings import OperatorConfig

FINAL = ("Succeeded", "Failed")
# Waiting reasons of a container on its way up: nothing to report.
_STARTING = ("ContainerCreating", "PodInitializing")


# --- what the handler observed -------------------------------------------------------------------------
@dataclass(frozen=True)
class Listing:
    """The input as found in storage before any pod starts. `rows`: counted (Parquet footers) or
    estimated (CSV) when spec.rowsPerShard needs it. A `problem` that is not `retryable` fails the job."""

    inputs: list[InputObject] = field(default_factory=list)
    format: str | None = None
    rows: int | None = None
    problem: str | None = None
    message: str = ""
    retryable: bool = False


@dataclass(frozen=True)
class Results:
    """The result documents of every shard of a completed Job, or why they cannot be read."""

    shards: list[ShardResult] = field(default_factory=list)
    problem: str | None = None
    message: str = ""
    retryable: bool = False


@dataclass
class BatchObserved:
    namespace: str
    name: str
    uid: str
    generation: int
    # The namespace's TrainedModels by name (a lookup view of the index: read two, copy none).
    models: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    endpoint: dict[str, Any] | None = None  # spec.endpoint as the watch last showed it
    job: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    listing: Listing | None = None
    results: Results | None = None


# --- actions ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WritePlan:
    uri: str
    document: bytes


@dataclass(frozen=True)
class CreateJob:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ErrorsPart:
    """One shard's errors file; its rows are renumbered within each input from `first_rows`."""

    uri: str
    first_rows: dict[str, int]


@dataclass(frozen=True)
class Publish:
    """What to write once the shards are done: errors.csv (from the shards' errors files), the one file
    (the parts composed by the store, then the parts removed) and last manifest.json (None: the job
    failed its threshold; only errors.csv is written)."""

    manifest_uri: str
    manifest: BatchManifest | None
    errors_uri: str | None
    errors: list[ErrorsPart]
    one_file_uri: str | None
    pieces: list[tuple[str, int, int]]  # (part URI, offset, length): the one file's bytes, in order


# --- the model -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    name: str
    source: str
    uri: str
    sha256: str


@dataclass(frozen=True)
class ModelWait:
    reason: str
    message: str


def parse_spec(raw: dict[str, Any]) -> tuple[BatchJobSpec | None, str]:
    try:
        return BatchJobSpec.model_validate(dict(raw)), ""
    except ValidationError as exc:
        return None, describe_validation_error(exc)


def resolve_model(
    spec: BatchJobSpec,
    status: BatchJobStatus,
    models: Mapping[str, dict[str, Any]],
    endpoint: dict[str, Any] | None,
) -> ModelChoice | ModelWait:
    """The model to score with: the one recorded at the start, else the TrainedModel (Ready), else what
    the Endpoint serves (Ready) — or why the job must wait."""
    if status.model and status.model_uri and status.model_digest and status.model_source:
        return ModelChoice(status.model, status.model_source, status.model_uri, status.model_digest)
    if spec.model is not None:
        return _trained_model(spec.model, f"TrainedModel/{spec.model}", models)
    name = str(spec.endpoint)
    if endpoint is None:
        return ModelWait("EndpointNotFound", f"Endpoint {name} does not exist (yet)")
    served = endpoint.get("status") or {}
    model, digest, phase = served.get("model"), served.get("modelDigest"), served.get("phase")
    if phase != "Ready" or not model or not digest:
        return ModelWait(
            "EndpointNotReady",
            f"Endpoint {name} is {phase or 'Pending'}: the job starts with the model it serves once Ready",
        )
    choice = _trained_model(str(model), f"Endpoint/{name}", models)
    if isinstance(choice, ModelChoice) and choice.sha256 != digest:
        return ModelWait(
            "ModelNotReady",
            f"Endpoint {name} serves sha256 {digest}, but TrainedModel {model} is {choice.sha256}",
        )
    return choice


def _trained_model(name: str, source: str, models: Mapping[str, dict[str, Any]]) -> ModelChoice | ModelWait:
    entry = models.get(name)
    if entry is None:
        return ModelWait("ModelNotFound", f"TrainedModel {name} does not exist (yet)")
    status = entry.get("status") or {}
    if status.get("phase") != "Ready":
        said = f": {status['message']}" if status.get("message") else ""
        return ModelWait(
            "ModelNotReady", f"TrainedModel {name} is {status.get('phase') or 'not verified yet'}{said}"
        )
    artifact = (entry.get("spec") or {}).get("artifact") or {}
    return ModelChoice(name, source, str(artifact.get("uri")), str(artifact.get("sha256")))


# --- shards ----------------------------------------------------------------------------------------------
def shard_count(spec: BatchJobSpec, listing: Listing) -> int:
    """spec.shards, or enough shards for about spec.rowsPerShard rows each; 1 by default."""
    if spec.shards is not None:
        return spec.shards
    if spec.rows_per_shard is not None and listing.rows is not None:
        return max(1, min(MAX_SHARDS, math.ceil(listing.rows / spec.rows_per_shard)))
    return 1


def needs_listing(spec: BatchJobSpec | None, status: dict[str, Any], job: dict[str, Any] | None) -> bool:
    """Whether the handler must list the input: the job has not started and has not ended."""
    return spec is not None and job is None and status.get("phase") not in FINAL


def needs_results(spec: BatchJobSpec | None, status: dict[str, Any], job: dict[str, Any] | None) -> bool:
    """Whether the handler must read the shards' results: the Job completed and nothing is published."""
    return (
        spec is not None
        and job is not None
        and status.get("phase") not in FINAL
        and job_phase(job) == "Succeeded"
    )


def index_count(text: str | None) -> int:
    """How many indexes "0-2,5,7-9" names (the Job's completedIndexes / failedIndexes)."""
    return len(parse_indexes(text))


def parse_indexes(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out


# --- the decision ----------------------------------------------------------------------------------------
def decide_batch_job(
    spec_raw: dict[str, Any],
    status: dict[str, Any],
    observed: BatchObserved,
    now: datetime,
    config: OperatorConfig,
    owner: dict[str, Any],
) -> Decision:
    """The whole BatchJob reconcile as a value. `owner` is the BatchJob (its Job's owner reference)."""
    previous = BatchJobStatus.model_validate(status)
    gen = observed.generation
    if previous.phase in FINAL:
        return Decision(status=previous.to_wire())
    spec, problem = parse_spec(spec_raw)
    if spec is None:
        return _finish(previous, gen, "Failed", "InvalidSpec", problem, now)
    if observed.job is not None:
        return _follow_job(spec, previous, observed, observed.job, now)
    model = resolve_model(spec, previous, observed.models, observed.endpoint)
    if isinstance(model, ModelWait):
        desired = _with(
            previous,
            gen,
            phase="Pending",
            reason=model.reason,
            message=model.message,
            conditions=set_condition(
                previous.conditions, "ModelReady", "False", model.reason, model.message, gen, now
            ),
        )
        events = [] if previous.reason == model.reason else [Event("Normal", model.reason, model.message)]
        return Decision(status=desired.to_wire(), events=events)
    recorded = _with(
        previous,
        gen,
        **_recorded_model(model.name, model.source, model.uri, model.sha256),
        conditions=set_condition(
            previous.conditions,
            "ModelReady",
            "True",
            "ModelReady",
            f"{model.source}: sha256 {model.sha256}",
            gen,
            now,
        ),
    )
    listing = observed.listing
    if listing is None or listing.problem is not None:
        if listing is not None and not listing.retryable:
            decision = _finish(
                recorded, gen, "Failed", listing.problem or "InputUnusable", listing.message, now
            )
            decision.events.append(Event("Warning", listing.problem or "InputUnusable", listing.message))
            return decision
        reason = listing.problem if listing is not None else "Listing"
        message = listing.message if listing is not None else "listing the input"
        return Decision(
            status=_with(recorded, gen, phase="Pending", reason=reason, message=message).to_wire()
        )
    return _start(spec, recorded, observed, model, listing, now, config, owner)


def _start(
    spec: BatchJobSpec,
    status: BatchJobStatus,
    observed: BatchObserved,
    model: ModelChoice,
    listing: Listing,
    now: datetime,
    config: OperatorConfig,
    owner: dict[str, Any],
) -> Decision:
    shards = shard_count(spec, listing)
    fmt = str(listing.format)
    plan = batch_plan(
        observed.namespace,
        observed.name,
        observed.uid,
        spec,
        listing.inputs,
        fmt,
        shards,
        PlannedModel(name=model.name, uri=model.uri, sha256=model.sha256),
    )
    size = sum(o.size_bytes for o in listing.inputs)
    job_plan = JobPlan(
        model.name, model.source, model.uri, model.sha256, len(listing.inputs), size, fmt, shards
    )
    job = own(shard_job(observed.namespace, observed.name, spec, plan, job_plan, config), owner)
    message = (
        f"{shards} shard(s) over {len(listing.inputs)} {fmt} object(s), {size} bytes, with {model.source} "
        f"(sha256 {model.sha256[:12]})"
    )
    gen = observed.generation
    desired = _with(
        status,
        gen,
        phase="Running",
        reason="Started",
        message=message,
        job=job_name(observed.name),
        inputs=InputSummary(objects=len(listing.inputs), size_bytes=size, format=fmt),
        shards=ShardCounts(total=shards),
        conditions=set_condition(status.conditions, "Running", "True", "Started", message, gen, now),
    )
    return Decision(
        status=desired.to_wire(),
        actions=[WritePlan(plan.layout.plan, plan.to_json()), CreateJob(job)],
        events=[Event("Normal", "Started", f"Job {job_name(observed.name)}: {message}")],
    )


def _follow_job(
    spec: BatchJobSpec, previous: BatchJobStatus, observed: BatchObserved, job: dict[str, Any], now: datetime
) -> Decision:
    """Status from the Job (and its plan annotation); on completion, the output; on failure, why."""
    gen = observed.generation
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    planned = JobPlan.from_annotation(annotations.get(c.ANNOTATION_BATCH_PLAN))
    job_status = job.get("status") or {}
    status = previous
    if planned is not None:
        status = _with(
            status,
            gen,
            **_recorded_model(planned.model, planned.model_source, planned.model_uri, planned.model_sha256),
            inputs=InputSummary(
                objects=planned.objects, size_bytes=planned.size_bytes, format=planned.format
            ),
        )
    total = planned.shards if planned is not None else int((job.get("spec") or {}).get("completions") or 0)
    counts = ShardCounts(
        total=total,
        active=int(job_status.get("active") or 0),
        succeeded=index_count(job_status.get("completedIndexes")),
        failed=index_count(job_status.get("failedIndexes")),
    )
    started = parse_time(job_status.get("startTime"))
    status = _with(
        status, gen, job=job_name(observed.name), shards=counts, started_at=started or status.started_at
    )
    phase = job_phase(job)
    if phase == "Failed":
        reason, message, failed = explain_failure(job, observed.pods, spec)
        decision = _finish(status, gen, "Failed", reason, message, now)
        decision.status = _with(
            BatchJobStatus.model_validate(decision.status),
            gen,
            failed_shards=failed,
            shards=counts.model_copy(update={"active": 0}),
        ).to_wire()
        decision.events.append(Event("Warning", reason, message))
        return decision
    if phase == "Succeeded":
        return _complete(spec, status, observed, job, now)
    message = f"{counts.succeeded} of {counts.total} shards done, {counts.active} running"
    stuck = [p for p in observed.pods if p.get("waiting") and not str(p["waiting"]).startswith(_STARTING)]
    if stuck:
        message += f"; pod {stuck[0].get('name')} waits: {stuck[0]['waiting']}"
    running = _with(
        status,
        gen,
        phase="Running",
        reason="Scoring",
        message=message,
        conditions=set_condition(status.conditions, "Running", "True", "Scoring", message, gen, now),
    )
    return Decision(status=running.to_wire())


def _complete(
    spec: BatchJobSpec, status: BatchJobStatus, observed: BatchObserved, job: dict[str, Any], now: datetime
) -> Decision:
    gen = observed.generation
    results = observed.results
    if results is None or (results.problem is not None and results.retryable):
        message = results.message if results is not None else "reading the shards' results"
        return Decision(
            status=_with(status, gen, phase="Running", reason="Publishing", message=message).to_wire()
        )
    if results.problem is not None:
        decision = _finish(status, gen, "Failed", results.problem, results.message, now)
        decision.events.append(Event("Warning", results.problem, results.message))
        return decision
    scored = sum(r.rows_scored for r in results.shards)
    rejected = sum(r.rows_rejected for r in results.shards)
    read = scored + rejected
    job_status = job.get("status") or {}
    # From the Job's start to the last shard's end: the Job's completionTime comes only after its
    # SuccessCriteriaMet condition, which is when the output is published.
    ends = [r.finished_at for r in results.shards if r.finished_at is not None]
    started = parse_time(job_status.get("startTime"))
    completed = max(ends) if ends else parse_time(job_status.get("completionTime"))
    seconds = (completed - started).total_seconds() if started and completed else None
    rate = round(read / seconds, 1) if seconds and seconds > 0 else None
    threshold = _threshold(spec)
    prefix = output_prefix(spec)
    layout = OutputLayout(prefix)
    first_rows = numbered_slices(results.shards)
    errors = [
        ErrorsPart(r.errors.uri, {s.input: first_rows[(r.index, s.input)] for s in r.slices})
        for r in sorted(results.shards, key=lambda r: r.index)
        if r.errors is not None
    ]
    rows = RowCounts(scored=scored, rejected=rejected)
    counted = f"{scored} rows scored, {rejected} rejected"
    if threshold.exceeded(rejected, read):
        share = f" ({rejected * 100 / read:.2f}% of {read})" if read else ""
        message = (
            f"{rejected} rows could not be scored{share}, beyond {threshold.describe()}; see {layout.errors}"
        )
        decision = _finish(status, gen, "Failed", "ErrorThresholdExceeded", message, now)
        decision.status = _with(
            BatchJobStatus.model_validate(decision.status), gen, rows=rows, outputs=[layout.errors]
        ).to_wire()
        decision.actions.append(Publish(layout.manifest, None, layout.errors, errors, None, []))
        decision.events.append(Event("Warning", "ErrorThresholdExceeded", message))
        return decision
    planned = PlannedModel(name=str(status.model), uri=str(status.model_uri), sha256=str(status.model_digest))
    fmt = spec.output.format
    parts = [
        ManifestPart(
            index=r.index,
            uri=r.part.uri,
            rows=r.part.rows,
            size_bytes=r.part.size_bytes,
            sha256=r.part.sha256,
        )
        for r in sorted(results.shards, key=lambda r: r.index)
        if r.part is not None
    ]
    one_file = layout.one_file(fmt) if spec.output.one_file else None
    pieces: list[tuple[str, int, int]] = []
    if one_file is not None:
        for r in sorted(results.shards, key=lambda r: r.index):
            if r.part is None or r.part.size_bytes == 0:
                continue
            skip = r.part.header_bytes if pieces else 0  # one header: the first part's
            pieces.append((r.part.uri, skip, r.part.size_bytes - skip))
    manifest = BatchManifest(
        batch_job=f"{observed.namespace}/{observed.name}",
        uid=observed.uid,
        model=planned,
        format=fmt,
        rows_scored=scored,
        rows_rejected=rejected,
        shards=len(results.shards),
        parts=[] if one_file else parts,
        one_file=one_file,
        errors=layout.errors if errors else None,
        published_at=now,
    )
    outputs = [layout.manifest] + ([one_file] if one_file else []) + ([layout.errors] if errors else [])
    message = (
        f"{counted}"
        + (f" at {rate:,.0f} rows/s" if rate else "")
        + f"; {outputs[-1] if one_file else layout.manifest}"
    )
    done = _with(
        status,
        gen,
        phase="Succeeded",
        reason="Published",
        message=message,
        rows=rows,
        rows_per_second=rate,
        finished_at=now,
        outputs=outputs,
        shards=status.shards.model_copy(update={"active": 0}),
        conditions=set_condition(
            set_condition(status.conditions, "Running", "False", "Completed", counted, gen, now),
            "Complete",
            "True",
            "Published",
            message,
            gen,
            now,
        ),
    )
    return Decision(
        status=done.to_wire(),
        actions=[
            Publish(layout.manifest, manifest, layout.errors if errors else None, errors, one_file, pieces)
        ],
        events=[Event("Normal", "Succeeded", message)],
    )


def _threshold(spec: BatchJobSpec) -> ErrorThreshold:
    t = spec.error_threshold
    return ErrorThreshold(rows=t.rows if t else None, percent=t.percent if t else None)


# --- why it failed ---------------------------------------------------------------------------------------
def explain_failure(
    job: dict[str, Any], pods: list[dict[str, Any]], spec: BatchJobSpec
) -> tuple[str, str, list[FailedShard]]:
    """(reason, message, failed shards) of a failed Job: the shard runner's own words first (its
    termination summary names the column or the counts), then the exit code, then the Job's condition."""
    job_status = job.get("status") or {}
    failed_indexes = parse_indexes(job_status.get("failedIndexes"))
    latest: dict[int, dict[str, Any]] = {}
    for pod in sorted(pods, key=lambda p: str(p.get("created") or "")):
        if pod.get("exitCode") not in (None, 0) and pod.get("index") is not None:
            latest[int(pod["index"])] = pod
    indexes = failed_indexes or sorted(latest)
    shards = [_failed_shard(i, latest.get(i), spec) for i in indexes[:LISTED_FAILED_SHARDS]]
    told = next((s for s in shards if s.reason and s.message), None)
    if told is not None:
        more = len(indexes) - 1
        also = f" ({more} more shard{'s' if more > 1 else ''} failed)" if more > 0 else ""
        return str(told.reason), f"shard {told.index}: {told.message}{also}", shards
    condition: dict[str, Any] = next(
        (
            x
            for x in job_status.get("conditions") or []
            if x.get("type") in ("Failed", "FailureTarget") and x.get("status") == "True"
        ),
        {},
    )
    reason = str(condition.get("reason") or "JobFailed")
    return (
        reason,
        str(
            condition.get("message")
            or f"the Job {job_name(str((job.get('metadata') or {}).get('name')))} failed"
        ),
        shards,
    )


def _failed_shard(index: int, pod: dict[str, Any] | None, spec: BatchJobSpec) -> FailedShard:
    if pod is None:
        return FailedShard(index=index)
    code = pod.get("exitCode")
    words = str(pod.get("message") or "").strip()
    reason, message = _summary(words)
    if pod.get("reason") == "OOMKilled":
        reason = "OOMKilled"
        message = f"out of memory at the limit {spec.resources.memory}; raise spec.resources.memory"
    elif reason is None:
        reason = {c.EXIT_INPUT_ERROR: "InvalidInput", c.EXIT_INFRASTRUCTURE_ERROR: "InfrastructureError"}.get(
            int(code or 0), "ShardFailed"
        )
        tail = words.splitlines()[-1] if words else ""
        message = f"{tail or 'the shard failed'} (exit code {code})"
    return FailedShard(index=index, exit_code=code, reason=reason, message=(message or "")[:2048])


def _summary(text: str) -> tuple[str | None, str | None]:
    """(reason, message) of the shard runner's JSON termination summary, if the text is one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(doc, dict) or doc.get("ok") is not False:
        return None, None
    reason = doc.get("reason")
    return (str(reason) if isinstance(reason, str) and reason.isalnum() else None), (
        str(doc["message"]) if doc.get("message") else None
    )


# --- status helpers --------------------------------------------------------------------------------------
def _recorded_model(name: str, source: str, uri: str, sha256: str) -> dict[str, Any]:
    """The status fields that say which model the job scores with (recorded once, then kept)."""
    return {
        "model": name,
        "model_source": source,
        "model_uri": uri,
        "model_digest": sha256,
        "model_digest_prefix": digest_prefix(sha256),
    }


def _with(status: BatchJobStatus, generation: int, **fields: Any) -> BatchJobStatus:
    return status.model_copy(update={"observed_generation": generation, **fields})


def _finish(
    status: BatchJobStatus, generation: int, phase: str, reason: str, message: str, now: datetime
) -> Decision:
    conditions = set_condition(status.conditions, "Complete", "False", reason, message, generation, now)
    if any(x.type == "Running" for x in conditions):
        conditions = set_condition(conditions, "Running", "False", reason, message, generation, now)
    desired = _with(
        status,
        generation,
        phase=phase,
        reason=reason,
        message=message[:4096],
        finished_at=now,
        conditions=conditions,
    )
    return Decision(status=desired.to_wire())
