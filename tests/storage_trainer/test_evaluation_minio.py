"""Evaluation reports in a real MinIO: a training run stores the report and its figures next to the
artifact and names them in its result; `kstudio report` / `kstudio compare` read them back, verified."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from palmerpenguins import load_penguins

from fixtures.minio_server import MinioServer
from kstudio_cli import report as cli_report
from kstudio_core import evaluation as ev
from kstudio_core.runresult import RunResult
from kstudio_core.storage import ObjectStore
from kstudio_operator.builders.trainedmodel import trained_model_manifest
from kstudio_operator.decisions.trainedmodel import Verification, decide_trained_model
from kstudio_trainer import cli as train_cli

DATASET = "s3://datasets/penguins-eval.csv"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
# Kept for people when set (the issue asks to look at the figures): KSTUDIO_EVALUATION_ARTIFACTS=/some/dir
KEEP = os.environ.get("KSTUDIO_EVALUATION_ARTIFACTS")


def penguins_snapshot(algorithm: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": {"uri": DATASET, "format": "csv"},
        "label": "species",
        "features": FEATURES,
        "task": "classification",
        "algorithm": algorithm,
        "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy", "f1_macro", "roc_auc"]},
    }


@pytest.fixture(scope="module")
def storage(minio_server: MinioServer, object_store: ObjectStore) -> ObjectStore:
    object_store.ensure_bucket("datasets")
    object_store.put_bytes(load_penguins().to_csv(index=False).encode(), DATASET)
    return object_store


def train(tmp: Path, snapshot: dict[str, Any], output: str, run: int, env: dict[str, str]) -> dict[str, Any]:
    snap = tmp / f"snapshot-{run}.json"
    snap.write_text(json.dumps(snapshot))
    result_file = tmp / f"result-{run}.json"
    argv = ["--snapshot", str(snap), "--run", str(run), "--output", output, "--result-file", str(result_file)]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert train_cli.main(argv) == 0
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def trained_model(result: dict[str, Any], name: str, run: int) -> dict[str, Any]:
    """The TrainedModel as the operator makes it from the run result, with the status it writes once the
    artifact is verified (the cluster tier checks the real operator does exactly that)."""
    manifest = trained_model_manifest("ns", "penguins", run, 1, RunResult.model_validate(result))
    manifest["metadata"]["name"] = name
    verified = Verification(
        "Ready", "Verified", "ok", {"metrics": result["metrics"], "task": "classification"}
    )
    manifest["status"] = decide_trained_model(manifest["spec"], {}, 1, verified, []).status
    return manifest


@pytest.fixture(scope="module")
def two_runs(
    storage: ObjectStore, minio_server: MinioServer, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("runs")
    env = minio_server.settings.to_env()
    weak = penguins_snapshot({"name": "LogisticRegression", "params": {"C": 0.005, "max_iter": 500}})
    strong = penguins_snapshot({"name": "RandomForestClassifier", "params": {"n_estimators": 50}})
    return [
        train(tmp, weak, "s3://models/penguins/penguins-1.ilearner", 1, env),
        train(tmp, strong, "s3://models/penguins/penguins-2.ilearner", 2, env),
    ]


def test_run_stores_report_and_figures_named_in_its_result(
    two_runs: list[dict[str, Any]], storage: ObjectStore
) -> None:
    result = two_runs[1]
    ref = ev.EvaluationRef.model_validate(result["evaluation"])
    assert ref.uri == "s3://models/penguins/penguins-2.ilearner.evaluation/evaluation.json"
    stored = json.loads(storage.get_bytes("s3://models/penguins/penguins-2.ilearner.result.json"))
    assert RunResult.model_validate(stored).evaluation == ref
    body = storage.get_bytes(ref.uri)
    assert hashlib.sha256(body).hexdigest() == ref.sha256 and len(body) == ref.size_bytes
    assert storage.stat(ref.uri).sha256 == ref.sha256
    report = ev.read_report(storage, ref)
    assert report.run == 2 and report.metrics == result["metrics"]
    assert [f.file for f in report.figures] == [
        "confusion_matrix.svg",
        "roc.svg",
        "precision_recall.svg",
        "calibration.svg",
    ]
    for figure in report.figures:
        svg = storage.get_bytes(ev.figure_uri(ref.uri, figure.file))
        assert hashlib.sha256(svg).hexdigest() == figure.sha256 and b"<svg" in svg
    keys = storage.list_keys("models", "penguins/penguins-2.ilearner.evaluation/")
    assert sorted(keys) == sorted(
        f"penguins/penguins-2.ilearner.evaluation/{f}"
        for f in ["evaluation.json", *[f.file for f in report.figures]]
    )


def test_kstudio_report_writes_one_self_contained_html(
    two_runs: list[dict[str, Any]], storage: ObjectStore, tmp_path: Path
) -> None:
    model = trained_model(two_runs[1], "penguins-2", 2)
    evaluation = cli_report.load_evaluation(model, storage)
    output = Path(KEEP or tmp_path) / "penguins-2.report.html"
    output.parent.mkdir(parents=True, exist_ok=True)
    cli_report.write_report(evaluation, output)
    page = output.read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 4
    assert "Evaluation of TrainedModel penguins-2" in page and "(verified)" in page
    assert re.search(r"<td>accuracy</td><td>\d\.\d{4}</td>", page)
    assert "Permutation importance" in page and "island" in page
    assert not re.search(r"(src|href)=\"(http|//)", page)  # nothing loaded from elsewhere


def test_compare_two_penguins_runs(
    two_runs: list[dict[str, Any]], storage: ObjectStore, tmp_path: Path
) -> None:
    a = cli_report.load_evaluation(trained_model(two_runs[0], "penguins-1", 1), storage, required=False)
    b = cli_report.load_evaluation(trained_model(two_runs[1], "penguins-2", 2), storage, required=False)
    service = {
        "metadata": {"name": "penguins"},
        "spec": {"modelFrom": {"experiment": "penguins", "promote": {"metric": "f1_macro"}}},
    }
    text = cli_report.comparison_text(a, b, cli_report.gate_verdicts(a.model, b.model, [service]))
    output = Path(KEEP or tmp_path) / "compare-penguins-1-penguins-2.html"
    cli_report.write_comparison(a, b, text, output)
    if KEEP:
        (Path(KEEP) / "compare-penguins-1-penguins-2.txt").write_text(text + "\n")
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    fa, fb = two_runs[0]["metrics"]["f1_macro"], two_runs[1]["metrics"]["f1_macro"]
    assert rows["f1_macro"][:3] == [f"{fa:.4f}", f"{fb:.4f}", f"{fb - fa:+.4f}"]
    assert "auc" in rows and "train" in rows
    assert "WebService penguins gate: would promote penguins-2 over penguins-1: f1_macro" in text
    page = output.read_text()
    assert page.count('src="data:image/svg+xml;base64,') == 5  # 2 confusion matrices, ROC, PR, calibration
    assert "<h2>penguins-1</h2>" in page and "<h2>penguins-2</h2>" in page


def test_a_model_without_report_says_so(two_runs: list[dict[str, Any]], storage: ObjectStore) -> None:
    imported = trained_model({k: v for k, v in two_runs[1].items() if k != "evaluation"}, "hand-made", 2)
    with pytest.raises(cli_report.NothingToShow, match="TrainedModel hand-made has no evaluation report"):
        cli_report.load_evaluation(imported, storage)


def test_a_changed_report_or_figure_is_refused(
    two_runs: list[dict[str, Any]], storage: ObjectStore, minio_server: MinioServer, tmp_path: Path
) -> None:
    env = minio_server.settings.to_env()
    snapshot = penguins_snapshot({"name": "RandomForestClassifier", "params": {"n_estimators": 10}})
    result = train(tmp_path, snapshot, "s3://models/penguins/penguins-9.ilearner", 9, env)
    model = trained_model(result, "penguins-9", 9)
    ref = ev.EvaluationRef.model_validate(result["evaluation"])
    original = storage.get_bytes(ref.uri)

    report = json.loads(original)
    report["metrics"]["accuracy"] = 0.1234  # a "better looking" report swapped in
    storage.put_bytes(json.dumps(report).encode(), ref.uri)
    with pytest.raises(
        cli_report.NothingToShow, match=r"has sha256 [0-9a-f]{64}, not the recorded .*refusing to show it"
    ):
        cli_report.load_evaluation(model, storage)

    storage.put_bytes(original, ref.uri)
    roc = ev.figure_uri(ref.uri, "roc.svg")
    storage.put_bytes(storage.get_bytes(roc).replace(b"</svg>", b"<script>alert(1)</script></svg>"), roc)
    with pytest.raises(
        cli_report.NothingToShow, match=r"figure s3://.*/roc\.svg has sha256 .*refusing to show it"
    ):
        cli_report.load_evaluation(model, storage)


# --- the console's pages on the same reports --------------------------------------------------------


def console_client(models: list[dict[str, Any]], storage: ObjectStore) -> Any:
    """The console app on a cache holding `models` (as its watch would), reading reports from MinIO, with
    the renderer and gate the `kstudio` command hands in."""
    from fastapi.testclient import TestClient

    from kstudio_cli.console import gate_verdicts, render_comparison
    from kstudio_console.app import Console, create_app
    from kstudio_console.cache import ObjectCache
    from kstudio_console.reports import Reports

    cache = ObjectCache()
    cache.replace("trainedmodels", "", models)
    service = {
        "metadata": {"name": "penguins", "namespace": "ns"},
        "spec": {"modelFrom": {"experiment": "penguins", "promote": {"metric": "f1_macro"}}},
    }
    cache.replace("webservices", "", [service])
    reports = Reports(storage, render_comparison)
    return TestClient(create_app(Console(cache, reports, verdicts=gate_verdicts)))


def figure_urls(page: str) -> list[str]:
    return [u.replace("&amp;", "&") for u in re.findall(r'<img src="([^"]+\.svg[^"]*)"', page)]


def test_console_shows_a_runs_verified_report_and_compares_two_runs(
    two_runs: list[dict[str, Any]], storage: ObjectStore
) -> None:
    models = [trained_model(two_runs[0], "penguins-1", 1), trained_model(two_runs[1], "penguins-2", 2)]
    client = console_client(models, storage)
    page = client.get("/ns/ns/models/penguins-2").text
    ref = ev.EvaluationRef.model_validate(two_runs[1]["evaluation"])
    assert f"{ref.sha256}</span> (verified)" in page
    assert "<h2>Per class</h2>" in page and "<h2>Experiment snapshot</h2>" in page
    urls = figure_urls(page)
    assert len(urls) == 4
    for url in urls:
        svg = client.get(url)
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        name = url.split("/figures/")[1].split(".svg")[0]
        figure = next(f for f in ev.read_report(storage, ref).figures if f.name == name)
        assert hashlib.sha256(svg.content).hexdigest() == figure.sha256  # the verified bytes, unchanged

    compared = client.get("/ns/ns/compare?a=penguins-1&b=penguins-2").text
    fa, fb = two_runs[0]["metrics"]["f1_macro"], two_runs[1]["metrics"]["f1_macro"]
    assert f'<td>f1_macro</td><td class="num">{fa:.4f}</td><td class="num">{fb:.4f}</td>' in compared
    assert "WebService penguins gate: would promote penguins-2 over penguins-1" in compared
    overlaid = figure_urls(compared)
    assert len(overlaid) == 5  # 2 confusion matrices, ROC, PR, calibration: both runs' curves in one
    roc = client.get(next(u for u in overlaid if "/roc.svg" in u))
    assert roc.status_code == 200 and b"penguins-1" in roc.content and b"penguins-2" in roc.content


def test_console_refuses_a_changed_report_with_that_message(
    two_runs: list[dict[str, Any]], storage: ObjectStore, minio_server: MinioServer, tmp_path: Path
) -> None:
    snapshot = penguins_snapshot({"name": "RandomForestClassifier", "params": {"n_estimators": 5}})
    result = train(
        tmp_path, snapshot, "s3://models/penguins/penguins-8.ilearner", 8, minio_server.settings.to_env()
    )
    tampered = trained_model(result, "penguins-8", 8)
    ref = ev.EvaluationRef.model_validate(result["evaluation"])
    report = json.loads(storage.get_bytes(ref.uri))
    report["metrics"]["accuracy"] = 0.99
    storage.put_bytes(json.dumps(report).encode(), ref.uri)
    imported = trained_model({k: v for k, v in two_runs[1].items() if k != "evaluation"}, "hand-made", 2)
    client = console_client([tampered, imported], storage)

    page = client.get("/ns/ns/models/penguins-8")
    assert page.status_code == 200
    refusal = (
        r'class="refused">TrainedModel penguins-8: evaluation report s3://\S+ has sha256 [0-9a-f]{64}, '
        r"not the recorded [0-9a-f]{64}: refusing to show it<"
    )
    assert re.search(refusal, page.text)
    assert "0.99" not in page.text.split("Evaluation report")[1]  # nothing of the changed report shown
    assert client.get("/ns/ns/models/penguins-8/figures/roc.svg").status_code == 404
    page = client.get("/ns/ns/models/hand-made")
    assert page.status_code == 200 and "TrainedModel hand-made has no evaluation report" in page.text
