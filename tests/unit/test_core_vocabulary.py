"""The vocabulary (algorithms.json) is scikit-learn's own parameter constraints as data: generated from the
installed scikit-learn, and judging values exactly as scikit-learn's validation does."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.utils._param_validation import InvalidParameterError

from kstudio_core import vocabulary
from kstudio_devtools import vocabulary_gen
from kstudio_trainer.algorithms import ALGORITHMS

# Values a spec could carry (YAML scalars, lists, maps), tried on every parameter of every algorithm.
PROBES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2,
    7,
    1000,
    0.0,
    0.5,
    1.0,
    2.5,
    -0.5,
    "auto",
    "sqrt",
    "l2",
    "rbf",
    "quantum",
    "",
    [1, 2],
    {"a": 1},
]


def test_algorithms_json_is_generated_from_the_installed_scikit_learn() -> None:
    assert vocabulary_gen.main(["--check"]) == 0, "run: kstudio-dev vocabulary"


def test_vocabulary_names_exactly_the_trainers_estimators() -> None:
    for task, classes in ALGORITHMS.items():
        assert set(vocabulary.algorithm_names(task)) == set(classes)


def _sklearn_accepts(cls: Any, param: str, value: Any) -> bool:
    try:
        cls(**{param: value})._validate_params()
    except (InvalidParameterError, ValueError, TypeError):
        return False
    return True


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_vocabulary_judges_values_as_scikit_learn_does(task: str) -> None:
    disagreements = []
    for name, cls in ALGORITHMS[task].items():
        for param in vocabulary.algorithms(task)[name]:
            if param in vocabulary.FORBIDDEN_PARAMS:
                continue
            for value in PROBES:
                ours = not vocabulary.parameter_problems(task, name, {param: value}, "p")
                theirs = _sklearn_accepts(cls, param, value)
                # We may be stricter, never looser: YAML true/false is no number (Python's bool is an int
                # to scikit-learn), and lists/maps for array-likes are refused.
                if ours and not theirs:
                    disagreements.append(f"{name}.{param}={value!r}: we accept, scikit-learn refuses")
                if theirs and not ours and not isinstance(value, list | dict | bool):
                    disagreements.append(f"{name}.{param}={value!r}: scikit-learn accepts, we refuse")
    assert disagreements == []


def test_a_refused_value_names_the_parameter_and_what_it_must_be() -> None:
    problems = vocabulary.algorithm_problems("classification", "RandomForestClassifier", {"n_estimators": 0})
    assert problems == [
        "algorithm.params.n_estimators: 0 is not accepted by RandomForestClassifier; "
        "it must be an integer in [1, inf)"
    ]
