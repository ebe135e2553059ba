"""The Experiment decision: run history from the Jobs, models of finished runs, pruning, the next run.

Every input is observed state (the Jobs and their pods, run results read from storage, the TrainedModels
and who uses them); the output is what to create or delete, the Events and the new status. Everything is
keyed by deterministic names, so a reconcile that dies halfway is completed by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import ValidationError

from kstudio_core.runresult import RunResult, result_uri
from kstudio_core.snapshot import validate_snapshot
from kstudio_operator import constants as c
from kstudio_operator.builders import names
from kstudio_operator.builders.ownership import own
from kstudio_operator.builders.trainedmodel import headline_metric, trained_model_manifest
from kstudio_operator.builders.training import snapshot_configmap, training_job
from kstudio_operator.decisions import Decision, Event, describe_validation_error
from kstudio_operator.decisions.run_history import (
    ObservedJob,
    is_final,
    merge_runs,
    next_tick,
    plan_run,
    runs_to_prune,
)
from kstudio_operator.resources.common import Condition, set_condition
from kstudio_operator.resources.experiment import ExperimentSpec, ExperimentStatus, RunRecord
from kstudio_operator.settings import OperatorConfig


@dataclass(frozen=True)
class StartRun:
    configmap: dict[str, Any]
    job: dict[str, Any]


@dataclass(frozen=True)
class CreateModel:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class DeleteRun:
    job: str
    configmap: str
    model: str | None  # the run's TrainedModel, when it is not protected


@dataclass(frozen=True)
class ResultFailure:
    """A succeeded run whose result cannot be used: it fails with this reason (not retried)."""

    reason: str
    message: str


@dataclass
class ExperimentObserved:
    name: str
    namespace: str
    generation: int
    created_at: datetime
    token: str | None
    jobs: list[ObservedJob]
    # Result documents of succeeded runs that were read this time (see runs_awaiting_results).
    results: dict[int, RunResult | ResultFailure] = field(default_factory=dict)
    # Set when a result could not be read for infrastructure reasons: nothing new starts meanwhile.
    storage_error: str | None = None
    # TrainedModels of the namespace by name → their spec (from the index), and the names in use.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_in_use: set[str] = field(default_factory=set)


def parse_spec(raw: dict[str, Any]) -> tuple[ExperimentSpec | None, list[str]]:
    """The typed spec and [] — or None and every problem, each naming its field."""
    try:
        spec = ExperimentSpec.model_validate(dict(raw))
    except ValidationError as exc:
        return None, [describe_validation_error(exc)]
    problems: list[str] = []
    if spec.schedule is not None and not croniter.is_valid(spec.schedule):
        problems.append(f"spec.schedule: {spec.schedule!r} is not a valid cron expression")
    problems += [f"spec.{p}" for p in validate_snapshot(spec.snapshot())]
    return (spec if not problems else None), problems


def runs_awaiting_results(status: dict[str, Any], jobs: list[ObservedJob]) -> list[tuple[int, str]]:
    """(run, result URI) of every succeeded Job whose run is not final yet: their results must be read."""
    previous = ExperimentStatus.model_validate(status)
    records = {r.run: r for r in merge_runs(previous.runs, jobs)}
    out = []
    for job in jobs:
        record = records.get(job.run)
        if job.phase == "Succeeded" and record is not None and not is_final(record) and record.artifact:
            out.append((job.run, result_uri(record.artifact)))
    return out


def decide_experiment(
    spec_raw: dict[str, Any],
    status: dict[str, Any],
    observed: ExperimentObserved,
    now: datetime,
    config: OperatorConfig,
    owner: dict[str, Any],
) -> Decision:
    """The whole Experiment reconcile as a value. `owner` is the Experiment (children's owner reference)."""
    generation = observed.generation
    previous = ExperimentStatus.model_validate(status)
    spec, problems = parse_spec(spec_raw)
    if spec is None:
        return _invalid(previous, problems, generation)

    decision = Decision(status={})
    records = merge_runs(previous.runs, observed.jobs)
    before = {r.run: r for r in previous.runs}
    for record in records:
        old = before.get(record.run)
        if record.phase == "Failed" and (old is None or old.phase != "Failed"):
            decision.events.append(Event("Warning", "RunFailed", _failed_message(record)))

    jobs = {j.run: j for j in observed.jobs}
    finished: list[RunRecord] = []
    for record in records:
        job = jobs.get(record.run)
        result = observed.results.get(record.run)
        if not is_final(record) and job is not None and job.phase == "Succeeded" and result is not None:
            record = _finish_run(decision, observed, spec, record, result, now)
        finished.append(record)
    records = finished

    latest = _latest(records)
    protected = (
        {latest.trained_model} if latest and latest.trained_model else set()
    ) | observed.models_in_use
    for record in runs_to_prune(records, spec.history_limit, protected):
        model = record.trained_model if record.trained_model not in protected else None
        decision.actions.append(
            DeleteRun(record.job, names.snapshot_configmap_name(observed.name, record.run), model)
        )
        records = [r for r in records if r.run != record.run]

    last_schedule = previous.last_schedule_time
    if observed.storage_error is None:
        request = plan_run(
            generation=generation,
            token=observed.token,
            schedule=spec.schedule,
            created_at=observed.created_at,
            last_schedule_time=previous.last_schedule_time,
            records=records,
            now=now,
        )
        if request is not None:
            configmap = snapshot_configmap(observed.namespace, observed.name, spec, request)
            job_manifest = training_job(observed.namespace, observed.name, spec, request, config)
            for child in (configmap, job_manifest):
                own(child, owner)
            decision.actions.append(StartRun(configmap, job_manifest))
            record = RunRecord(
                run=request.run,
                generation=request.generation,
                triggers=list(request.triggers),
                token=request.token,
                scheduled_at=request.scheduled_at,
                job=names.job_name(observed.name, request.run),
                phase="Pending",
                artifact=job_manifest["metadata"]["annotations"][c.ANNOTATION_OUTPUT],
                started_at=now,
                message="Job created",
            )
            records = [*records, record]
            last_schedule = request.scheduled_at or last_schedule
            decision.events.append(
                Event(
                    "Normal",
                    "RunStarted",
                    f"run {request.run} started for generation {request.generation} "
                    f"(trigger: {', '.join(request.triggers)}); Job {record.job}",
                )
            )
    else:
        decision.requeue = 10.0

    latest = _latest(records)
    metric = headline_metric(latest.metrics, list(spec.evaluation.metrics)) if latest else None
    active = [r for r in records if not is_final(r)]
    if active:
        phase = "Running" if any(r.phase == "Running" for r in active) else "Pending"
    elif records:
        phase = records[-1].phase
    else:
        phase = "Pending"
    next_schedule = next_tick(spec.schedule, now) if spec.schedule else None
    if next_schedule is not None:
        wait = max(0.5, (next_schedule - now).total_seconds() + 0.5)
        decision.requeue = wait if decision.requeue is None else min(decision.requeue, wait)
    decision.status = ExperimentStatus(
        observed_generation=generation,
        phase=phase,
        conditions=_conditions(
            previous.conditions, records, latest.trained_model if latest else None, metric, generation
        ),
        runs=records,
        latest_run=records[-1].run if records else None,
        latest_trained_model=latest.trained_model if latest else None,
        latest_metric=metric,
        last_schedule_time=last_schedule,
        next_schedule_time=next_schedule,
    ).to_wire()
    return decision


def _latest(records: list[RunRecord]) -> RunRecord | None:
    return next((r for r in reversed(records) if r.phase == "Succeeded" and r.trained_model), None)


def _failed_message(record: RunRecord) -> str:
    return f"run {record.run} failed: {record.reason}: {record.message}"


def _finish_run(
    decision: Decision,
    observed: ExperimentObserved,
    spec: ExperimentSpec,
    record: RunRecord,
    result: RunResult | ResultFailure,
    now: datetime,
) -> RunRecord:
    """A succeeded run with its result read: its TrainedModel is created (or found) and the run is final."""
    if isinstance(result, ResultFailure):
        failed = _failed(record, result.reason, result.message, now)
        decision.events.append(Event("Warning", "RunFailed", _failed_message(failed)))
        return failed
    manifest = trained_model_manifest(
        observed.namespace, observed.name, record.run, record.generation, result
    )
    model_name = manifest["metadata"]["name"]
    existing = observed.models.get(model_name)
    metric = headline_metric(result.metrics, list(spec.evaluation.metrics))
    if existing is None:
        decision.actions.append(CreateModel(manifest))
        decision.events.append(
            Event(
                "Normal",
                "RunSucceeded",
                f"run {record.run} produced TrainedModel {model_name}" + (f" ({metric})" if metric else ""),
            )
        )
    elif any(existing.get(k) != manifest["spec"][k] for k in ("artifact", "source")):
        # Not ours from an earlier attempt (that would be identical): someone made a TrainedModel by hand
        # under the name this run needs. Never adopt it as this run's model.
        failed = _failed(
            record,
            "NameConflict",
            f"TrainedModel {model_name} already exists with another artifact; delete it, then run again",
            now,
        )
        decision.events.append(Event("Warning", "RunFailed", _failed_message(failed)))
        return failed
    return record.model_copy(
        update={
            "phase": "Succeeded",
            "trained_model": model_name,
            "artifact": result.artifact.uri,
            "metrics": result.metrics,
            "reason": "TrainedModelCreated",
            "message": f"TrainedModel {model_name}" + (f" ({metric})" if metric else ""),
            "finished_at": record.finished_at or now,
        }
    )


def _failed(record: RunRecord, reason: str, message: str, now: datetime) -> RunRecord:
    return record.model_copy(
        update={"phase": "Failed", "reason": reason, "message": message, "finished_at": now}
    )


def _invalid(previous: ExperimentStatus, problems: list[str], generation: int) -> Decision:
    message = "; ".join(problems)
    conds = set_condition(previous.conditions, "SpecValid", "False", "InvalidSpec", message, generation)
    conds = set_condition(conds, "Ready", "False", "InvalidSpec", message, generation)
    desired = previous.model_copy(
        update={"phase": "Invalid", "conditions": conds, "observed_generation": generation}
    )
    decision = Decision(status=desired.to_wire())
    old = next((cond for cond in previous.conditions if cond.type == "SpecValid"), None)
    if old is None or old.status != "False" or old.message != message:
        decision.events.append(Event("Warning", "InvalidSpec", f"invalid Experiment spec: {message}"))
    return decision


def _conditions(
    existing: list[Condition],
    records: list[RunRecord],
    latest_model: str | None,
    metric: str | None,
    generation: int,
) -> list[Condition]:
    active = [r for r in records if not is_final(r)]
    conds = set_condition(existing, "SpecValid", "True", "SpecAccepted", "the spec is valid", generation)
    if active:
        run = active[-1]
        conds = set_condition(
            conds,
            "Running",
            "True",
            "RunInProgress",
            f"run {run.run} (Job {run.job}): {run.message or run.phase}",
            generation,
        )
    else:
        conds = set_condition(conds, "Running", "False", "Idle", "no run in progress", generation)
    last = records[-1] if records else None
    if latest_model:
        msg = f"latest TrainedModel {latest_model}" + (f" ({metric})" if metric else "")
        if last is not None and last.phase == "Failed":
            msg += f"; the latest run {last.run} failed: {last.reason}: {last.message}"
        conds = set_condition(conds, "Ready", "True", "TrainedModelAvailable", msg, generation)
    elif last is not None and last.phase == "Failed":
        conds = set_condition(conds, "Ready", "False", "RunFailed", _failed_message(last), generation)
    else:
        conds = set_condition(
            conds, "Ready", "False", "NoTrainedModel", "no run has produced a model yet", generation
        )
    return conds
