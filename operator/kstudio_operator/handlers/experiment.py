"""Experiment handlers: one level-based reconciliation per object, run by a kopf timer.

Each tick: observe the run Jobs → rebuild status.runs → record models of finished runs → prune history →
start at most one new run if a trigger is pending (create, new generation, `kstudio.io/run` token,
schedule tick) → write status. Everything is keyed by deterministic names, so a tick that dies halfway
is completed by the next one, by this or by a restarted operator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kopf
from croniter import croniter
from pydantic import ValidationError

from kstudio_core.snapshot import validate_snapshot
from kstudio_core.storage import ObjectNotFoundError, StorageError
from kstudio_operator import constants as c
from kstudio_operator.builders import names
from kstudio_operator.builders.runs import (
    ObservedJob,
    headline_metric,
    is_final,
    merge_runs,
    next_tick,
    observe_job,
    parse_time,
    plan_run,
    runs_to_prune,
)
from kstudio_operator.builders.trainedmodel import TrainerResult, models_in_use, trained_model_manifest
from kstudio_operator.builders.training import snapshot_configmap, training_job
from kstudio_operator.handlers.common import Context, context, describe_validation_error, write_status
from kstudio_operator.resources.common import Condition, set_condition
from kstudio_operator.resources.experiment import ExperimentSpec, ExperimentStatus, RunRecord


def parse_spec(raw: dict[str, Any]) -> tuple[ExperimentSpec | None, list[str]]:
    """The typed spec and [] — or None and every problem, each naming its field."""
    try:
        spec = ExperimentSpec.model_validate(dict(raw))
    except ValidationError as exc:
        return None, [describe_validation_error(exc)]
    problems: list[str] = []
    if spec.schedule is not None and not croniter.is_valid(spec.schedule):
        problems.append(f"spec.schedule: {spec.schedule!r} is not a valid cron expression")
    # The trainer's own checks (parameters of the estimator, metrics per task, sweep size, ...).
    problems += [f"spec.{p}" for p in validate_snapshot(spec.snapshot())]
    return (spec if not problems else None), problems


def validate_experiment(body: kopf.Body, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> None:
    """on create/update/resume: refuse a spec that can never work, once per change, with a Warning Event."""
    parsed, problems = parse_spec(dict(spec))
    if parsed is None:
        message = "invalid Experiment spec: " + "; ".join(problems)
        context(memo).kube.event(body, "Warning", "InvalidSpec", message)
        raise kopf.PermanentError(message)


def _pods_by_run(pods: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for pod in pods:
        run = ((pod.get("metadata") or {}).get("labels") or {}).get(c.LABEL_RUN)
        if run and run.isdigit():
            out.setdefault(int(run), []).append(pod)
    return out


def _fill_messages_from_logs(ctx: Context, namespace: str, pods: list[dict[str, Any]]) -> None:
    """When a failed trainer left no termination message, use the tail of its log (as kubelet's
    FallbackToLogsOnError would)."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (status.get("state") or {}).get("terminated")
            if term and term.get("exitCode", 0) != 0 and not term.get("message"):
                term["message"] = ctx.kube.pod_log_tail(namespace, pod["metadata"]["name"])


def _observe(ctx: Context, namespace: str, name: str, spec: ExperimentSpec) -> list[ObservedJob]:
    selector = f"{c.LABEL_EXPERIMENT}={name}"
    jobs = ctx.kube.list_jobs(namespace, selector)
    pods = _pods_by_run(ctx.kube.list_pods(namespace, selector)) if jobs else {}
    observed = []
    for job in jobs:
        run = int(job["metadata"]["labels"][c.LABEL_RUN])
        job_pods = pods.get(run, [])
        observed_job = observe_job(job, job_pods, spec.resources.memory)
        if observed_job.phase == "Failed" and observed_job.reason in (
            "InvalidSpecOrData",
            "TrainerFailed",
            "JobFailed",
        ):
            _fill_messages_from_logs(ctx, namespace, job_pods)
            observed_job = observe_job(job, job_pods, spec.resources.memory)
        observed.append(observed_job)
    return observed


def _finish_run(
    ctx: Context, body: kopf.Body, namespace: str, name: str, spec: ExperimentSpec, record: RunRecord
) -> RunRecord:
    """Read the trainer's result of a succeeded run and create its TrainedModel (idempotent)."""
    if ctx.store is None:
        raise kopf.TemporaryError(f"object storage is not configured: {ctx.store_error}", delay=30)
    artifact = record.artifact or names.artifact_uri(spec, namespace, name, record.run)
    try:
        raw = ctx.store.get_bytes(names.result_uri(artifact), max_bytes=4 * 1024 * 1024)
        result = TrainerResult.model_validate(json.loads(raw))
    except ObjectNotFoundError:
        return _failed(
            record, "ResultMissing", f"the trainer succeeded but wrote no {names.result_uri(artifact)}"
        )
    except StorageError as exc:
        raise kopf.TemporaryError(f"cannot read the result of run {record.run}: {exc}", delay=10) from exc
    except (ValueError, ValidationError) as exc:
        return _failed(
            record, "ResultUnreadable", f"{names.result_uri(artifact)} is not a trainer result: {exc}"
        )
    manifest = trained_model_manifest(namespace, name, record.run, record.generation, result)
    model, created = ctx.kube.ensure_custom(c.TRAINED_MODELS, manifest)
    model_name = model["metadata"]["name"]
    theirs = model.get("spec") or {}
    if not created and any(theirs.get(k) != manifest["spec"][k] for k in ("artifact", "source")):
        # Not ours from an earlier attempt (that would be identical): someone made a TrainedModel by hand
        # under the name this run needs. Never adopt it as this run's model.
        return _failed(
            record,
            "NameConflict",
            f"TrainedModel {model_name} already exists with another artifact; delete it, then run again",
        )
    metric = headline_metric(result.metrics, list(spec.evaluation.metrics))
    if created:
        ctx.kube.event(
            body,
            "Normal",
            reason="RunSucceeded",
            message=f"run {record.run} produced TrainedModel {model_name}"
            + (f" ({metric})" if metric else ""),
        )
    return record.model_copy(
        update={
            "phase": "Succeeded",
            "trained_model": model_name,
            "artifact": result.artifact.uri,
            "metrics": result.metrics,
            "reason": "TrainedModelCreated",
            "message": f"TrainedModel {model_name}" + (f" ({metric})" if metric else ""),
            "finished_at": record.finished_at or datetime.now(UTC),
        }
    )


def _failed(record: RunRecord, reason: str, message: str) -> RunRecord:
    return record.model_copy(
        update={"phase": "Failed", "reason": reason, "message": message, "finished_at": datetime.now(UTC)}
    )


def _start_run(
    ctx: Context,
    body: kopf.Body,
    namespace: str,
    name: str,
    spec: ExperimentSpec,
    records: list[RunRecord],
    now: datetime,
) -> tuple[list[RunRecord], datetime | None]:
    meta = body.get("metadata") or {}
    status = ExperimentStatus.model_validate(body.get("status") or {})
    request = plan_run(
        generation=int(meta.get("generation") or 1),
        token=(meta.get("annotations") or {}).get(c.ANNOTATION_RUN) or None,
        schedule=spec.schedule,
        created_at=parse_time(meta.get("creationTimestamp")) or now,
        last_schedule_time=status.last_schedule_time,
        records=records,
        now=now,
    )
    if request is None:
        return records, None
    configmap = snapshot_configmap(namespace, name, spec, request)
    job = training_job(namespace, name, spec, request, ctx.config)
    kopf.adopt([configmap, job], owner=body)
    ctx.kube.ensure_configmap(configmap)
    existing, created = ctx.kube.ensure_job(job)
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if not created and labels.get(c.LABEL_EXPERIMENT) != name:
        raise kopf.TemporaryError(
            f"a Job named {job['metadata']['name']} that is not this experiment's exists; delete it", delay=30
        )
    record = RunRecord(
        run=request.run,
        generation=request.generation,
        triggers=list(request.triggers),
        token=request.token,
        scheduled_at=request.scheduled_at,
        job=names.job_name(name, request.run),
        phase="Pending",
        artifact=job["metadata"]["annotations"][c.ANNOTATION_OUTPUT],
        started_at=now,
        message="Job created",
    )
    if created:
        ctx.kube.event(
            body,
            "Normal",
            reason="RunStarted",
            message=f"run {request.run} started for generation {request.generation} "
            f"(trigger: {', '.join(request.triggers)}); Job {record.job}",
        )
    return [*records, record], request.scheduled_at


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
        conds = set_condition(
            conds,
            "Ready",
            "False",
            "RunFailed",
            f"run {last.run} failed: {last.reason}: {last.message}",
            generation,
        )
    else:
        conds = set_condition(
            conds, "Ready", "False", "NoTrainedModel", "no run has produced a model yet", generation
        )
    return conds


def reconcile_experiment(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    name: str | None,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    assert name is not None and namespace is not None
    ctx = context(memo)
    now = datetime.now(UTC)
    generation = int(meta.get("generation") or 1)
    current = dict(status)
    previous = ExperimentStatus.model_validate(current)

    parsed, problems = parse_spec(dict(spec))
    if parsed is None:
        message = "; ".join(problems)
        conds = set_condition(previous.conditions, "SpecValid", "False", "InvalidSpec", message, generation)
        conds = set_condition(conds, "Ready", "False", "InvalidSpec", message, generation)
        desired = previous.model_copy(
            update={"phase": "Invalid", "conditions": conds, "observed_generation": generation}
        )
        write_status(patch, current, desired.to_wire())
        return

    jobs = {j.run: j for j in _observe(ctx, namespace, name, parsed)}
    records = merge_runs(previous.runs, list(jobs.values()))
    # Report runs that just failed.
    before = {r.run: r for r in previous.runs}
    for record in records:
        old = before.get(record.run)
        if record.phase == "Failed" and (old is None or old.phase != "Failed"):
            ctx.kube.event(
                body,
                "Warning",
                reason="RunFailed",
                message=f"run {record.run} failed: {record.reason}: {record.message}",
            )

    storage_wait: kopf.TemporaryError | None = None
    finished: list[RunRecord] = []
    for record in records:
        job = jobs.get(record.run)
        if not is_final(record) and job is not None and job.phase == "Succeeded":
            try:
                record = _finish_run(ctx, body, namespace, name, parsed, record)
            except kopf.TemporaryError as exc:
                storage_wait = exc
            if record.phase == "Failed":
                ctx.kube.event(
                    body,
                    "Warning",
                    "RunFailed",
                    f"run {record.run} failed: {record.reason}: {record.message}",
                )
        finished.append(record)
    records = finished

    latest = next((r for r in reversed(records) if r.phase == "Succeeded" and r.trained_model), None)
    protected = {latest.trained_model} if latest and latest.trained_model else set()
    if any(is_final(r) for r in records) and len(records) > parsed.history_limit:
        protected |= models_in_use(
            ctx.kube.list_custom(namespace, c.WEB_SERVICES), ctx.kube.list_custom(namespace, c.ENDPOINTS)
        )
    for record in runs_to_prune(records, parsed.history_limit, protected):
        ctx.kube.delete_job(namespace, record.job)
        ctx.kube.delete_configmap(namespace, names.snapshot_configmap_name(name, record.run))
        if record.trained_model and record.trained_model not in protected:
            ctx.kube.delete_custom(namespace, c.TRAINED_MODELS, record.trained_model)
        records = [r for r in records if r.run != record.run]

    last_schedule = previous.last_schedule_time
    if storage_wait is None:
        records, tick = _start_run(ctx, body, namespace, name, parsed, records, now)
        last_schedule = tick or last_schedule

    latest = next((r for r in reversed(records) if r.phase == "Succeeded" and r.trained_model), None)
    metric = headline_metric(latest.metrics, list(parsed.evaluation.metrics)) if latest else None
    active = [r for r in records if not is_final(r)]
    if active:
        phase = "Running" if any(r.phase == "Running" for r in active) else "Pending"
    elif records:
        phase = records[-1].phase
    else:
        phase = "Pending"
    desired = ExperimentStatus(
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
        next_schedule_time=next_tick(parsed.schedule, now) if parsed.schedule else None,
    )
    write_status(patch, current, desired.to_wire())
    if storage_wait is not None:
        raise storage_wait


def delete_experiment(
    name: str | None, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Jobs and snapshots go with the Experiment (owner references). Its TrainedModels are deleted too,
    except those a WebService or Endpoint uses: they stay, and say where they came from."""
    assert name is not None and namespace is not None
    ctx = context(memo)
    in_use = models_in_use(
        ctx.kube.list_custom(namespace, c.WEB_SERVICES), ctx.kube.list_custom(namespace, c.ENDPOINTS)
    )
    for model in ctx.kube.list_custom(namespace, c.TRAINED_MODELS, f"{c.LABEL_EXPERIMENT}={name}"):
        model_name = model["metadata"]["name"]
        if model_name in in_use:
            ctx.kube.event(
                body, "Normal", reason="ModelKept", message=f"TrainedModel {model_name} is in use and is kept"
            )
        else:
            ctx.kube.delete_custom(namespace, c.TRAINED_MODELS, model_name)
