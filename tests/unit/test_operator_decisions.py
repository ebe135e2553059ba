"""The pure decisions: what an Experiment or a TrainedModel reconcile does, given what it observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from kstudio_core.runresult import RunResult
from kstudio_operator.decisions.experiment import (
    CreateModel,
    DeleteRun,
    ExperimentObserved,
    ResultFailure,
    StartRun,
    decide_experiment,
    runs_awaiting_results,
)
from kstudio_operator.decisions.run_history import ObservedJob
from kstudio_operator.decisions.trainedmodel import Verification, decide_trained_model, needs_verification
from kstudio_operator.resources.trainedmodel import TrainedModelStatus
from kstudio_operator.settings import OperatorConfig

REPO = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())[
    "spec"
]
CONFIG = OperatorConfig(pod_s3_endpoint="10.244.0.1:9000")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OWNER = {"apiVersion": "kstudio.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "p", "uid": "u-1"}}
ARTIFACT = "s3://models/ns/p/p-1.ilearner"
SHA = "ab" * 32


def observed(**kw: Any) -> ExperimentObserved:
    base: dict[str, Any] = {
        "name": "p",
        "namespace": "ns",
        "generation": 1,
        "created_at": T0,
        "token": None,
        "jobs": [],
    }
    return ExperimentObserved(**(base | kw))


def job(run: int = 1, phase: str = "Running", **kw: Any) -> ObservedJob:
    base: dict[str, Any] = {
        "run": run,
        "name": f"p-run-{run}",
        "generation": 1,
        "triggers": ("create",),
        "token": None,
        "scheduled_at": None,
        "output": ARTIFACT,
        "phase": phase,
        "started_at": T0,
        "finished_at": None,
    }
    return ObservedJob(**(base | kw))


def result() -> RunResult:
    return RunResult.model_validate(
        {"artifact": {"uri": ARTIFACT, "sha256": SHA}, "metrics": {"accuracy": 0.98}}
    )


def running_status() -> dict[str, Any]:
    return decide_experiment(SPEC, {}, observed(), T0, CONFIG, OWNER).status


def test_a_new_experiment_starts_run_1_owned_by_the_experiment() -> None:
    decision = decide_experiment(SPEC, {}, observed(), T0, CONFIG, OWNER)
    [action] = decision.actions
    assert isinstance(action, StartRun)
    assert action.job["metadata"]["name"] == "p-run-1"
    assert action.job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert decision.status["runs"][0]["phase"] == "Pending"
    assert [e.reason for e in decision.events] == ["RunStarted"]


def test_a_running_job_starts_nothing_and_changes_nothing_on_the_next_reconcile() -> None:
    status = running_status()
    jobs = [job(phase="Running")]
    first = decide_experiment(SPEC, status, observed(jobs=jobs), T0, CONFIG, OWNER)
    assert first.actions == [] and first.events == []
    again = decide_experiment(
        SPEC, first.status, observed(jobs=jobs), T0 + timedelta(seconds=5), CONFIG, OWNER
    )
    assert again.status == first.status  # level-based and idempotent: no write for an unchanged object


def test_a_succeeded_run_needs_its_result_then_creates_its_trained_model() -> None:
    status = running_status()
    jobs = [job(phase="Succeeded")]
    assert runs_awaiting_results(status, jobs) == [(1, ARTIFACT + ".result.json")]
    decision = decide_experiment(SPEC, status, observed(jobs=jobs, results={1: result()}), T0, CONFIG, OWNER)
    [action] = decision.actions
    assert isinstance(action, CreateModel) and action.manifest["metadata"]["name"] == "p-1"
    assert decision.status["latestTrainedModel"] == "p-1"
    assert [e.reason for e in decision.events] == ["RunSucceeded"]
    assert runs_awaiting_results(decision.status, jobs) == []


def test_an_existing_identical_model_is_not_created_again() -> None:
    status = running_status()
    mine = {
        "artifact": {"uri": ARTIFACT, "sha256": SHA},
        "source": {"experiment": "p", "run": 1, "generation": 1},
    }
    obs = observed(jobs=[job(phase="Succeeded")], results={1: result()}, models={"p-1": mine})
    decision = decide_experiment(SPEC, status, obs, T0, CONFIG, OWNER)
    assert decision.actions == [] and decision.status["runs"][0]["phase"] == "Succeeded"


def test_a_foreign_model_under_the_runs_name_fails_the_run_instead_of_being_adopted() -> None:
    status = running_status()
    foreign = {"artifact": {"uri": "s3://x/y.ilearner", "sha256": "cd" * 32}}
    obs = observed(jobs=[job(phase="Succeeded")], results={1: result()}, models={"p-1": foreign})
    decision = decide_experiment(SPEC, status, obs, T0, CONFIG, OWNER)
    assert decision.status["runs"][0]["reason"] == "NameConflict"
    assert all(not isinstance(a, CreateModel) for a in decision.actions)


def test_a_missing_result_fails_the_run_with_the_reason() -> None:
    missing = ResultFailure("ResultMissing", "the trainer succeeded but wrote no x")
    obs = observed(jobs=[job(phase="Succeeded")], results={1: missing})
    decision = decide_experiment(SPEC, running_status(), obs, T0, CONFIG, OWNER)
    assert decision.status["runs"][0]["phase"] == "Failed"
    ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], "ResultMissing" in ready["message"]) == ("RunFailed", True)
    assert [e.reason for e in decision.events] == ["RunFailed"]


def test_storage_trouble_starts_nothing_new_and_asks_to_come_back() -> None:
    obs = observed(generation=2, jobs=[job(phase="Failed", reason="JobFailed")], storage_error="down")
    decision = decide_experiment(SPEC, running_status(), obs, T0, CONFIG, OWNER)
    assert not any(isinstance(a, StartRun) for a in decision.actions)
    assert decision.requeue is not None


def test_an_invalid_spec_is_reported_once() -> None:
    bad = SPEC | {"algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 0}}}
    first = decide_experiment(bad, {}, observed(), T0, CONFIG, OWNER)
    assert first.status["phase"] == "Invalid" and first.actions == []
    assert "n_estimators" in first.events[0].message
    again = decide_experiment(bad, first.status, observed(), T0, CONFIG, OWNER)
    assert again.events == [] and again.status == first.status


def test_pruning_keeps_the_models_in_use() -> None:
    spec = SPEC | {"historyLimit": 1}
    runs = [
        {"run": n, "generation": 1, "job": f"p-run-{n}", "phase": "Succeeded", "trainedModel": f"p-{n}"}
        for n in (1, 2, 3)
    ]
    status = {"runs": runs}
    jobs = [job(run=n, phase="Succeeded") for n in (1, 2, 3)]
    decision = decide_experiment(spec, status, observed(jobs=jobs, models_in_use={"p-1"}), T0, CONFIG, OWNER)
    deletes = {a.job: a.model for a in decision.actions if isinstance(a, DeleteRun)}
    # run 1's model is served: the run stays in the history; run 3's is the latest
    assert deletes == {"p-run-2": "p-2"}


def test_a_schedule_asks_to_be_woken_at_its_next_tick() -> None:
    spec = SPEC | {"schedule": "0 * * * *"}
    decision = decide_experiment(spec, {}, observed(), T0 + timedelta(minutes=59), CONFIG, OWNER)
    assert decision.requeue is not None and 60 <= decision.requeue <= 62


def test_trained_model_is_verified_once_per_generation_and_again_only_after_retryable_failures() -> None:
    assert needs_verification({}, 1)
    ready = decide_trained_model(
        {"artifact": {"uri": ARTIFACT, "sha256": SHA}},
        {},
        1,
        Verification("Ready", "Verified", "ok", {"task": "classification"}),
        [],
    )
    assert ready.status["phase"] == "Ready" and [e.reason for e in ready.events] == ["Verified"]
    assert not needs_verification(ready.status, 1)
    assert needs_verification(ready.status, 2)
    down = decide_trained_model(
        {"artifact": {"uri": ARTIFACT, "sha256": SHA}},
        {},
        1,
        Verification("Pending", "StorageUnavailable", "x"),
        [],
    )
    assert needs_verification(down.status, 1)


def test_trained_model_usage_comes_from_its_users_without_reverifying() -> None:
    spec = {"artifact": {"uri": ARTIFACT, "sha256": SHA}}
    ready = decide_trained_model(spec, {}, 1, Verification("Ready", "Verified", "ok", {}), [])
    used = decide_trained_model(spec, ready.status, 1, None, ["Endpoint/ep2"])
    assert used.status["usedBy"] == ["Endpoint/ep2"] and used.events == []
    in_use = next(c for c in used.status["conditions"] if c["type"] == "InUse")
    assert (in_use["status"], in_use["reason"]) == ("True", "Referenced")


def test_a_status_patch_drops_nested_keys_explicitly_and_is_empty_when_nothing_changed() -> None:
    from kstudio_operator.builders.patches import merge_patch

    finished = {"rollout": {"from": "a", "to": "b", "finishedAt": "t1", "seconds": 3.0}, "phase": "Ready"}
    started = {"rollout": {"from": "b", "to": "a", "startedAt": "t2"}, "phase": "RollingOut"}
    patch = merge_patch(finished, started)
    assert patch == {
        "rollout": {"from": "b", "to": "a", "startedAt": "t2", "finishedAt": None, "seconds": None},
        "phase": "RollingOut",
    }
    assert merge_patch(started, started) == {}
    assert merge_patch({"history": [1, 2]}, {"history": [1]}) == {"history": [1]}
    assert merge_patch({"model": "m"}, {}) == {"model": None}


def test_a_full_patch_sends_every_desired_value_and_nulls_only_what_was_dropped() -> None:
    """For children whose observed copy may lag our last write: nothing is left out as 'unchanged'."""
    from kstudio_operator.builders.patches import merge_patch

    current = {"spec": {"nodeSelector": {"type": "kwok", "zone": "a"}, "replicas": 2}, "note": "x"}
    desired = {"spec": {"nodeSelector": {"type": "kwok"}, "replicas": 2, "tolerations": []}}
    assert merge_patch(current, desired, full=True) == {
        "spec": {"nodeSelector": {"type": "kwok", "zone": None}, "replicas": 2, "tolerations": []},
        "note": None,
    }
    assert merge_patch(desired, desired, full=True) == desired
    assert merge_patch(current, desired) == {
        "spec": {"nodeSelector": {"zone": None}, "tolerations": []},
        "note": None,
    }


def test_a_model_used_by_a_thousand_endpoints_keeps_a_bounded_status_that_counts_them() -> None:
    spec = {"artifact": {"uri": ARTIFACT, "sha256": SHA}}
    ready = decide_trained_model(spec, {}, 1, Verification("Ready", "Verified", "ok", {}), [])
    users = [f"Endpoint/ep-{i:04d}" for i in range(1000)]
    used = decide_trained_model(spec, ready.status, 1, None, users)
    TrainedModelStatus.model_validate(used.status)  # what the CRD schema enforces too (maxItems, maxLength)
    assert used.status["usedBy"] == users[:256] and used.status["usedByCount"] == 1000
    in_use = next(c for c in used.status["conditions"] if c["type"] == "InUse")
    assert in_use["message"].startswith("used by Endpoint/ep-0000, Endpoint/ep-0001")
    assert in_use["message"].endswith("and 990 more") and len(in_use["message"]) < 1024
