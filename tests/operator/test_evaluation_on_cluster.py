"""Evaluation reports on the local cluster: the TrainedModel of a run names its report, and `kstudio
report` / `kstudio compare` read it through KUBECONFIG and the cluster's storage, verified."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from operator_support import (
    KSTUDIO,
    Kubectl,
    OperatorProcess,
    experiment_manifest,
    operator_env,
    trained_model_manifest,
    wait_until,
)

from kstudio_core.evaluation import report_uri

pytestmark = pytest.mark.cluster
KEEP = os.environ.get("KSTUDIO_EVALUATION_ARTIFACTS")


def ready_model(kube: Kubectl, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        model = kube.get("trainedmodel", name)
        return model if model and (model.get("status") or {}).get("phase") == "Ready" else None

    return wait_until(f"TrainedModel {name} Ready", probe, timeout=300)


def kstudio(local_cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console script with what a user has: KUBECONFIG and the storage's KSTUDIO_S3_*."""
    return subprocess.run(
        [str(KSTUDIO), *args], env=operator_env(local_cluster), capture_output=True, text=True, timeout=180
    )


def hand_made(name: str, model: dict[str, Any], evaluation: dict[str, str] | None) -> str:
    spec: dict[str, Any] = {"artifact": model["spec"]["artifact"]}
    if evaluation is not None:
        spec["evaluation"] = evaluation
    return trained_model_manifest(name, spec)


def test_run_names_its_report_and_kstudio_report_and_compare_read_it(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, local_cluster: Any, tmp_path: Path
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    first = ready_model(kube, "penguins-1")
    artifact = first["spec"]["artifact"]["uri"]
    named = first["status"]["evaluation"]
    assert named == first["spec"]["evaluation"]
    assert named["uri"] == report_uri(artifact) == f"{artifact}.evaluation/evaluation.json"
    assert hashlib.sha256(example_data.get_bytes(named["uri"])).hexdigest() == named["sha256"]

    patch = {"spec": {"algorithm": {"params": {"n_estimators": 3, "max_depth": 1}}}}  # a weaker run 2
    kube.run("patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(patch))
    ready_model(kube, "penguins-2")

    out = Path(KEEP) if KEEP else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    shown = kstudio(
        local_cluster, "report", "penguins-1", "-n", kube.namespace, "-o", str(out / "penguins-1.html")
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"wrote {out / 'penguins-1.html'} (4 figures)"
    page = (out / "penguins-1.html").read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 4 and f"{named['sha256']} (verified)" in page

    compared = kstudio(
        local_cluster,
        "compare",
        "penguins-1",
        "penguins-2",
        "-n",
        kube.namespace,
        "-o",
        str(out / "compare.html"),
    )
    assert compared.returncode == 0, compared.stderr
    if KEEP:
        (out / "compare-cluster.txt").write_text(compared.stdout)
    lines = compared.stdout.splitlines()
    assert lines[0].split()[:5] == ["metric", "A", "penguins-1", "B", "penguins-2"]
    assert any(line.startswith("f1_macro ") for line in lines) and any(
        line.startswith("auc Adelie") for line in lines
    )
    assert "no WebService follows an Experiment both models come from" in compared.stdout
    assert (out / "compare.html").read_text().count('src="data:image/svg+xml;base64,') == 5

    # Imported by hand without a report; and one whose recorded sha256 is not the report's.
    assert kube.apply(hand_made("imported", first, None)).returncode == 0
    wrong = {"uri": named["uri"], "sha256": "0" * 64}
    assert kube.apply(hand_made("tampered", first, wrong)).returncode == 0
    ready_model(kube, "imported")
    assert ready_model(kube, "tampered")["status"]["evaluation"] == wrong

    none = kstudio(local_cluster, "report", "imported", "-n", kube.namespace, "-o", str(tmp_path / "x.html"))
    assert none.returncode == 2
    assert none.stderr.strip() == (
        "kstudio: TrainedModel imported has no evaluation report (imported, or trained without one): "
        "nothing to show"
    )
    refused = kstudio(
        local_cluster, "report", "tampered", "-n", kube.namespace, "-o", str(tmp_path / "y.html")
    )
    assert refused.returncode == 2 and "refusing to show it" in refused.stderr
    assert f"not the recorded {'0' * 64}" in refused.stderr
    unknown = kstudio(local_cluster, "report", "no-such-model", "-n", kube.namespace)
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip()
        == f"kstudio: TrainedModel no-such-model not found in namespace {kube.namespace}"
    )
    for failed in (none, refused, unknown):
        assert "Traceback" not in failed.stderr and failed.stdout == ""
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def all_columns(name: str, **spec: Any) -> str:
    """An Experiment training on every column but the label."""
    manifest = json.loads(experiment_manifest(name, **spec))
    del manifest["spec"]["features"]
    return json.dumps(manifest)


def test_binary_and_regression_runs_report_their_own_figures(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, local_cluster: Any, tmp_path: Path
) -> None:
    from sklearn.datasets import load_breast_cancer

    csv = load_breast_cancer(as_frame=True).frame.to_csv(index=False).encode()
    example_data.put_bytes(csv, "s3://datasets/breast-cancer.csv")
    binary = all_columns(
        "breast-cancer",
        dataset={"uri": "s3://datasets/breast-cancer.csv", "format": "csv"},
        label="target",
        algorithm={"name": "LogisticRegression", "params": {"max_iter": 2000}},
        evaluation={"testFraction": 0.2, "seed": 42, "metrics": ["f1_macro", "roc_auc"]},
    )
    regression = all_columns(
        "diabetes",
        dataset={"uri": "s3://datasets/diabetes.csv", "format": "csv"},
        label="target",
        task="regression",
        algorithm={"name": "Ridge", "params": {"alpha": 1.0}},
        evaluation={"testFraction": 0.2, "seed": 42, "metrics": ["rmse", "r2"]},
    )
    assert kube.apply(binary).returncode == 0 and kube.apply(regression).returncode == 0
    out = Path(KEEP) if KEEP else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for model, figures in (("breast-cancer-1", 4), ("diabetes-1", 2)):
        ready_model(kube, model)
        page = str(out / f"{model}.html")
        shown = kstudio(local_cluster, "report", model, "-n", kube.namespace, "-o", page)
        assert shown.returncode == 0, (
            shown.stderr + kube.run("logs", "-l", f"kstudio.io/experiment={model[:-2]}").stdout
        )
        assert shown.stdout.strip().endswith(f"({figures} figures)")
    page = (out / "breast-cancer-1.html").read_text()
    assert "Thresholds (positive class 1)" in page and page.count("<tr>") > 101
    page = (out / "diabetes-1.html").read_text()
    assert "Residual distribution" in page and "Predicted vs actual (test sample)" in page
