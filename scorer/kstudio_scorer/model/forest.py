"""Same results, less overhead: direct evaluation of fitted forests.

scikit-learn's forest `predict_proba`/`predict` dispatch every tree through joblib even with n_jobs=1;
for the few rows of an online request that dispatch costs ~25 us per tree, i.e. most of the time of a
100-tree forest. Here the trees are summed in a plain loop, in the same order and with the same float
arithmetic as scikit-learn's sequential path (`_accumulate_prediction`), so outputs are bit-identical
(tests/unit/test_scorer_forest.py checks this). Anything not recognised goes through scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_FOREST_CLASSIFIERS = frozenset({"RandomForestClassifier", "ExtraTreesClassifier"})
_FOREST_REGRESSORS = frozenset({"RandomForestRegressor", "ExtraTreesRegressor"})


def _split(pipeline: Any) -> tuple[Any | None, Any]:
    steps = getattr(pipeline, "steps", None)
    if steps:
        return (pipeline[:-1] if len(steps) > 1 else None), steps[-1][1]
    return None, pipeline


def _forest_input(forest: Any, x: Any) -> npt.NDArray[np.float32] | None:
    """Validated float32 C-contiguous input, or None when scikit-learn must take it."""
    if getattr(forest, "n_outputs_", None) != 1 or not hasattr(forest, "estimators_"):
        return None
    if hasattr(x, "iloc") or hasattr(
        x, "tocsr"
    ):  # DataFrame or sparse: let scikit-learn validate names/format
        return None
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != forest.n_features_in_ or arr.dtype.kind not in "biuf":
        return None
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all() and not _allows_nan(forest):
        return None  # scikit-learn raises its usual error
    return arr


def _allows_nan(forest: Any) -> bool:
    return bool(forest.__sklearn_tags__().input_tags.allow_nan)


class ForestPredictor:
    """Wraps any fitted pipeline: a final forest's trees are summed here, the rest is scikit-learn's."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.head, self.final = _split(pipeline)
        name = type(self.final).__name__
        self.kind = (
            "classifier"
            if name in _FOREST_CLASSIFIERS
            else "regressor"
            if name in _FOREST_REGRESSORS
            else None
        )

    @property
    def enabled(self) -> bool:
        return self.kind is not None

    def _transformed(self, x: Any) -> npt.NDArray[np.float32] | None:
        xt = self.head.transform(x) if self.head is not None else x
        return _forest_input(self.final, xt)

    def predict_proba(self, x: Any) -> npt.NDArray[np.float64]:
        if self.kind == "classifier":
            xt = self._transformed(x)
            if xt is not None:
                trees = self.final.estimators_
                total = np.zeros((xt.shape[0], self.final.n_classes_), dtype=np.float64)
                for tree in trees:
                    total += tree.predict_proba(xt, check_input=False)
                total /= len(trees)
                return total
        result: npt.NDArray[np.float64] = self.pipeline.predict_proba(x)
        return result

    def predict(self, x: Any) -> npt.NDArray[Any]:
        if self.kind == "regressor":
            xt = self._transformed(x)
            if xt is not None:
                trees = self.final.estimators_
                total = np.zeros(xt.shape[0], dtype=np.float64)
                for tree in trees:
                    total += tree.predict(xt, check_input=False)
                total /= len(trees)
                return total
        result: npt.NDArray[Any] = self.pipeline.predict(x)
        return result
