"""validate_snapshot: every problem found without data, worded so a user can fix the spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kstudio_devtools.examples import diabetes_snapshot, penguins_snapshot
from kstudio_trainer.errors import SpecError
from kstudio_trainer.spec import parse_snapshot, validate_snapshot

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["penguins", "diabetes"])
def test_example_snapshots_are_valid(name: str) -> None:
    doc = json.loads((REPO / f"examples/experiments/{name}.snapshot.json").read_text())
    assert validate_snapshot(doc) == []


def test_defaults_fill_in() -> None:
    spec = parse_snapshot(
        {
            "dataset": {"uri": "s3://datasets/x.csv"},
            "label": "y",
            "task": "regression",
            "algorithm": {"name": "Ridge"},
        }
    )
    assert spec.evaluation.test_fraction == 0.2 and spec.evaluation.seed == 42
    assert spec.metric_names == ["rmse", "mae", "r2"]
    assert spec.preprocessing.impute == "median" and spec.preprocessing.categorical == "onehot"


def test_operator_fields_are_ignored() -> None:
    doc = penguins_snapshot(schedule="0 3 * * *", resources={"cpu": "1"}, historyLimit=5)
    assert validate_snapshot(doc) == []


def test_sweep_metric_defaults_to_first_evaluation_metric() -> None:
    spec = parse_snapshot(penguins_snapshot(sweep={"params": {"max_depth": [2, 4]}}))
    assert spec.sweep_metric == "accuracy"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"task": "clustering"}, "task: Input should be 'classification', 'regression' or 'transform'"),
        ({"dataset": {"uri": "https://example.com/x.csv"}}, "only s3:// URIs or local paths"),
        ({"dataset": {"uri": "s3://d/x.csv", "format": "xlsx"}}, "dataset.format"),
        ({"features": ["species", "island"]}, "the label 'species' cannot also be a feature"),
        ({"features": ["island", "island"]}, "duplicate column(s) island"),
        ({"features": []}, "must name at least one column"),
        ({"algorithm": {"name": "os.system"}}, "unknown algorithm 'os.system'"),
        ({"algorithm": {"name": "SVC", "params": {"kernel": "quantum"}}}, "algorithm.params.kernel"),
        ({"algorithm": {"name": "LogisticRegression", "params": {"verbose": 1}}}, "verbose cannot be set"),
        ({"evaluation": {"testFraction": 1.5}}, "evaluation.testFraction"),
        ({"evaluation": {"metrics": ["r2"]}}, "metric(s) r2 not valid for classification"),
        ({"sweep": {"params": {"max_depth": []}}}, "no values to try for max_depth"),
        ({"sweep": {"params": {"max_depth": [1, "deep"]}}}, "sweep.params.max_depth"),
        ({"sweep": {"params": {"max_depth": [1, 2]}, "folds": 1}}, "sweep.folds"),
        (
            {"sweep": {"params": {"max_depth": list(range(1, 20)), "min_samples_leaf": list(range(1, 20))}}},
            "361 combinations, more than the 256 allowed",
        ),
        (
            {"preprocessing": {"numericColumns": ["a"], "categoricalColumns": ["a"]}},
            "declared both numeric and",
        ),
        ({"preprocessing": {"scale": "log"}}, "preprocessing.scale"),
    ],
)
def test_problem_is_named(change: dict[str, Any], problem: str) -> None:
    problems = validate_snapshot(penguins_snapshot(**change))
    assert any(problem in p for p in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    doc = penguins_snapshot(
        algorithm={"name": "RandomForestClassifier", "params": {"n_trees": 3}},
        evaluation={"metrics": ["mae"]},
    )
    with pytest.raises(SpecError) as err:
        parse_snapshot(doc)
    assert len(err.value.problems) == 2
    assert "n_trees" in str(err.value) and "mae" in str(err.value)


def test_not_an_object() -> None:
    assert validate_snapshot(["a"]) == ["snapshot must be a JSON object, got list"]


def test_regression_spec_with_classifier_metric_and_algorithm() -> None:
    problems = validate_snapshot(
        diabetes_snapshot(algorithm={"name": "SVC"}, evaluation={"metrics": ["accuracy"]})
    )
    assert len(problems) == 2
