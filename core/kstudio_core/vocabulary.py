"""What a training spec may name: algorithms (with each parameter's accepted values) and metrics.

Plain data, so the operator checks a spec without importing scikit-learn: `algorithms.json` beside this
module is generated from scikit-learn's own parameter constraints by `kstudio-dev vocabulary`, and
a unit test fails when it drifts from the installed scikit-learn. The trainer builds exactly these
estimators, so a spec can never make it import or construct anything else.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

CLASSIFICATION_METRICS: Final[tuple[str, ...]] = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
    "roc_auc_ovr",
    "log_loss",
)
REGRESSION_METRICS: Final[tuple[str, ...]] = ("rmse", "mae", "mse", "r2", "mape")
METRICS: Final[dict[str, tuple[str, ...]]] = {
    "classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
DEFAULT_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "classification": ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}
# Metrics where smaller is better (sweeps and promotion gates compare them the other way round).
LOWER_IS_BETTER: Final = frozenset({"rmse", "mae", "mse", "mape", "log_loss"})
# Parameters a spec may not set: they would reach outside the estimator (callables, warm state) or are
# decided by the trainer itself.
FORBIDDEN_PARAMS: Final = frozenset({"verbose", "warm_start", "callbacks", "memory"})

Constraint = dict[str, Any]


@cache
def _data() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("algorithms.json").read_text())  # type: ignore[no-any-return]


def algorithms(task: str) -> dict[str, dict[str, list[Constraint]]]:
    """{algorithm name: {parameter: [accepted alternatives]}} for a task ({} for an unknown task)."""
    return _data()["algorithms"].get(task, {})  # type: ignore[no-any-return]


def algorithm_names(task: str) -> tuple[str, ...]:
    return tuple(algorithms(task))


def sklearn_version() -> str:
    """The scikit-learn version the parameter data was generated from."""
    return str(_data()["sklearn"])


def algorithm_problems(
    task: str, name: str, params: dict[str, Any], where: str = "algorithm.params"
) -> list[str]:
    """Why `name(**params)` cannot be used for `task` (empty when it can). Touches no data."""
    allowed = algorithms(task)
    if not allowed:
        return []  # the task itself is reported by the spec validation
    if name not in allowed:
        other = "regression" if task == "classification" else "classification"
        if name in algorithms(other):
            return [f"algorithm {name!r} is for {other}, not {task}; use one of {', '.join(allowed)}"]
        return [f"unknown algorithm {name!r}; allowed for {task}: {', '.join(allowed)}"]
    return parameter_problems(task, name, params, where)


def parameter_problems(task: str, name: str, params: dict[str, Any], where: str) -> list[str]:
    """Unknown, forbidden or out-of-range parameters of an allowlisted algorithm, one line each."""
    known = algorithms(task)[name]
    problems: list[str] = []
    unknown = sorted(set(params) - set(known))
    if unknown:
        problems.append(
            f"{where}: unknown parameter(s) {', '.join(repr(p) for p in unknown)} for {name}; "
            f"known: {', '.join(sorted(set(known) - FORBIDDEN_PARAMS))}"
        )
    forbidden = sorted(set(params) & FORBIDDEN_PARAMS & set(known))
    if forbidden:
        problems.append(f"{where}: parameter(s) {', '.join(forbidden)} cannot be set in a spec")
    if problems:
        return problems
    for key, value in params.items():
        constraints = known[key]
        if constraints and not any(accepts(c, value) for c in constraints):
            problems.append(
                f"{where}.{key}: {value!r} is not accepted by {name}; "
                f"it must be {' or '.join(describe(c) for c in constraints if describe(c))}"
            )
    return problems


def metric_problems(task: str, names: list[str], where: str) -> list[str]:
    valid = METRICS.get(task)
    if valid is None:
        return []
    bad = [n for n in names if n not in valid]
    if not bad:
        return []
    other = [n for n in bad if n in METRICS["regression" if task == "classification" else "classification"]]
    hint = f" ({', '.join(other)} {'is' if len(other) == 1 else 'are'} for the other task)" if other else ""
    return [f"{where}: metric(s) {', '.join(bad)} not valid for {task}{hint}; choose from {', '.join(valid)}"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_interval(c: Constraint, value: float) -> bool:
    left, right, closed = c.get("left"), c.get("right"), c.get("closed", "both")
    if left is not None and (value < left or (value == left and closed not in ("left", "both"))):
        return False
    return not (right is not None and (value > right or (value == right and closed not in ("right", "both"))))


def accepts(c: Constraint, value: Any) -> bool:
    """Whether `value` (as it arrives from YAML/JSON) satisfies one constraint alternative."""
    kind = c.get("kind")
    if kind == "none":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "options":
        return isinstance(value, str | int | float | bool) and value in c.get("values", [])
    if kind == "integer":
        return _is_int(value) and _in_interval(c, value)
    if kind == "real":
        return _is_real(value) and _in_interval(c, value)
    if kind == "real_not_int":
        return isinstance(value, float) and _in_interval(c, value)
    if kind == "random_state":
        return value is None or (_is_int(value) and 0 <= value <= 2**32 - 1)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind in ("array", "array-like"):
        return isinstance(value, list)
    return False  # callables, estimators, sparse matrices...: nothing a spec can express


def describe(c: Constraint) -> str:
    kind = c.get("kind")
    if kind in ("integer", "real", "real_not_int"):
        lo, hi, closed = c.get("left"), c.get("right"), c.get("closed", "both")
        lb = "[" if closed in ("left", "both") else "("
        rb = "]" if closed in ("right", "both") else ")"
        what = "an integer" if kind == "integer" else "a number"
        return f"{what} in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
    if kind == "options":
        return "one of " + ", ".join(repr(v) for v in c.get("values", []))
    return {
        "none": "null",
        "boolean": "true/false",
        "random_state": "an integer seed or null",
        "string": "a string",
        "object": "a mapping",
        "array": "a list",
        "array-like": "a list",
    }.get(str(kind), "")
