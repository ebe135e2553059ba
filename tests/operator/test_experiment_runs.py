"""Experiments on the local cluster: runs as Jobs on the node, TrainedModels verified, run history,
failures that say why and do not retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from operator_support import (
    QUICK_RESYNC,
    REPO,
    Kubectl,
    OperatorProcess,
    condition,
    experiment_manifest,
    reconciled_again,
    wait_until,
)

pytestmark = pytest.mark.cluster


def runs(kube: Kubectl, name: str = "penguins") -> list[dict[str, Any]]:
    return list(kube.status("experiment", name).get("runs") or [])


def run_done(kube: Kubectl, number: int, name: str = "penguins") -> dict[str, Any] | None:
    for run in runs(kube, name):
        if (
            run["run"] == number
            and run["phase"] in ("Succeeded", "Failed")
            and (run["phase"] == "Failed" or run.get("trainedModel"))
        ):
            return run
    return None


def job_failed_by_policy(kube: Kubectl, name: str) -> dict[str, Any] | None:
    """The Job's Failed condition if its podFailurePolicy ended it (a terminal Job starts no more pods)."""
    job = kube.get("job", name) or {}
    failed = condition(job.get("status") or {}, "Failed")
    return (
        failed if failed and failed["status"] == "True" and failed["reason"] == "PodFailurePolicy" else None
    )


@QUICK_RESYNC
def test_penguins_trains_a_ready_model_then_reruns_on_spec_change_and_annotation(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, local_cluster: Any, tmp_path: Path
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    wait_until("TrainedModel penguins-1", lambda: kube.get("trainedmodel", "penguins-1"), timeout=240)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=120s")
    kube.run("wait", "--for=condition=Ready", "experiment/penguins", "--timeout=60s")

    model = kube.get("trainedmodel", "penguins-1")
    assert model is not None
    status = model["status"]
    assert status["phase"] == "Ready"
    assert status["metrics"]["accuracy"] > 0.8
    assert sorted(status["classes"]) == ["Adelie", "Chinstrap", "Gentoo"]
    assert [c["name"] for c in status["inputSchema"]][:2] == ["bill_length_mm", "bill_depth_mm"]
    # The recorded digest is the digest of the object in MinIO.
    digest = model["spec"]["artifact"]["sha256"]
    assert example_data.download(model["spec"]["artifact"]["uri"], tmp_path / "penguins-1.ilearner") == digest
    assert model["spec"]["source"] == {"experiment": "penguins", "run": 1, "generation": 1}

    # The training pod ran on our node, as the restricted non-root user.
    pods = kube.items("pods", "kstudio.io/experiment=penguins,kstudio.io/run=1")
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == "kst-node" and pods[0]["status"]["phase"] == "Succeeded"

    table = local_cluster.kubectl("-n", kube.namespace, "get", "kstudio").stdout
    assert "experiment.kstudio.io/penguins" in table and "trainedmodel.kstudio.io/penguins-1" in table
    header = table.splitlines()[0].split()
    assert header[:5] == ["NAME", "PHASE", "RUN", "MODEL", "METRIC"], table
    assert "accuracy=" in table and "Ready" in table and "Succeeded" in table

    # A spec change is a new generation: run 2.
    patch = {"spec": {"algorithm": {"params": {"n_estimators": 10, "random_state": 0}}}}
    kube.run("patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(patch))
    second = wait_until("run 2", lambda: run_done(kube, 2), timeout=240)
    assert (second["phase"], second["generation"], second["triggers"]) == ("Succeeded", 2, ["spec"])

    # The "Run" button: run 3 on the same generation.
    kube.run("annotate", "experiment", "penguins", "kstudio.io/run=click-1")
    third = wait_until("run 3", lambda: run_done(kube, 3), timeout=240)
    assert (third["phase"], third["generation"], third["triggers"], third["token"]) == (
        "Succeeded",
        2,
        ["annotation"],
        "click-1",
    )

    history = [(r["run"], r["generation"], r["trainedModel"]) for r in runs(kube)]
    assert history == [(1, 1, "penguins-1"), (2, 2, "penguins-2"), (3, 2, "penguins-3")]
    assert kube.status("experiment", "penguins")["latestTrainedModel"] == "penguins-3"
    for name in ("penguins-2", "penguins-3"):
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    reasons = [e["reason"] for e in kube.events("penguins")]
    assert reasons.count("RunStarted") == 3 and reasons.count("RunSucceeded") == 3, reasons

    # The same token again starts nothing: a change of the object (another annotation) that keeps the
    # token is reconciled, and no fourth run follows.
    again = reconciled_again(operator, "Experiment", 2)
    kube.run("annotate", "--overwrite", "experiment", "penguins", "kstudio.io/run=click-1", "touched=again")
    wait_until("the Experiment reconciled with the same token", again, timeout=30)
    assert len(runs(kube)) == 3
    assert len(kube.items("jobs", "kstudio.io/experiment=penguins")) == 3


@QUICK_RESYNC
def test_bad_dataset_column_fails_the_run_naming_the_column_without_retries(
    kube: Kubectl, operator: OperatorProcess
) -> None:
    features = ["bill_length_mm", "flipper_len", "island"]
    assert kube.apply(experiment_manifest("badcol", features=features, backoffLimit=3)).returncode == 0
    run = wait_until("run 1 of badcol to fail", lambda: run_done(kube, 1, "badcol"), timeout=240)
    assert run["phase"] == "Failed"
    assert run["reason"] == "InvalidData", run
    assert "flipper_len" in run["message"], run
    ready = condition(kube.status("experiment", "badcol"), "Ready")
    assert ready is not None and ready["status"] == "False" and "flipper_len" in ready["message"]
    assert any(e["reason"] == "RunFailed" and "flipper_len" in e["message"] for e in kube.events("badcol"))
    # Exit 2 fails the Job at once (podFailurePolicy, not after backoffLimit retries 10 s apart): the Job
    # is over with its one pod, and the Experiment, reconciled again, starts no new run.
    wait_until("the Job ended by its policy", lambda: job_failed_by_policy(kube, "badcol-run-1"), 30)
    pods = kube.items("pods", "kstudio.io/experiment=badcol")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    wait_until("badcol reconciled twice more", reconciled_again(operator, "Experiment", 2), timeout=30)
    assert [r["run"] for r in runs(kube, "badcol")] == [1]


def test_a_run_killed_for_memory_fails_with_the_reason(kube: Kubectl, operator: OperatorProcess) -> None:
    manifest = experiment_manifest("tiny", resources={"cpu": "500m", "memory": "48Mi"}, backoffLimit=3)
    assert kube.apply(manifest).returncode == 0
    run = wait_until("run 1 of tiny to fail", lambda: run_done(kube, 1, "tiny"), timeout=240)
    assert run["phase"] == "Failed"
    assert run["reason"] == "OOMKilled", run
    assert "48Mi" in run["message"] and "spec.resources.memory" in run["message"], run
    wait_until("the Job ended by its policy", lambda: job_failed_by_policy(kube, "tiny-run-1"), 30)
    assert len(kube.items("pods", "kstudio.io/experiment=tiny")) == 1


def test_an_invalid_spec_is_reported_and_starts_nothing(kube: Kubectl, operator: OperatorProcess) -> None:
    # Passes the CRD schema (params are free-form) but the trainer's checks refuse it before any Job.
    manifest = experiment_manifest(
        "typo", algorithm={"name": "RandomForestClassifier", "params": {"n_estimatorz": 5}}
    )
    assert kube.apply(manifest).returncode == 0
    status = wait_until(
        "typo to be Invalid", lambda: (s := kube.status("experiment", "typo")).get("phase") == "Invalid" and s
    )
    valid = condition(status, "SpecValid")
    assert valid is not None and valid["status"] == "False" and "n_estimatorz" in valid["message"]
    assert kube.items("jobs", "kstudio.io/experiment=typo") == []


def test_history_is_bounded_but_models_in_use_are_kept(kube: Kubectl, operator: OperatorProcess) -> None:
    assert kube.apply(experiment_manifest(historyLimit=2)).returncode == 0
    wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
    ws = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "svc"},
        "spec": {"model": "penguins-1"},
    }
    assert kube.apply(json.dumps(ws)).returncode == 0
    for token, number in (("a", 2), ("b", 3)):
        kube.run("annotate", "--overwrite", "experiment", "penguins", f"kstudio.io/run={token}")
        wait_until(f"run {number}", lambda n=number: run_done(kube, n), timeout=240)
    # Run 2 is beyond the limit of 2 and its model is unused: pruned with its Job and TrainedModel.
    # Run 1 is older but penguins-1 is served by svc: kept.
    wait_until("run 2 to be pruned", lambda: [r["run"] for r in runs(kube)] == [1, 3], timeout=30)
    wait_until("penguins-2 to be deleted", lambda: kube.get("trainedmodel", "penguins-2") is None, timeout=30)
    assert sorted(m["metadata"]["name"] for m in kube.items("trainedmodels")) == ["penguins-1", "penguins-3"]
    jobs = sorted(j["metadata"]["name"] for j in kube.items("jobs", "kstudio.io/experiment=penguins"))
    assert jobs == ["penguins-run-1", "penguins-run-3"]


def test_cron_schedule_starts_a_run_at_the_next_tick(kube: Kubectl, operator: OperatorProcess) -> None:
    assert kube.apply(experiment_manifest(schedule="* * * * *")).returncode == 0
    first = wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
    # A minute boundary between the create and the first reconcile is covered by the same run.
    assert first["triggers"] in (["create"], ["create", "schedule"])
    status = kube.status("experiment", "penguins")
    assert status["nextScheduleTime"].endswith(":00Z")
    # The next minute boundary starts run 2 (at most ~60 s away).
    second = wait_until("the scheduled run", lambda: run_done(kube, 2), timeout=150)
    assert second["triggers"] == ["schedule"] and second["phase"] == "Succeeded"
    assert second["scheduledAt"] == kube.status("experiment", "penguins")["lastScheduleTime"]


def test_diabetes_example_trains_a_regression_model(kube: Kubectl, operator: OperatorProcess) -> None:
    assert kube.apply((REPO / "examples" / "diabetes" / "experiment.yaml").read_text()).returncode == 0
    wait_until("TrainedModel diabetes-1", lambda: kube.get("trainedmodel", "diabetes-1"), timeout=240)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/diabetes-1", "--timeout=120s")
    status = kube.status("trainedmodel", "diabetes-1")
    assert status["task"] == "regression" and status["classes"] == []
    assert set(status["metrics"]) == {"r2", "rmse", "mae"} and 0.0 < status["metrics"]["r2"] < 1.0
    assert status["headlineMetric"].startswith("r2=")
    assert kube.status("experiment", "diabetes")["latestMetric"].startswith("r2=")
