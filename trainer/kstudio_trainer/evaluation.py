"""The evaluation report of a run, computed on the test split (the contract: kstudio_core.evaluation).

What Studio's Evaluate Model showed, as data: for classification the confusion matrix, per-class scores,
ROC and precision/recall curves (binary, or one-vs-rest per class), calibration and, for two classes, the
threshold table; for regression the residuals, error quantiles and a predicted-vs-actual sample; for both
the row counts, class balance and permutation importance of the input columns; for sweeps the grid's table.

Bounded whatever the dataset: curves are downsampled, classes and columns capped, permutation importance
runs on a seeded sample of at most IMPORTANCE_ROWS test rows, and `bounded` drops the largest optional
parts (saying so in `notes`) should a document still exceed MAX_REPORT_BYTES.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance

from kstudio_core import evaluation as ev
from kstudio_trainer.metrics import SWEEP_SCORERS
from kstudio_trainer.spec import ExperimentSnapshot

log = logging.getLogger("kstudio.train")

IMPORTANCE_ROWS = 1000
# Permutation importance costs one prediction on the test sample per column and repeat: at most
# IMPORTANCE_REPEATS repeats, fewer for wide tables so that about IMPORTANCE_PREDICTIONS predictions are
# made (never fewer than one per column). Penguins (6 columns): 2 repeats; 5 repeats cost it a second.
IMPORTANCE_REPEATS = 3
IMPORTANCE_PREDICTIONS = 12
CALIBRATION_BINS = 10
RESIDUAL_BINS = 30
ERROR_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def build_report(
    pipeline: Any,
    spec: ExperimentSnapshot,
    y_train: pd.Series,
    x_test: pd.DataFrame,
    y_test: pd.Series,
    *,
    metrics: dict[str, float],
    run: int | None,
    trials: Sequence[dict[str, Any]] = (),
    snapshot: dict[str, Any] | None = None,
) -> ev.EvaluationReport:
    """The report (without figures) of a fitted pipeline on its test split; `snapshot`, the experiment
    spec it trained, goes with it (the console shows it next to the figures)."""
    notes: list[str] = []
    report = ev.EvaluationReport(
        task=spec.task,
        label=spec.label,
        run=run,
        metrics=metrics,
        rows=ev.RowCounts(train=len(y_train), test=len(y_test)),
        snapshot=snapshot,
    )
    if spec.task == "classification":
        report.class_balance = ev.ClassBalance(train=_balance(y_train), test=_balance(y_test))
        report.classification = classification_section(pipeline, x_test, y_test, notes)
    else:
        report.regression = regression_section(pipeline, x_test, y_test, spec.evaluation.seed)
    report.importance = importance_section(pipeline, spec, x_test, y_test, notes)
    if spec.sweep is not None and trials:
        report.sweep = sweep_section(trials, spec.sweep_metric, spec.sweep.folds)
    report.notes = notes
    return bounded(report)


# --- classification -------------------------------------------------------------------------------------


def classification_section(
    pipeline: Any, x: pd.DataFrame, y: pd.Series, notes: list[str]
) -> ev.Classification:
    classes = [_plain(c) for c in pipeline.classes_]
    y_true = np.asarray(y)
    y_pred = np.asarray(pipeline.predict(x))
    support = {c: int((y_true == c).sum()) for c in classes}
    # Most frequent first (ties: the model's order), so caps keep the classes that matter most.
    by_support = sorted(classes, key=lambda c: -support[c])
    shown = [c for c in classes if c in set(by_support[: ev.MAX_MATRIX_CLASSES])]
    if len(classes) > len(shown):
        notes.append(
            f"confusion matrix and per-class scores show the {len(shown)} most frequent "
            f"of {len(classes)} classes"
        )
    counts = skm.confusion_matrix(y_true, y_pred, labels=np.asarray(shown))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.asarray(shown), zero_division=0
    )
    section = ev.Classification(
        classes_total=len(classes),
        positive=classes[1] if len(classes) == 2 else None,
        scores="none",
        confusion_matrix=ev.ConfusionMatrix(labels=shown, counts=counts.astype(int).tolist()),
        per_class=[
            ev.ClassScore(
                label=c,
                precision=_num(precision[i]),
                recall=_num(recall[i]),
                f1=_num(f1[i]),
                support=support[c],
            )
            for i, c in enumerate(shown)
        ],
    )
    scores, kind = _scores(pipeline, x, len(classes))
    if scores is None:
        notes.append("the model gives neither probabilities nor decision scores: no ROC, PR or calibration")
        return section
    section.scores = kind
    if len(classes) == 2:
        curve_classes = [classes[1]]
        columns = {classes[1]: scores if scores.ndim == 1 else scores[:, 1]}
    else:
        curve_classes = [c for c in by_support[: ev.MAX_CURVE_CLASSES]]
        curve_classes.sort(key=classes.index)
        columns = {c: scores[:, classes.index(c)] for c in curve_classes}
        if len(classes) > len(curve_classes):
            notes.append(
                f"one-vs-rest curves for the {len(curve_classes)} most frequent of {len(classes)} classes"
            )
    for positive in curve_classes:
        truth = y_true == positive
        if truth.all() or not truth.any():
            notes.append(f"no ROC/PR curve for {positive!r}: the test split holds only one side of it")
            continue
        section.roc.append(_roc(truth, columns[positive], positive))
        section.precision_recall.append(_precision_recall(truth, columns[positive], positive))
        if kind == "probability":
            section.calibration.append(_calibration(truth, columns[positive], positive))
    if len(classes) == 2:
        section.thresholds = threshold_table(y_true == classes[1], columns[classes[1]], kind)
    return section


def _scores(pipeline: Any, x: pd.DataFrame, n_classes: int) -> tuple[Any, Any]:
    if hasattr(pipeline, "predict_proba"):
        return np.asarray(pipeline.predict_proba(x), dtype=float), "probability"
    if hasattr(pipeline, "decision_function"):
        scores = np.asarray(pipeline.decision_function(x), dtype=float)
        if n_classes == 2 or scores.ndim == 2:
            return scores, "decision"
    return None, "none"


def _roc(truth: np.ndarray, score: np.ndarray, positive: Any) -> ev.RocCurve:
    fpr, tpr, _ = skm.roc_curve(truth, score)
    keep = _downsample(len(fpr), ev.MAX_CURVE_POINTS)
    return ev.RocCurve(
        positive=positive,
        fpr=_nums(fpr[keep]),
        tpr=_nums(tpr[keep]),
        auc=_num(skm.roc_auc_score(truth, score)),
    )


def _precision_recall(truth: np.ndarray, score: np.ndarray, positive: Any) -> ev.PrecisionRecallCurve:
    precision, recall, _ = skm.precision_recall_curve(truth, score)
    keep = _downsample(len(precision), ev.MAX_CURVE_POINTS)
    return ev.PrecisionRecallCurve(
        positive=positive,
        precision=_nums(precision[keep]),
        recall=_nums(recall[keep]),
        average_precision=_num(skm.average_precision_score(truth, score)),
        prevalence=_num(truth.mean()),
    )


def _calibration(truth: np.ndarray, probability: np.ndarray, positive: Any) -> ev.CalibrationCurve:
    prob_true, prob_pred = calibration_curve(truth, probability, n_bins=CALIBRATION_BINS, strategy="uniform")
    return ev.CalibrationCurve(
        positive=positive, prob_pred=_nums(prob_pred), prob_true=_nums(prob_true), bins=CALIBRATION_BINS
    )


def threshold_table(truth: np.ndarray, score: np.ndarray, kind: str) -> list[ev.ThresholdRow]:
    """Precision, recall, F1 and the four counts at each threshold: 0.00 .. 1.00 for probabilities,
    the score's quantiles for decision scores (which have no fixed range)."""
    if kind == "probability":
        thresholds = np.linspace(0.0, 1.0, ev.MAX_THRESHOLDS)
    else:
        thresholds = np.unique(np.quantile(score, np.linspace(0.0, 1.0, ev.MAX_THRESHOLDS)))
    predicted = score[None, :] >= thresholds[:, None]  # one row per threshold
    positives = truth[None, :]
    tp = (predicted & positives).sum(axis=1)
    fp = (predicted & ~positives).sum(axis=1)
    fn = (~predicted & positives).sum(axis=1)
    tn = (~predicted & ~positives).sum(axis=1)
    rows = []
    for i, t in enumerate(thresholds):
        precision = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        recall = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            ev.ThresholdRow(
                threshold=_num(t),
                precision=_num(precision),
                recall=_num(recall),
                f1=_num(f1),
                tp=int(tp[i]),
                fp=int(fp[i]),
                tn=int(tn[i]),
                fn=int(fn[i]),
            )
        )
    return rows


def _balance(y: pd.Series) -> list[ev.ClassCount]:
    counts = y.value_counts().head(ev.MAX_BALANCE_CLASSES)
    return [ev.ClassCount(label=_plain(label), count=int(n)) for label, n in counts.items()]


# --- regression -----------------------------------------------------------------------------------------


def regression_section(pipeline: Any, x: pd.DataFrame, y: pd.Series, seed: int) -> ev.Regression:
    actual = np.asarray(y, dtype=float)
    predicted = np.asarray(pipeline.predict(x), dtype=float)
    residuals = actual - predicted
    counts, edges = np.histogram(residuals, bins=min(RESIDUAL_BINS, max(1, len(residuals))))
    errors = np.abs(residuals)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(actual), size=min(len(actual), ev.MAX_SAMPLE_ROWS), replace=False))
    return ev.Regression(
        residuals=ev.Histogram(edges=_nums(edges), counts=counts.astype(int).tolist()),
        residual_mean=_num(residuals.mean()),
        residual_std=_num(residuals.std()),
        error_quantiles=[
            ev.ErrorQuantile(quantile=q, absolute_error=_num(np.quantile(errors, q))) for q in ERROR_QUANTILES
        ],
        sample=ev.PredictedVsActual(
            actual=_nums(actual[pick]), predicted=_nums(predicted[pick]), rows_total=len(actual)
        ),
    )


# --- both -----------------------------------------------------------------------------------------------


def importance_section(
    pipeline: Any, spec: ExperimentSnapshot, x: pd.DataFrame, y: pd.Series, notes: list[str]
) -> ev.PermutationImportance | None:
    """How much the score drops when one input column is shuffled (scikit-learn's permutation_importance
    on the whole pipeline, so the columns are the input columns, before encoding)."""
    if len(x) > IMPORTANCE_ROWS:
        sample = x.sample(n=IMPORTANCE_ROWS, random_state=spec.evaluation.seed)
        x, y = sample, y.loc[sample.index]
    repeats = max(1, min(IMPORTANCE_REPEATS, IMPORTANCE_PREDICTIONS // max(1, len(x.columns))))
    for scoring in _importance_scorings(spec, y):
        try:
            result = permutation_importance(
                pipeline,
                x,
                y,
                scoring=scoring,
                n_repeats=repeats,
                random_state=spec.evaluation.seed,
                n_jobs=1,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            log.info("permutation importance with %s not computed: %s", scoring, exc)
            continue
        # Error scorers are negated by scikit-learn: a positive importance still means "the score got worse".
        columns = sorted(
            (
                ev.ColumnImportance(
                    column=str(col),
                    mean=_num(result.importances_mean[i]),
                    std=_num(result.importances_std[i]),
                )
                for i, col in enumerate(x.columns)
            ),
            key=lambda c: -c.mean,
        )
        if len(columns) > ev.MAX_IMPORTANCE_COLUMNS:
            notes.append(
                f"permutation importance lists the {ev.MAX_IMPORTANCE_COLUMNS} most important "
                f"of {len(columns)} columns"
            )
        return ev.PermutationImportance(
            scoring=scoring,
            repeats=repeats,
            rows=len(x),
            columns=columns[: ev.MAX_IMPORTANCE_COLUMNS],
        )
    notes.append("permutation importance could not be computed on the test split")
    return None


def _importance_scorings(spec: ExperimentSnapshot, y: pd.Series) -> list[str]:
    """The run's own metrics as scorers (headline first), then the task's default."""
    out = []
    for name in spec.metric_names:
        scorer = SWEEP_SCORERS.get(name)
        if scorer == "roc_auc_ovr" and y.nunique() == 2:
            scorer = "roc_auc"
        if scorer and scorer not in out:
            out.append(scorer)
    default = "accuracy" if spec.task == "classification" else "r2"
    return out + ([default] if default not in out else [])


def sweep_section(trials: Sequence[dict[str, Any]], metric: str, folds: int) -> ev.SweepTable:
    ranked = sorted(trials, key=lambda t: (int(t["rank"]), -float(t["meanScore"])))
    return ev.SweepTable(
        metric=metric,
        folds=folds,
        trials_total=len(trials),
        trials=[
            ev.SweepTrial(
                params=dict(t["params"]),
                mean_score=_num(t["meanScore"]),
                std_score=_num(t["stdScore"]),
                rank=int(t["rank"]),
            )
            for t in ranked[: ev.MAX_SWEEP_TRIALS]
        ],
    )


# What `bounded` removes, in order, until the encoded report fits: the most voluminous optional parts first.
_SHEDDABLE = (
    ("sample", "the predicted-vs-actual sample"),
    ("sweep", "the sweep table"),
    ("calibration", "the calibration curves"),
    ("thresholds", "the threshold table"),
    ("precision_recall", "the precision/recall curves"),
    ("roc", "the ROC curves"),
    ("class_balance", "the class balance"),
    ("importance", "the permutation importance"),
    ("snapshot", "the experiment snapshot"),
)


def _shed(report: ev.EvaluationReport, part: str) -> None:
    if part == "sample" and report.regression is not None:
        report.regression.sample = None
    elif part in {"sweep", "class_balance", "importance", "snapshot"}:
        setattr(report, part, None)
    elif report.classification is not None and part in {
        "calibration",
        "thresholds",
        "precision_recall",
        "roc",
    }:
        setattr(report.classification, part, [])


# Room left for the figure list, which is added after the figures are drawn.
_FIGURE_ROOM = 8_000


def bounded(report: ev.EvaluationReport) -> ev.EvaluationReport:
    """The report, with optional parts dropped (and named in notes) until it encodes under the bound.

    The caps above keep ordinary reports far below it; what is left to chance is long class labels or
    column names, which are the user's data."""
    for part, what in _SHEDDABLE:
        if len(report.encode()) <= ev.MAX_REPORT_BYTES - _FIGURE_ROOM:
            break
        _shed(report, part)
        report.notes.append(f"{what} left out: the report would exceed {ev.MAX_REPORT_BYTES} bytes")
    return report


# --- numbers --------------------------------------------------------------------------------------------


def _downsample(n: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` points spread evenly over n, always keeping the first and the last."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def _num(value: Any) -> float:
    """A finite float with 6 significant digits (JSON has no NaN; the report stays small)."""
    f = float(value)
    return float(f"{f:.6g}") if math.isfinite(f) else 0.0


def _nums(values: Any) -> list[float]:
    return [_num(v) for v in values]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
