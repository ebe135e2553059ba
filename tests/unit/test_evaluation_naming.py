"""How a report is named, from the run result to the TrainedModel's status, and what the CLI makes of it:
the operator's builder and decision, and the pure parts of `kstudio report` / `kstudio compare` (the
reading and the HTML live in the console, which shows the same reports)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from kstudio_cli import report as cli_report
from kstudio_console import evaluations, report_html
from kstudio_core import evaluation as ev
from kstudio_core.runresult import RunResult
from kstudio_operator.builders.trainedmodel import trained_model_manifest
from kstudio_operator.decisions.trainedmodel import Verification, decide_trained_model
from kstudio_operator.resources.trainedmodel import TrainedModelSpec

ARTIFACT = "s3://models/penguins/penguins-3.ilearner"
SHA_A, SHA_R = "a" * 64, "b" * 64
RESULT: dict[str, Any] = {
    "artifact": {"uri": ARTIFACT, "sha256": SHA_A, "sizeBytes": 10},
    "metrics": {"accuracy": 0.97, "f1_macro": 0.96},
    "task": "classification",
    "evaluation": {"uri": ev.report_uri(ARTIFACT), "sha256": SHA_R, "sizeBytes": 3000},
}


def test_trained_model_of_a_run_names_its_report_in_the_spec() -> None:
    manifest = trained_model_manifest("ns", "penguins", 3, 1, RunResult.model_validate(RESULT))
    assert manifest["spec"]["evaluation"] == {
        "uri": "s3://models/penguins/penguins-3.ilearner.evaluation/evaluation.json",
        "sha256": SHA_R,
    }
    TrainedModelSpec.model_validate(manifest["spec"])  # what the CRD (generated from it) accepts


def test_a_run_without_a_report_makes_a_model_without_one() -> None:
    result = {k: v for k, v in RESULT.items() if k != "evaluation"}
    manifest = trained_model_manifest("ns", "penguins", 3, 1, RunResult.model_validate(result))
    assert "evaluation" not in manifest["spec"]


def test_status_names_the_report_once_the_artifact_is_verified() -> None:
    spec = trained_model_manifest("ns", "penguins", 3, 1, RunResult.model_validate(RESULT))["spec"]
    pending = decide_trained_model(spec, {}, 1, Verification("Pending", "StorageUnavailable", "down"), [])
    assert "evaluation" not in pending.status
    ready = decide_trained_model(spec, pending.status, 1, Verification("Ready", "Verified", "ok", {}), [])
    assert ready.status["evaluation"] == spec["evaluation"]
    again = decide_trained_model(spec, ready.status, 1, None, [])  # later reconciles keep it
    assert again.status["evaluation"] == spec["evaluation"]


def test_an_imported_model_without_a_report_has_none_in_status() -> None:
    spec = {"artifact": {"uri": ARTIFACT, "sha256": SHA_A}}
    ready = decide_trained_model(spec, {}, 1, Verification("Ready", "Verified", "ok", {}), [])
    assert "evaluation" not in ready.status


def model(name: str, metrics: dict[str, float], *, evaluation: bool = True, run: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "artifact": {"uri": f"s3://models/penguins/{name}.ilearner", "sha256": SHA_A},
        "source": {"experiment": "penguins", "run": run},
    }
    status: dict[str, Any] = {"phase": "Ready", "metrics": metrics}
    if evaluation:
        spec["evaluation"] = status["evaluation"] = {
            "uri": ev.report_uri(spec["artifact"]["uri"]),
            "sha256": SHA_R,
        }
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": status}


def test_report_ref_says_why_there_is_nothing_to_show() -> None:
    imported = model("hand-made", {}, evaluation=False)
    with pytest.raises(evaluations.NothingToShow, match="hand-made has no evaluation report"):
        evaluations.report_ref(imported)
    pending = model("penguins-4", {})
    pending["status"] = {"phase": "Pending", "reason": "StorageUnavailable"}
    with pytest.raises(
        evaluations.NothingToShow, match=r"is Pending: StorageUnavailable; .* once the model is verified"
    ):
        evaluations.report_ref(pending)
    assert evaluations.report_ref(model("penguins-3", {})).sha256 == SHA_R


def service(name: str, promote: dict[str, Any] | None, experiment: str = "penguins") -> dict[str, Any]:
    follow: dict[str, Any] = {"experiment": experiment}
    if promote is not None:
        follow["promote"] = promote
    return {"metadata": {"name": name}, "spec": {"modelFrom": follow}}


def test_gate_verdict_is_the_operators_gate_on_the_status_metrics() -> None:
    a = model("penguins-1", {"f1_macro": 0.95, "rmse": 1.0})
    b = model("penguins-2", {"f1_macro": 0.97, "rmse": 1.2}, run=2)
    services = [
        service("penguins", {"metric": "f1_macro", "minDelta": 0.01}),
        service("strict", {"metric": "f1_macro", "minDelta": 0.05}),
        service("by-error", {"metric": "rmse"}),
        service("follower", None),
        service("other", {"metric": "f1_macro"}, experiment="diabetes"),
        {"metadata": {"name": "pinned"}, "spec": {"model": "penguins-1"}},
    ]
    verdicts = cli_report.gate_verdicts(a, b, services)
    assert verdicts == [
        "WebService penguins gate: would promote penguins-2 over penguins-1: "
        "f1_macro 0.9700 vs 0.9500 served (higher is better): gain +0.0200 >= minDelta 0.01",
        "WebService strict gate: would refuse penguins-2 over penguins-1: f1_macro 0.9700 vs 0.9500 served "
        "(higher is better): gain +0.0200 < minDelta 0.05",
        "WebService by-error gate: would refuse penguins-2 over penguins-1: rmse 1.2000 vs 1.0000 served "
        "(lower is better): gain -0.2000 < minDelta 0.0",
        "WebService follower follows penguins's latest model without a gate",
    ]
    other = model("diabetes-1", {"rmse": 50.0})
    other["spec"]["source"]["experiment"] = "diabetes"
    assert cli_report.gate_verdicts(a, other, services) == []  # not from one experiment: no gate applies


def report(accuracy_auc: float) -> ev.EvaluationReport:
    return ev.EvaluationReport(
        task="classification",
        label="species",
        rows=ev.RowCounts(train=275, test=69),
        classification=ev.Classification(
            classes_total=3,
            scores="probability",
            confusion_matrix=ev.ConfusionMatrix(labels=["a<b>", "c"], counts=[[1, 0], [0, 1]]),
            per_class=[ev.ClassScore(label="a<b>", precision=1, recall=1, f1=1, support=1)],
            roc=[ev.RocCurve(positive="a<b>", fpr=[0, 1], tpr=[0, 1], auc=accuracy_auc)],
        ),
        notes=["<script>alert(1)</script>"],
    )


def evaluation(name: str, metrics: dict[str, float], auc: float | None) -> evaluations.ModelEvaluation:
    e = evaluations.ModelEvaluation(name=name, model=model(name, metrics))
    if auc is None:
        e.missing = f"TrainedModel {name} has no evaluation report"
    else:
        e.ref = ev.EvaluationRef(uri=ev.report_uri(ARTIFACT), sha256=SHA_R)
        e.report = report(auc)
    return e


def test_comparison_text_puts_metrics_side_by_side_with_deltas() -> None:
    a = evaluation("penguins-1", {"accuracy": 1.0, "log_loss": 0.3}, 0.91)
    b = evaluation("penguins-2", {"accuracy": 0.95, "log_loss": 0.2}, 0.97)
    text = cli_report.comparison_text(a, b, ["WebService x gate: would promote ..."])
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "A", "penguins-1", "B", "penguins-2", "B", "-", "A"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["accuracy"] == ["1.0000", "0.9500", "-0.0500", "(A", "better)"]
    assert rows["log_loss"] == ["0.3000", "0.2000", "-0.1000", "(B", "better)"]  # lower is better
    assert " ".join(rows["auc"]) == "a<b> 0.9100 0.9700 +0.0600 (B better)"
    assert lines[-1] == "WebService x gate: would promote ..."


def test_comparison_with_a_model_without_report_still_compares_metrics() -> None:
    a = evaluation("penguins-1", {"accuracy": 0.9}, None)
    b = evaluation("penguins-2", {"accuracy": 0.85}, 0.9)
    text = cli_report.comparison_text(a, b, [])
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert rows["accuracy"] == ["0.9000", "0.8500", "-0.0500", "(A", "better)"]
    assert rows["train"] == ["rows", "-", "275"]  # only B's report has row counts
    assert "note: TrainedModel penguins-1 has no evaluation report" in text
    assert text.endswith("no WebService follows an Experiment both models come from: no gate to apply")


def test_report_page_is_self_contained_and_escapes_everything() -> None:
    e = evaluation("penguins-1", {"accuracy": 0.9}, 0.9)
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'
    assert e.report is not None
    e.report.figures = [
        ev.Figure(
            name="roc",
            title="ROC <curve>",
            file="roc.svg",
            sha256=hashlib.sha256(svg).hexdigest(),
            size_bytes=len(svg),
        )
    ]
    e.figures = {"roc": svg}
    page = report_html.report_page(e)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "data:image/svg+xml;base64," in page and "ROC &lt;curve&gt;" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;" in page and "a<b>" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing external
    assert f"{SHA_R} (verified)" in page


def test_comparison_page_holds_the_text_and_both_reports() -> None:
    a = evaluation("penguins-1", {"accuracy": 0.9}, 0.9)
    b = evaluation("penguins-2", {"accuracy": 0.95}, None)
    page = report_html.comparison_page(a, b, "metric  A  B", [])
    assert "<pre>metric  A  B</pre>" in page and page.count("<h2>Per class</h2>") == 1
    assert "<h2>penguins-1</h2>" in page and "<h2>penguins-2</h2>" not in page
