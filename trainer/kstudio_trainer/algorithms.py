"""The estimator allowlist: the only scikit-learn classes a spec can name.

A spec names an algorithm by its class name; we map it here to the class itself, so no spec can make the
trainer import or construct anything else. Parameters are checked with scikit-learn's own validation
before any data is read.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError

CLASSIFIERS: dict[str, type[BaseEstimator]] = {
    "LogisticRegression": LogisticRegression,
    "RandomForestClassifier": RandomForestClassifier,
    "GradientBoostingClassifier": GradientBoostingClassifier,
    "HistGradientBoostingClassifier": HistGradientBoostingClassifier,
    "DecisionTreeClassifier": DecisionTreeClassifier,
    "SVC": SVC,
    "KNeighborsClassifier": KNeighborsClassifier,
}
REGRESSORS: dict[str, type[BaseEstimator]] = {
    "LinearRegression": LinearRegression,
    "Ridge": Ridge,
    "Lasso": Lasso,
    "RandomForestRegressor": RandomForestRegressor,
    "GradientBoostingRegressor": GradientBoostingRegressor,
    "HistGradientBoostingRegressor": HistGradientBoostingRegressor,
    "DecisionTreeRegressor": DecisionTreeRegressor,
    "SVR": SVR,
    "KNeighborsRegressor": KNeighborsRegressor,
}
ALGORITHMS: dict[str, dict[str, type[BaseEstimator]]] = {
    "classification": CLASSIFIERS,
    "regression": REGRESSORS,
}
# Parameters a spec may not set: they would reach outside the estimator (callables, warm state) or are
# decided by the trainer itself.
FORBIDDEN_PARAMS = frozenset({"verbose", "warm_start", "callbacks", "memory"})


def algorithm_problems(task: str, name: str, params: dict[str, Any]) -> list[str]:
    """Why `name(**params)` cannot be used for `task` (empty when it can). Does not touch any data."""
    allowed = ALGORITHMS.get(task)
    if allowed is None:
        return []  # the task itself is reported by the spec validation
    cls = allowed.get(name)
    if cls is None:
        other = "regression" if task == "classification" else "classification"
        if name in ALGORITHMS[other]:
            return [f"algorithm {name!r} is for {other}, not {task}; use one of {', '.join(allowed)}"]
        return [f"unknown algorithm {name!r}; allowed for {task}: {', '.join(allowed)}"]
    return parameter_problems(cls, params, where="algorithm.params")


def parameter_problems(cls: type[BaseEstimator], params: dict[str, Any], where: str) -> list[str]:
    known = set(cls().get_params(deep=False))
    problems: list[str] = []
    unknown = sorted(set(params) - known)
    if unknown:
        problems.append(
            f"{where}: unknown parameter(s) {', '.join(repr(p) for p in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(known - FORBIDDEN_PARAMS))}"
        )
    forbidden = sorted(set(params) & FORBIDDEN_PARAMS & known)
    if forbidden:
        problems.append(f"{where}: parameter(s) {', '.join(forbidden)} cannot be set in a spec")
    if problems:
        return problems
    for key, value in params.items():
        try:
            cls(**{key: value})._validate_params()
        except (InvalidParameterError, ValueError, TypeError) as exc:
            problems.append(f"{where}.{key}: {exc}")
    return problems


def build_estimator(task: str, name: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    """The estimator for a validated spec; `random_state` defaults to the evaluation seed (reproducible)."""
    cls = ALGORITHMS[task][name]
    estimator = cls(**params)
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator
