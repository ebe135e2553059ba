"""Run bookkeeping: when a run starts, how status.runs is rebuilt from Jobs, why a run failed, pruning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kstudio_operator import constants as c
from kstudio_operator.decisions.run_history import (
    explain_failure,
    latest_tick,
    merge_runs,
    observe_job,
    plan_run,
    runs_to_prune,
)
from kstudio_operator.resources.experiment import RunRecord

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def record(run: int, generation: int = 1, phase: str = "Succeeded", **kw: Any) -> RunRecord:
    model = f"exp-{run}" if phase == "Succeeded" else None
    return RunRecord.model_validate(
        {"run": run, "generation": generation, "job": f"exp-run-{run}", "phase": phase, "trainedModel": model}
        | kw
    )


def plan(
    records: list[RunRecord],
    generation: int = 1,
    token: str | None = None,
    schedule: str | None = None,
    now: datetime = T0,
    last: datetime | None = None,
) -> Any:
    return plan_run(
        generation=generation,
        token=token,
        schedule=schedule,
        created_at=T0 - timedelta(hours=1),
        last_schedule_time=last,
        records=records,
        now=now,
    )


def test_first_reconcile_starts_run_1() -> None:
    request = plan([])
    assert (request.run, request.generation, request.triggers) == (1, 1, ("create",))


def test_nothing_new_means_no_run() -> None:
    assert plan([record(1)]) is None


def test_spec_changed_twice_while_down_starts_exactly_one_run_for_the_latest_generation() -> None:
    request = plan([record(1, generation=1)], generation=3)
    assert (request.run, request.generation, request.triggers) == (2, 3, ("spec",))
    # Once that run exists (even if status was not written: it is rebuilt from the Job) nothing more starts.
    assert plan([record(1), record(2, generation=3, phase="Running")], generation=3) is None
    assert plan([record(1), record(2, generation=3)], generation=3) is None


def test_run_annotation_starts_one_run_per_token() -> None:
    request = plan([record(1)], token="a")
    assert (request.run, request.triggers, request.token) == (2, ("annotation",), "a")
    assert plan([record(1), record(2, token="a")], token="a") is None
    assert plan([record(1), record(2, token="a")], token="b").token == "b"


def test_triggers_wait_for_the_active_run() -> None:
    assert plan([record(1, phase="Running", trainedModel=None)], generation=2, token="x") is None


def test_failed_run_is_not_retried_until_something_changes() -> None:
    failed = record(1, phase="Failed", reason="InvalidSpecOrData")
    assert plan([failed]) is None
    assert plan([failed], generation=2).triggers == ("spec",)


def test_schedule_runs_once_for_missed_ticks() -> None:
    request = plan([record(1)], schedule="*/10 * * * *", now=T0 + timedelta(minutes=35))
    assert request.triggers == ("schedule",)
    assert request.scheduled_at == T0 + timedelta(minutes=30)
    later = [record(1), record(2, scheduledAt=request.scheduled_at)]
    assert plan(later, schedule="*/10 * * * *", now=T0 + timedelta(minutes=39)) is None
    assert latest_tick("0 3 * * *", T0, T0 + timedelta(hours=1)) is None


def _job(
    run: int, *, conditions: list[dict[str, str]] | None = None, active: int = 0, **ann: str
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"exp-run-{run}",
            "creationTimestamp": "2026-11-25T12:00:00Z",
            "labels": {c.LABEL_RUN: str(run), c.LABEL_EXPERIMENT: "exp"},
            "annotations": {c.ANNOTATION_GENERATION: "2", c.ANNOTATION_TRIGGER: "spec", **ann},
        },
        "status": {"conditions": conditions or [], "active": active, "startTime": "2026-11-25T12:00:01Z"},
    }


def _pod(exit_code: int, message: str = "", reason: str = "Error") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "creationTimestamp": "2026-11-25T12:00:02Z"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}},
                }
            ],
        },
    }


FAILED = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "rule 0"}]


def test_status_is_rebuilt_from_jobs_after_operator_death() -> None:
    running = observe_job(_job(4, active=1, **{c.ANNOTATION_TOKEN: "t"}), [])
    records = merge_runs([], [running])
    assert [(r.run, r.generation, r.phase, r.token, r.job) for r in records] == [
        (4, 2, "Running", "t", "exp-run-4")
    ]


def test_succeeded_job_stays_running_until_its_model_is_recorded() -> None:
    done = observe_job(_job(1, conditions=[{"type": "Complete", "status": "True"}]), [])
    assert done.phase == "Succeeded"
    assert merge_runs([], [done])[0].phase == "Running"
    final = record(1)
    assert merge_runs([final], [done]) == [final]


def test_deleted_job_fails_its_unfinished_run() -> None:
    records = merge_runs([record(1, phase="Running", trainedModel=None)], [])
    assert (records[0].phase, records[0].reason) == ("Failed", "JobDeleted")


def test_bad_data_failure_reports_the_trainers_words() -> None:
    summary = json.dumps(
        {
            "ok": False,
            "exitCode": 2,
            "reason": "InvalidData",
            "message": "column 'flipper' not found (columns: sex)",
        }
    )
    reason, message = explain_failure(_job(1, conditions=FAILED), [_pod(2, summary)], "1Gi")
    assert (reason, message) == ("InvalidData", "column 'flipper' not found (columns: sex)")
    # Without a summary: the last line of the log, and the class of failure from the exit code.
    reason, message = explain_failure(_job(1, conditions=FAILED), [_pod(2, "x\nno column flipper")], "1Gi")
    assert (reason, message) == ("InvalidSpecOrData", "no column flipper")


def test_oom_failure_names_the_memory_limit() -> None:
    reason, message = explain_failure(_job(1, conditions=FAILED), [_pod(137, reason="OOMKilled")], "64Mi")
    assert reason == "OOMKilled"
    assert "64Mi" in message and "spec.resources.memory" in message


def test_infra_failure_counts_attempts() -> None:
    said = '{"reason": "InfrastructureError", "message": "storage unavailable"}'
    pods = [_pod(75, said), _pod(75, said)]
    reason, message = explain_failure(_job(1, conditions=FAILED), pods, None)
    assert reason == "InfrastructureError"
    assert message == "storage unavailable (exit 75, failed 2 attempts)"


def test_deadline_without_pods_uses_the_job_condition() -> None:
    cond = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]
    assert explain_failure(_job(1, conditions=cond), [], None) == ("DeadlineExceeded", "too long")


def test_prune_keeps_history_limit_and_models_in_use() -> None:
    records = [record(i) for i in range(1, 6)]
    pruned = runs_to_prune(records, 2, protected_models={"exp-1"})
    assert [r.run for r in pruned] == [2, 3, 4]
    assert runs_to_prune(records, 10, set()) == []
    active = [*records[:2], record(3, phase="Running", trainedModel=None)]
    assert [r.run for r in runs_to_prune(active, 1, set())] == [1, 2]


def test_prune_never_lets_the_history_overflow_the_schema() -> None:
    from kstudio_operator.decisions.run_history import MAX_RUNS

    records = [record(i) for i in range(1, MAX_RUNS + 6)]
    everything = {r.trained_model for r in records if r.trained_model}
    pruned = runs_to_prune(records, 10, protected_models=everything)
    assert [r.run for r in pruned] == [1, 2, 3, 4, 5]
