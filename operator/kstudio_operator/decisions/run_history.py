"""The run history of an Experiment, decided from what the operator observes: the state of each run (and
why a failed one failed) from its training Job and pods, status.runs rebuilt from the Jobs, the next run
to start and the runs to prune.

The Jobs are the durable record of what was started: each carries the run number, generation, token and
schedule tick it was started for. status.runs is rebuilt from them on every reconciliation, so an operator
that was down or killed between "create Job" and "write status" converges without a duplicate run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from croniter import croniter

from kstudio_operator import constants as c
from kstudio_operator.builders.training import RunRequest
from kstudio_operator.resources.experiment import RunPhase, RunRecord, Trigger

_TRIGGERS: tuple[Trigger, ...] = ("create", "spec", "annotation", "schedule")
_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class ObservedJob:
    """What a training Job says about its run."""

    run: int
    name: str
    generation: int
    triggers: tuple[Trigger, ...]
    token: str | None
    scheduled_at: datetime | None
    output: str | None
    phase: RunPhase
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None = None
    message: str | None = None


def job_phase(job: dict[str, Any]) -> RunPhase:
    status = job.get("status") or {}
    conditions = {cond.get("type"): cond.get("status") for cond in status.get("conditions") or []}
    if conditions.get("Complete") == "True" or conditions.get("SuccessCriteriaMet") == "True":
        return "Succeeded"
    if conditions.get("Failed") == "True" or conditions.get("FailureTarget") == "True":
        return "Failed"
    if (status.get("active") or 0) > 0 or (status.get("ready") or 0) > 0:
        return "Running"
    return "Pending"


def _job_condition(job: dict[str, Any], *types: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cast(dict[str, Any], cond)
    return None


def _summary(message: str) -> tuple[str | None, str | None]:
    """(reason, message) from the trainer's JSON termination summary, if the text is one.

    `kstudio train` writes {"ok": false, "exitCode": 2, "reason": "InvalidData", "message": "..."}.
    """
    try:
        doc = json.loads(message)
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    reason = doc.get("reason")
    text = doc.get("message") or doc.get("error")
    if isinstance(text, dict):
        text = text.get("message")
    reason = reason if isinstance(reason, str) and _REASON.match(reason) else None
    return reason, (str(text) if text else None)


def _trainer_terminations(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Terminated states of the trainer container, newest pod first."""
    out = []
    ordered = sorted(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True
    )
    for pod in ordered:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != c.TRAINER_CONTAINER:
                continue
            state = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get(
                "terminated"
            )
            if state:
                out.append(state)
    return out


def explain_failure(
    job: dict[str, Any], pods: list[dict[str, Any]], memory_limit: str | None
) -> tuple[str, str]:
    """(reason, message) of a failed run, from the Job's conditions and its pods' terminated states.

    The trainer's own words come first: its termination message names the problem (for example the
    missing column). The exit code tells the class of failure when there are no words.
    """
    terminated = [t for t in _trainer_terminations(pods) if t.get("exitCode", 0) != 0]
    last = terminated[0] if terminated else None
    if last is not None:
        code = int(last.get("exitCode", 0))
        words = str(last.get("message") or "").strip()
        told_reason, told = _summary(words)
        said = told or (words.splitlines()[-1] if words else "")
        if last.get("reason") == "OOMKilled" or code == c.EXIT_KILLED:
            limit = f" at the memory limit {memory_limit}" if memory_limit else ""
            what = "out of memory (OOMKilled)" if last.get("reason") == "OOMKilled" else "killed (SIGKILL)"
            return (
                "OOMKilled",
                f"the trainer was {what}{limit}, exit code {code}; raise spec.resources.memory",
            )
        if last.get("reason") in ("StartError", "ContainerCannotRun", "CreateContainerError"):
            return (
                "ContainerStartError",
                f"{said or 'the trainer container could not start'} (exit code {code})",
            )
        if code == c.EXIT_INPUT_ERROR:
            return (
                told_reason or "InvalidSpecOrData",
                said or "the trainer rejected the experiment spec or the dataset (exit 2)",
            )
        if code == c.EXIT_INFRASTRUCTURE_ERROR:
            attempts = f"{len(terminated)} attempt" + ("s" if len(terminated) != 1 else "")
            return "InfrastructureError", f"{said or 'infrastructure error'} (exit 75, failed {attempts})"
        return "TrainerFailed", f"{said or 'the trainer failed'} (exit code {code})"
    cond = _job_condition(job, "Failed", "FailureTarget")
    if cond is not None:
        reason = str(cond.get("reason") or "JobFailed")
        return reason, str(cond.get("message") or "the training Job failed")
    return "JobFailed", "the training Job failed"


def _progress(pods: list[dict[str, Any]]) -> str | None:
    if not pods:
        return None
    pod = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    name = (pod.get("metadata") or {}).get("name", "?")
    phase = (pod.get("status") or {}).get("phase", "Pending")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return f"pod {name} {phase}: {waiting['reason']} {waiting.get('message') or ''}".strip()
    return f"pod {name} {phase}"


def observe_job(
    job: dict[str, Any], pods: list[dict[str, Any]], memory_limit: str | None = None
) -> ObservedJob:
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    phase = job_phase(job)
    triggers = tuple(t for t in str(annotations.get(c.ANNOTATION_TRIGGER, "")).split(",") if t in _TRIGGERS)
    reason = message = None
    if phase == "Failed":
        reason, message = explain_failure(job, pods, memory_limit)
    elif phase in ("Pending", "Running"):
        message = _progress(pods)
    return ObservedJob(
        run=int(labels[c.LABEL_RUN]),
        name=str(meta.get("name")),
        generation=int(annotations.get(c.ANNOTATION_GENERATION, "1")),
        triggers=triggers,
        token=annotations.get(c.ANNOTATION_TOKEN),
        scheduled_at=parse_time(annotations.get(c.ANNOTATION_SCHEDULED_AT)),
        output=annotations.get(c.ANNOTATION_OUTPUT),
        phase=phase,
        started_at=parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp")),
        finished_at=parse_time(status.get("completionTime"))
        or (
            parse_time((_job_condition(job, "Failed") or {}).get("lastTransitionTime"))
            if phase == "Failed"
            else None
        ),
        reason=reason,
        message=message,
    )


def is_final(record: RunRecord) -> bool:
    """Succeeded (its TrainedModel exists) or Failed: nothing more will happen to this run."""
    return record.phase == "Failed" or (record.phase == "Succeeded" and record.trained_model is not None)


def merge_runs(records: list[RunRecord], jobs: list[ObservedJob]) -> list[RunRecord]:
    """status.runs updated from the Jobs. A Job whose record is missing (operator died before writing
    status) gets its record back; a final record is never changed; a succeeded Job stays Running here
    until the operator has created its TrainedModel (`_finish_run` in decisions/experiment.py)."""
    by_run = {r.run: r for r in records}
    for job in jobs:
        record = by_run.get(job.run)
        if record is not None and is_final(record):
            continue
        phase: RunPhase = "Running" if job.phase == "Succeeded" else job.phase
        base = record.model_dump() if record is not None else {}
        base.update(
            run=job.run,
            generation=job.generation,
            triggers=list(job.triggers),
            token=job.token,
            scheduled_at=job.scheduled_at,
            job=job.name,
            phase=phase,
            artifact=job.output,
            started_at=job.started_at,
            finished_at=job.finished_at if job.phase == "Failed" else None,
            reason=job.reason if job.phase == "Failed" else None,
            message=job.message if job.phase != "Succeeded" else "training finished; recording the model",
        )
        by_run[job.run] = RunRecord.model_validate(base)
    job_runs = {j.run for j in jobs}
    for run, record in list(by_run.items()):
        if not is_final(record) and run not in job_runs:
            by_run[run] = record.model_copy(
                update={"phase": "Failed", "reason": "JobDeleted", "message": f"Job {record.job} was deleted"}
            )
    return [by_run[k] for k in sorted(by_run)]


def latest_tick(schedule: str, since: datetime, now: datetime) -> datetime | None:
    """The latest cron tick t with since < t <= now (missed ticks while down collapse into one run)."""
    itr = croniter(schedule, since)
    tick: datetime | None = None
    while True:
        candidate = cast(datetime, itr.get_next(datetime))
        if candidate > now:
            return tick
        tick = candidate


def next_tick(schedule: str, now: datetime) -> datetime:
    return cast(datetime, croniter(schedule, now).get_next(datetime))


def plan_run(
    *,
    generation: int,
    token: str | None,
    schedule: str | None,
    created_at: datetime,
    last_schedule_time: datetime | None,
    records: list[RunRecord],
    now: datetime,
) -> RunRequest | None:
    """The run to start now, or None. At most one run is active at a time; triggers that arrive during a
    run wait for it. One run covers every pending trigger: it trains the current generation."""
    if any(not is_final(r) for r in records):
        return None
    triggers: list[Trigger] = []
    if not records:
        triggers.append("create")
    elif max(r.generation for r in records) < generation:
        triggers.append("spec")
    if token and all(r.token != token for r in records):
        triggers.append("annotation")
    tick = None
    if schedule:
        since = max(
            [created_at]
            + ([last_schedule_time] if last_schedule_time else [])
            + [r.scheduled_at for r in records if r.scheduled_at is not None]
        )
        tick = latest_tick(schedule, since, now)
        if tick is not None:
            triggers.append("schedule")
    if not triggers:
        return None
    number = max((r.run for r in records), default=0) + 1
    return RunRequest(
        run=number, generation=generation, triggers=tuple(triggers), token=token, scheduled_at=tick
    )


MAX_RUNS = 100  # status.runs maxItems in the CRD


def runs_to_prune(
    records: list[RunRecord], history_limit: int, protected_models: set[str]
) -> list[RunRecord]:
    """Oldest final runs beyond the history limit, except runs whose TrainedModel must stay.

    Only if protected runs alone would overflow status.runs (MAX_RUNS) are the oldest of them dropped from
    the history too; the caller never deletes a protected model, whatever happens to its record."""
    finished = [r for r in records if is_final(r)]
    excess = len(records) - history_limit
    out = []
    for record in finished:
        if excess <= 0:
            break
        if record.trained_model is not None and record.trained_model in protected_models:
            continue
        out.append(record)
        excess -= 1
    overflow = len(records) - len(out) - MAX_RUNS
    for record in finished:
        if overflow <= 0:
            break
        if record not in out:
            out.append(record)
            overflow -= 1
    return sorted(out, key=lambda r: r.run)
