"""Evaluation metrics by task, computed on the held-out test split; their sweep scorer names."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

from kstudio_core import vocabulary

log = logging.getLogger("kstudio.train")

# The metric names, defaults and directions are part of the spec contract: kstudio_core.vocabulary.
METRICS = vocabulary.METRICS
DEFAULT_METRICS = vocabulary.DEFAULT_METRICS
LOWER_IS_BETTER = vocabulary.LOWER_IS_BETTER

# sklearn scorer used by GridSearchCV for each metric; values of "neg_*" scorers are negated back.
SWEEP_SCORERS: dict[str, str] = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "f1_macro": "f1_macro",
    "f1_weighted": "f1_weighted",
    "roc_auc": "roc_auc_ovr",
    "roc_auc_ovr": "roc_auc_ovr",
    "log_loss": "neg_log_loss",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "mse": "neg_mean_squared_error",
    "r2": "r2",
    "mape": "neg_mean_absolute_percentage_error",
}


def evaluate(task: str, names: list[str], pipeline: Any, x_test: Any, y_test: Any) -> dict[str, float]:
    """Compute each named metric on the test split. Metrics undefined here are logged and omitted."""
    y_pred = pipeline.predict(x_test)
    out: dict[str, float] = {}
    for name in names:
        compute = _CLASSIFICATION.get(name) if task == "classification" else _REGRESSION.get(name)
        if compute is None:
            continue
        try:
            value = compute(pipeline, x_test, y_test, y_pred)
        except _Undefined as why:
            log.info("metric %s not reported: %s", name, why)
            continue
        if not math.isfinite(value):
            log.info("metric %s not reported: not finite (%s)", name, value)
            continue
        out[name] = round(float(value), 6)
    return out


class _Undefined(Exception):
    pass


def _roc_auc(pipeline: Any, x: Any, y: Any, _pred: Any) -> float:
    classes = list(pipeline.classes_)
    present = set(np.unique(y))
    if len(present) < 2:
        raise _Undefined("the test split holds a single class")
    if len(classes) == 2:
        if hasattr(pipeline, "predict_proba"):
            scores = pipeline.predict_proba(x)[:, 1]
        elif hasattr(pipeline, "decision_function"):
            scores = pipeline.decision_function(x)
        else:
            raise _Undefined("the model gives neither probabilities nor decision scores")
        return float(skm.roc_auc_score(y, scores))
    if not hasattr(pipeline, "predict_proba"):
        raise _Undefined("multiclass ROC AUC needs probabilities, which this model does not give")
    if present != set(classes):
        raise _Undefined("the test split does not hold every class")
    return float(skm.roc_auc_score(y, pipeline.predict_proba(x), multi_class="ovr", labels=classes))


def _log_loss(pipeline: Any, x: Any, y: Any, _pred: Any) -> float:
    if not hasattr(pipeline, "predict_proba"):
        raise _Undefined("the model gives no probabilities")
    return float(skm.log_loss(y, pipeline.predict_proba(x), labels=list(pipeline.classes_)))


def _zero(fn: Callable[..., Any], average: str) -> Callable[[Any, Any, Any, Any], float]:
    return lambda _p, _x, y, pred: float(fn(y, pred, average=average, zero_division=0))


_CLASSIFICATION: dict[str, Callable[[Any, Any, Any, Any], float]] = {
    "accuracy": lambda _p, _x, y, pred: float(skm.accuracy_score(y, pred)),
    "balanced_accuracy": lambda _p, _x, y, pred: float(skm.balanced_accuracy_score(y, pred)),
    "precision_macro": _zero(skm.precision_score, "macro"),
    "recall_macro": _zero(skm.recall_score, "macro"),
    "f1_macro": _zero(skm.f1_score, "macro"),
    "f1_weighted": _zero(skm.f1_score, "weighted"),
    "roc_auc": _roc_auc,
    "roc_auc_ovr": _roc_auc,
    "log_loss": _log_loss,
}
_REGRESSION: dict[str, Callable[[Any, Any, Any, Any], float]] = {
    "rmse": lambda _p, _x, y, pred: float(skm.root_mean_squared_error(y, pred)),
    "mae": lambda _p, _x, y, pred: float(skm.mean_absolute_error(y, pred)),
    "mse": lambda _p, _x, y, pred: float(skm.mean_squared_error(y, pred)),
    "r2": lambda _p, _x, y, pred: float(skm.r2_score(y, pred)),
    "mape": lambda _p, _x, y, pred: float(skm.mean_absolute_percentage_error(y, pred)),
}
