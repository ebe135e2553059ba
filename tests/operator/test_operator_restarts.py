"""Level-based: what the operator does after downtime or a crash (no lost or duplicated runs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_support import (
    QUICK_RESYNC,
    Kubectl,
    OperatorProcess,
    experiment_manifest,
    reconciled_again,
    wait_until,
)
from test_experiment_runs import run_done, runs

pytestmark = pytest.mark.cluster


def job_names(kube: Kubectl) -> list[str]:
    return sorted(j["metadata"]["name"] for j in kube.items("jobs", "kstudio.io/experiment=penguins"))


@QUICK_RESYNC
def test_two_changes_while_down_start_exactly_one_run_for_the_latest_generation(
    kube: Kubectl, operator: OperatorProcess
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
    operator.stop()
    for trees in (11, 12):
        patch = {"spec": {"algorithm": {"params": {"n_estimators": trees, "random_state": 0}}}}
        kube.run("patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(patch))
    assert kube.get("experiment", "penguins")["metadata"]["generation"] == 3  # type: ignore[index]

    operator.start()
    second = wait_until("run 2", lambda: run_done(kube, 2), timeout=240)
    assert (second["phase"], second["generation"], second["triggers"]) == ("Succeeded", 3, ["spec"])
    wait_until("two more reconciles of the Experiment", reconciled_again(operator, "Experiment", 2), 30)
    assert [r["run"] for r in runs(kube)] == [1, 2]
    assert job_names(kube) == ["penguins-run-1", "penguins-run-2"]


@QUICK_RESYNC
def test_operator_killed_mid_run_finishes_the_run_once(
    kube: Kubectl, operator: OperatorProcess, example_data: Any
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    wait_until("Job penguins-run-1", lambda: kube.get("job", "penguins-run-1"), timeout=60, interval=0.1)
    operator.kill()
    # The Job runs on without the operator.
    wait_until(
        "Job to complete",
        lambda: (kube.get("job", "penguins-run-1") or {}).get("status", {}).get("succeeded"),
        timeout=240,
    )
    assert kube.get("trainedmodel", "penguins-1") is None

    operator.start()
    first = wait_until("run 1 recorded", lambda: run_done(kube, 1), timeout=120)
    assert (first["phase"], first["trainedModel"]) == ("Succeeded", "penguins-1")
    kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=60s")
    wait_until("two more reconciles of the Experiment", reconciled_again(operator, "Experiment", 2), 30)
    assert job_names(kube) == ["penguins-run-1"]
    assert [m["metadata"]["name"] for m in kube.items("trainedmodels")] == ["penguins-1"]
    assert [r["run"] for r in runs(kube)] == [1]
