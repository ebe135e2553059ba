"""The evaluation report a run computes on its test split, and its figures (scikit-learn's display API).

Penguins (3 classes), breast cancer (binary) and diabetes (regression) are trained exactly as a run
trains them (kstudio_trainer.training.train), on the datasets scikit-learn and palmerpenguins ship.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn import calibration, metrics
from sklearn.datasets import load_breast_cancer, load_diabetes

from kstudio_core import evaluation as ev
from kstudio_trainer import cli as train_cli
from kstudio_trainer import evaluation as trainer_evaluation
from kstudio_trainer import report_figures
from kstudio_trainer.spec import parse_snapshot
from kstudio_trainer.training import TrainingOutcome, train

PENGUIN_FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def snapshot(
    label: str, task: str, algorithm: dict[str, Any], metric_names: list[str], **more: Any
) -> dict[str, Any]:
    return {
        "dataset": {"uri": "unused.csv"},
        "label": label,
        "task": task,
        "algorithm": algorithm,
        "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": metric_names},
        **more,
    }


PENGUINS = snapshot(
    "species",
    "classification",
    {"name": "RandomForestClassifier", "params": {"n_estimators": 30, "random_state": 0}},
    ["accuracy", "f1_macro", "roc_auc"],
    features=PENGUIN_FEATURES,
)
BREAST_CANCER = snapshot(
    "target",
    "classification",
    {"name": "LogisticRegression", "params": {"max_iter": 2000}},
    ["f1_macro", "accuracy", "roc_auc"],
)
DIABETES = snapshot(
    "target", "regression", {"name": "Ridge", "params": {"alpha": 1.0}}, ["rmse", "mae", "r2"]
)


def run(frame: pd.DataFrame, snap: dict[str, Any]) -> TrainingOutcome:
    return train(frame, parse_snapshot(snap), snap, 7)


@pytest.fixture(scope="module")
def penguins() -> TrainingOutcome:
    return run(load_penguins(), PENGUINS)


@pytest.fixture(scope="module")
def breast_cancer() -> TrainingOutcome:
    return run(load_breast_cancer(as_frame=True).frame, BREAST_CANCER)


@pytest.fixture(scope="module")
def diabetes() -> TrainingOutcome:
    return run(load_diabetes(as_frame=True).frame, DIABETES)


def report_of(outcome: TrainingOutcome) -> ev.EvaluationReport:
    assert outcome.evaluation is not None
    return outcome.evaluation


def test_penguins_report_has_one_vs_rest_curves_per_class(penguins: TrainingOutcome) -> None:
    report = report_of(penguins)
    cls = report.classification
    assert cls is not None and report.regression is None
    assert report.task == "classification" and report.label == "species" and report.run == 7
    assert report.rows == ev.RowCounts(train=penguins.rows["train"], test=penguins.rows["test"])
    assert report.metrics == penguins.metrics
    assert cls.classes_total == 3 and cls.positive is None and cls.scores == "probability"
    assert cls.confusion_matrix.labels == ["Adelie", "Chinstrap", "Gentoo"]
    counts = np.asarray(cls.confusion_matrix.counts)
    assert counts.shape == (3, 3) and counts.sum() == report.rows.test
    assert [c.support for c in cls.per_class] == counts.sum(axis=1).tolist()
    assert np.trace(counts) / counts.sum() == pytest.approx(report.metrics["accuracy"], abs=1e-6)
    assert [c.positive for c in cls.roc] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [c.positive for c in cls.precision_recall] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [c.positive for c in cls.calibration] == ["Adelie", "Chinstrap", "Gentoo"]
    for roc in cls.roc:
        assert roc.fpr[0] == 0 and roc.fpr[-1] == 1 and roc.tpr[-1] == 1 and 0.5 < (roc.auc or 0) <= 1
    assert cls.thresholds == []  # the threshold slider is for two classes
    assert report.class_balance is not None
    assert sum(c.count for c in report.class_balance.train) == report.rows.train
    assert sum(c.count for c in report.class_balance.test) == report.rows.test
    assert report.importance is not None and report.importance.scoring == "accuracy"
    assert {c.column for c in report.importance.columns} == set(PENGUIN_FEATURES)
    assert report.importance.rows == report.rows.test and report.importance.repeats == 2
    assert report.sweep is None and report.notes == []
    assert report.snapshot == PENGUINS  # the spec the run trained, shown next to its figures


def test_breast_cancer_report_has_the_threshold_table(breast_cancer: TrainingOutcome) -> None:
    report = report_of(breast_cancer)
    cls = report.classification
    assert cls is not None and cls.classes_total == 2 and cls.positive == 1
    (roc,) = cls.roc
    assert roc.positive == 1 and roc.auc == pytest.approx(report.metrics["roc_auc"], abs=1e-5)
    (pr,) = cls.precision_recall
    assert 0.9 < (pr.average_precision or 0) <= 1 and 0 < pr.prevalence < 1
    assert len(cls.thresholds) == ev.MAX_THRESHOLDS
    assert [t.threshold for t in cls.thresholds[:3]] == [0.0, 0.01, 0.02] and cls.thresholds[
        -1
    ].threshold == 1
    for row in cls.thresholds:
        assert row.tp + row.fp + row.tn + row.fn == report.rows.test
    assert cls.thresholds[0].recall == 1 and cls.thresholds[0].tn == 0  # everything scored positive
    positives = next(c.support for c in cls.per_class if c.label == 1)
    assert all(row.tp + row.fn == positives for row in cls.thresholds)
    # At 0.5 the table agrees with the model's own predictions (predict = probability >= 0.5 here).
    half = next(row for row in cls.thresholds if row.threshold == 0.5)
    f1_positive = next(c.f1 for c in cls.per_class if c.label == 1)
    assert half.f1 == pytest.approx(f1_positive, abs=1e-3)
    assert report.importance is not None and report.importance.scoring == "f1_macro"
    assert len(report.importance.columns) == 30
    assert report.importance.repeats == 1  # 30 columns: one shuffle each keeps the cost bounded


def test_diabetes_report_has_residuals_quantiles_and_a_sample(diabetes: TrainingOutcome) -> None:
    report = report_of(diabetes)
    reg = report.regression
    assert reg is not None and report.classification is None and report.class_balance is None
    assert sum(reg.residuals.counts) == report.rows.test
    assert len(reg.residuals.edges) == len(reg.residuals.counts) + 1
    errors = [q.absolute_error for q in reg.error_quantiles]
    assert [q.quantile for q in reg.error_quantiles] == [0.5, 0.75, 0.9, 0.95, 0.99, 1.0]
    assert errors == sorted(errors) and errors[0] > 0
    assert reg.sample is not None and reg.sample.rows_total == report.rows.test == len(reg.sample.actual)
    residuals = np.asarray(reg.sample.actual) - np.asarray(reg.sample.predicted)
    assert residuals.mean() == pytest.approx(reg.residual_mean, rel=1e-3)
    rmse = float(np.sqrt((residuals**2).mean()))
    assert rmse == pytest.approx(report.metrics["rmse"], rel=1e-4)
    assert report.importance is not None and report.importance.scoring == "neg_root_mean_squared_error"
    assert report.importance.columns[0].mean > 0  # the most important column makes the error grow


def test_sweep_report_has_the_grid_table(diabetes: TrainingOutcome) -> None:
    snap = dict(DIABETES, sweep={"params": {"alpha": [0.01, 1.0, 100.0]}, "metric": "rmse", "folds": 3})
    outcome = run(load_diabetes(as_frame=True).frame, snap)
    sweep = report_of(outcome).sweep
    assert sweep is not None and sweep.metric == "rmse" and sweep.folds == 3 and sweep.trials_total == 3
    assert [t.rank for t in sweep.trials] == [1, 2, 3]
    assert {t.params["alpha"] for t in sweep.trials} == {0.01, 1.0, 100.0}
    assert sweep.trials[0].mean_score <= sweep.trials[-1].mean_score  # rmse: the best is the smallest


@pytest.mark.parametrize("name", ["penguins", "breast_cancer", "diabetes"])
def test_report_round_trips_and_stays_under_the_bound(name: str, request: pytest.FixtureRequest) -> None:
    report = report_of(request.getfixturevalue(name))
    body = report.encode()
    assert len(body) <= ev.MAX_REPORT_BYTES
    assert ev.parse_report(body, hashlib.sha256(body).hexdigest(), "report") == report


def test_many_classes_and_rows_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """60 classes, 6,000 rows: capped classes and curves, sampled importance rows, a note for each cap."""
    monkeypatch.setattr(trainer_evaluation, "IMPORTANCE_ROWS", 300)
    rng = np.random.default_rng(0)
    n, k = 6000, 60
    label = rng.integers(0, k, n)
    frame = pd.DataFrame({f"x{i}": label * (i + 1) + rng.normal(0, 5, n) for i in range(4)})
    frame["label"] = [f"class-{v:02d}" for v in label]
    snap = snapshot(
        "label",
        "classification",
        {"name": "DecisionTreeClassifier", "params": {"max_depth": 8, "random_state": 0}},
        ["accuracy"],
    )
    report = report_of(run(frame, snap))
    cls = report.classification
    assert cls is not None and cls.classes_total == k
    assert len(cls.confusion_matrix.labels) == ev.MAX_MATRIX_CLASSES == len(cls.per_class)
    assert len(cls.roc) == ev.MAX_CURVE_CLASSES
    assert all(len(c.fpr) <= ev.MAX_CURVE_POINTS for c in cls.roc)
    assert report.importance is not None and report.importance.rows == 300
    assert any("50 most frequent of 60 classes" in note for note in report.notes)
    assert any("one-vs-rest curves for the 20 most frequent" in note for note in report.notes)
    assert len(report.encode()) <= ev.MAX_REPORT_BYTES


def test_curves_longer_than_the_bound_are_downsampled_keeping_both_ends() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 5000).astype(bool)
    score = truth * 0.3 + rng.random(5000)
    roc = trainer_evaluation._roc(truth, score, True)
    assert len(roc.fpr) <= ev.MAX_CURVE_POINTS and (roc.fpr[0], roc.tpr[0]) == (0, 0)
    assert (roc.fpr[-1], roc.tpr[-1]) == (1, 1)
    assert roc.auc == pytest.approx(metrics.roc_auc_score(truth, score), abs=1e-5)


def test_an_oversized_report_sheds_optional_parts_and_says_so(penguins: TrainingOutcome) -> None:
    report = report_of(penguins).model_copy(deep=True)
    long_labels = [ev.ClassCount(label="x" * 2000 + str(i), count=1) for i in range(700)]
    report.class_balance = ev.ClassBalance(train=long_labels, test=[])
    assert len(report.encode()) > ev.MAX_REPORT_BYTES
    bounded = trainer_evaluation.bounded(report)
    assert len(bounded.encode()) <= ev.MAX_REPORT_BYTES
    assert bounded.class_balance is None and bounded.classification is not None
    assert any(note.startswith("the class balance left out") for note in bounded.notes)


def test_importance_column_cap(monkeypatch: pytest.MonkeyPatch, penguins: TrainingOutcome) -> None:
    monkeypatch.setattr(ev, "MAX_IMPORTANCE_COLUMNS", 4)
    frame = load_penguins().dropna(subset=["species"])
    notes: list[str] = []
    section = trainer_evaluation.importance_section(
        penguins.pipeline, parse_snapshot(PENGUINS), frame[PENGUIN_FEATURES], frame["species"], notes
    )
    assert section is not None and len(section.columns) == 4
    assert notes == ["permutation importance lists the 4 most important of 6 columns"]


# --- figures ----------------------------------------------------------------------------------------------


DISPLAY_TEXT = {
    "confusion_matrix": ["Predicted label", "True label"],
    "roc": ["False Positive Rate", "True Positive Rate", "Chance level"],
    "precision_recall": ["Recall", "Precision"],
    "calibration": ["Mean predicted probability", "Fraction of positives", "Perfectly calibrated"],
    "actual_vs_predicted": ["Predicted values", "Actual values"],
    "residuals": ["Predicted values", "Residuals (actual - predicted)"],
}


@pytest.fixture
def display_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every scikit-learn display that draws (the real plot methods still run)."""
    calls: list[str] = []
    for display in (
        metrics.ConfusionMatrixDisplay,
        metrics.RocCurveDisplay,
        metrics.PrecisionRecallDisplay,
        metrics.PredictionErrorDisplay,
        calibration.CalibrationDisplay,
    ):
        real = display.plot

        def spy(
            self: Any, *args: Any, _real: Any = real, _name: str = display.__name__, **kwargs: Any
        ) -> Any:
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(display, "plot", spy)
    return calls


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("penguins", ["confusion_matrix", "roc", "precision_recall", "calibration"]),
        ("breast_cancer", ["confusion_matrix", "roc", "precision_recall", "calibration"]),
        ("diabetes", ["actual_vs_predicted", "residuals"]),
    ],
)
def test_figures_are_svg_drawn_by_the_display_api(
    name: str, expected: list[str], request: pytest.FixtureRequest, display_calls: list[str]
) -> None:
    figures = report_figures.render_report(report_of(request.getfixturevalue(name)))
    assert [f.name for f in figures] == expected
    for figure in figures:
        text = figure.svg.decode()
        assert text.startswith("<?xml") and "<svg" in text and len(figure.svg) > 5000
        for label in DISPLAY_TEXT[figure.name]:
            assert label in text, f"{figure.name}: {label!r} missing"
        assert "<script" not in text
    displays = {"confusion_matrix": "ConfusionMatrixDisplay", "roc": "RocCurveDisplay"}
    displays |= {"precision_recall": "PrecisionRecallDisplay", "calibration": "CalibrationDisplay"}
    displays |= {"actual_vs_predicted": "PredictionErrorDisplay", "residuals": "PredictionErrorDisplay"}
    assert sorted(set(display_calls)) == sorted({displays[n] for n in expected})


def test_figures_are_deterministic(penguins: TrainingOutcome) -> None:
    first = report_figures.render_report(report_of(penguins))
    again = report_figures.render_report(report_of(penguins))
    assert [f.svg for f in first] == [f.svg for f in again]


def test_comparison_overlays_both_models_curves(penguins: TrainingOutcome, display_calls: list[str]) -> None:
    report = report_of(penguins)
    figures = report_figures.render_comparison([("penguins-1", report), ("penguins-2", report)])
    names = [f.name for f in figures]
    assert names == [
        "confusion_matrix_penguins_1",
        "confusion_matrix_penguins_2",
        "roc",
        "precision_recall",
        "calibration",
    ]
    roc = figures[2].svg.decode()
    for owner in ("penguins-1", "penguins-2"):
        for cls in ("Adelie", "Chinstrap", "Gentoo"):
            assert f"{owner} · {cls}" in roc
    assert display_calls.count("RocCurveDisplay") == 1  # one display, six curves


# --- the trainer writes it ----------------------------------------------------------------------------------


def test_training_run_writes_report_and_figures_next_to_the_artifact(tmp_path: Path) -> None:
    data = tmp_path / "penguins.csv"
    load_penguins().to_csv(data, index=False)
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(dict(PENGUINS, dataset={"uri": str(data)})))
    output = tmp_path / "models" / "penguins-3.ilearner"
    argv = [
        "--snapshot",
        str(snap),
        "--run",
        "3",
        "--output",
        str(output),
        "--result-file",
        str(tmp_path / "r.json"),
    ]
    assert train_cli.main(argv) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    ref = ev.EvaluationRef.model_validate(result["evaluation"])
    assert ref.uri == ev.report_uri(str(output)) == f"{output}.evaluation/evaluation.json"
    body = Path(ref.uri).read_bytes()
    assert hashlib.sha256(body).hexdigest() == ref.sha256 and len(body) == ref.size_bytes
    report = ev.parse_report(body, ref.sha256, "report")
    assert [f.file for f in report.figures] == [
        "confusion_matrix.svg",
        "roc.svg",
        "precision_recall.svg",
        "calibration.svg",
    ]
    for figure in report.figures:
        svg = (output.parent / f"{output.name}.evaluation" / figure.file).read_bytes()
        assert hashlib.sha256(svg).hexdigest() == figure.sha256 and len(svg) == figure.size_bytes

    skipped = tmp_path / "models" / "penguins-4.ilearner"
    argv = ["--snapshot", str(snap), "--run", "4", "--output", str(skipped), "--no-evaluation"]
    argv += ["--result-file", str(tmp_path / "r4.json")]
    assert train_cli.main(argv) == 0
    assert json.loads((tmp_path / "r4.json").read_text()).get("evaluation") is None
    assert not Path(ev.report_folder(str(skipped))).exists()


def test_a_tampered_report_is_refused_before_parsing(penguins: TrainingOutcome) -> None:
    body = report_of(penguins).encode()
    recorded = hashlib.sha256(body).hexdigest()
    tampered = body.replace(b'"accuracy":1.0', b'"accuracy":0.5', 1)
    assert tampered != body
    with pytest.raises(ev.ReportDigestMismatch, match="refusing to show it"):
        ev.parse_report(tampered, recorded, "evaluation report s3://m/p.ilearner.evaluation/evaluation.json")
