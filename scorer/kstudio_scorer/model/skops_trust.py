"""skops with an explicit list of trusted scikit-learn types, without importing all of scikit-learn.

When `skops.io` is imported, its module `skops.io._trusted_types` builds the default trusted list by
calling `sklearn.utils.all_estimators()`, which imports every scikit-learn module (pytest, plotting and
datasets code included): about 1.2 s of CPU, a quarter of a scorer pod's start, spent on estimators no
model of ours contains. Before `skops.io` is first imported, `install()` registers that module with our
lists instead:

- scikit-learn: exactly the types a trainer-built pipeline holds (`SKLEARN_TYPES`: the pipeline frame of
  `kstudio_trainer.pipeline`, the algorithms of `kstudio_core.vocabulary` and the estimators inside them)
  plus skops' own list of internal loss/link/binning types. Any other estimator, even a public
  scikit-learn one skops would trust by default, is refused before anything is constructed;
- numpy dtypes, bit generators, builtins: computed as skops computes them (numpy is loaded anyway);
- ufuncs: none (our pipelines hold no functions; skops would trust every numpy and scipy.special ufunc).

So the trusted set is narrower than skops' default, never wider, and loading a model imports only the
scikit-learn modules its types live in. `tests/unit/test_skops_trust.py` checks these lists against the
installed skops and against every allowlisted algorithm, and `tests/unit/test_artifact_trust.py`
round-trips each algorithm through the loader.
"""

from __future__ import annotations

import sys
import types
from typing import Final

SKOPS_TRUST_MODULE: Final = "skops.io._trusted_types"

SKLEARN_TYPES: Final[tuple[str, ...]] = (
    # The pipeline frame kstudio_trainer.pipeline builds.
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    # What a fitted ColumnTransformer holds for "passthrough" columns. Its `func` is a child that skops
    # audits like any other (a function is never trusted: no ufuncs, no builtins).
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    # The algorithms of kstudio_core.vocabulary.
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    # Estimators fitted inside them: gradient boosting's initial estimator, label encoders.
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.preprocessing._label.LabelEncoder",
)

# skops' own SKLEARN_INTERNAL_TYPE_NAMES (0.16.0), as names: trusted by skops by default, data-only.
SKLEARN_INTERNAL_TYPES: Final[tuple[str, ...]] = (
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
)


def explicit_lists() -> dict[str, list[str]]:
    """The values of every list skops reads from `skops.io._trusted_types`, ours."""
    import numpy as np

    bit_generators = sorted(
        f"numpy.random.{name}"
        for name in dir(np.random)
        if isinstance(obj := getattr(np.random, name), type)
        and issubclass(obj, np.random.BitGenerator)
        and obj is not np.random.BitGenerator
    )
    dtypes = sorted(
        {name for dtype in np.sctypeDict.values() if (name := _type_name(dtype)).startswith("numpy")}
    )
    return {
        "PRIMITIVE_TYPE_NAMES": [f"builtins.{t.__name__}" for t in (int, float, str, bool)],
        "CONTAINER_TYPE_NAMES": [f"builtins.{t.__name__}" for t in (list, set, map, tuple)],
        "SKLEARN_ESTIMATOR_TYPE_NAMES": list(SKLEARN_TYPES),
        "SKLEARN_INTERNAL_TYPE_NAMES": list(SKLEARN_INTERNAL_TYPES),
        "SCIPY_UFUNC_TYPE_NAMES": [],
        "NUMPY_UFUNC_TYPE_NAMES": [],
        "NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES": bit_generators,
        "NUMPY_DTYPE_TYPE_NAMES": dtypes,
    }


def _type_name(t: type) -> str:
    # As skops names a type (skops.io._utils.get_type_name: pickle.whichmodule, i.e. __module__).
    return f"{t.__module__}.{t.__name__}"


def install() -> None:
    """Make skops trust exactly `explicit_lists()`. Call before anything imports `skops.io`.

    If `skops.io` was imported already in this process (tests import the trainer's writer too), its lists
    are narrowed in place: skops' node classes read them when they load, so the same lists apply.
    """
    lists = explicit_lists()
    existing = sys.modules.get(SKOPS_TRUST_MODULE)
    if existing is None:
        module = types.ModuleType(SKOPS_TRUST_MODULE, "kstudio's explicit trusted types for skops")
        for name, values in lists.items():
            setattr(module, name, values)
        sys.modules[SKOPS_TRUST_MODULE] = module
        return
    for name, values in lists.items():
        getattr(existing, name)[:] = values
