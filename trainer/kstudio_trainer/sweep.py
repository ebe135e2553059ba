"""Grid search with cross-validation on the training split; every trial is recorded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from kstudio_trainer.errors import DataError, InputError
from kstudio_trainer.metrics import SWEEP_SCORERS
from kstudio_trainer.pipeline import MODEL_STEP
from kstudio_trainer.spec import ExperimentSnapshot

log = logging.getLogger("kstudio.train")


@dataclass(frozen=True)
class SweepOutcome:
    pipeline: Pipeline  # the best candidate, refitted on the whole training split
    best_params: dict[str, Any]
    metric: str
    best_score: float
    trials: list[dict[str, Any]]


def run_sweep(pipeline: Pipeline, spec: ExperimentSnapshot, x: pd.DataFrame, y: pd.Series) -> SweepOutcome:
    assert spec.sweep is not None
    metric = spec.sweep_metric
    folds = spec.sweep.folds
    scorer = SWEEP_SCORERS[metric]
    if scorer == "roc_auc_ovr" and y.nunique() == 2:
        scorer = "roc_auc"  # binary: scores from predict_proba or decision_function
    negated = scorer.startswith("neg_")
    if spec.task == "classification":
        smallest = int(y.value_counts().min())
        if smallest < folds:
            raise DataError(
                f"sweep.folds is {folds} but the rarest class in the training split has {smallest} row(s); "
                "lower sweep.folds or add data"
            )
        cv: Any = StratifiedKFold(n_splits=folds, shuffle=True, random_state=spec.evaluation.seed)
    else:
        if len(y) < 2 * folds:
            raise DataError(f"sweep.folds is {folds} but the training split has only {len(y)} rows")
        cv = KFold(n_splits=folds, shuffle=True, random_state=spec.evaluation.seed)
    grid = {f"{MODEL_STEP}__{k}": v for k, v in spec.sweep.params.items()}
    n = int(np.prod([len(v) for v in grid.values()]))
    log.info("sweep: %d candidate(s) x %d folds, best by %s", n, folds, metric)
    search = GridSearchCV(pipeline, grid, scoring=scorer, cv=cv, refit=True, error_score="raise", n_jobs=1)
    try:
        search.fit(x, y)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"sweep failed with metric {metric}: {exc}") from exc
    results = search.cv_results_
    trials: list[dict[str, Any]] = []
    sign = -1.0 if negated else 1.0
    for i, params in enumerate(results["params"]):
        trial = {
            "params": {k.removeprefix(f"{MODEL_STEP}__"): _plain(v) for k, v in params.items()},
            "metric": metric,
            "meanScore": round(sign * float(results["mean_test_score"][i]), 6),
            "stdScore": round(float(results["std_test_score"][i]), 6),
            "foldScores": [round(sign * float(results[f"split{f}_test_score"][i]), 6) for f in range(folds)],
            "rank": int(results["rank_test_score"][i]),
            "fitSeconds": round(float(results["mean_fit_time"][i]), 4),
        }
        trials.append(trial)
        log.info("sweep trial %d/%d %s: %s=%.4f", i + 1, n, trial["params"], metric, trial["meanScore"])
    best = {k.removeprefix(f"{MODEL_STEP}__"): _plain(v) for k, v in search.best_params_.items()}
    best_score = round(sign * float(search.best_score_), 6)
    log.info("sweep best %s: %s=%.4f (cross-validated)", best, metric, best_score)
    return SweepOutcome(search.best_estimator_, best, metric, best_score, trials)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
