"""The Experiment/TrainedModel models: what they accept, what they refuse (naming the field), and that they
agree with the trainer's allowlists."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import ValidationError

from kstudio_core.snapshot import validate_snapshot
from kstudio_operator.decisions.experiment import parse_spec
from kstudio_operator.resources import ExperimentSpec, TrainedModelSpec
from kstudio_operator.resources.experiment import (
    CLASSIFICATION_METRICS,
    CLASSIFIERS,
    REGRESSION_METRICS,
    REGRESSORS,
    AlgorithmName,
    MetricName,
)
from kstudio_trainer import algorithms, metrics

REPO = Path(__file__).resolve().parents[2]


def penguins() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())
    return dict(doc["spec"])


def test_allowlists_match_the_trainer() -> None:
    assert set(CLASSIFIERS) == set(algorithms.CLASSIFIERS)
    assert set(REGRESSORS) == set(algorithms.REGRESSORS)
    assert set(CLASSIFICATION_METRICS) == set(metrics.METRICS["classification"])
    assert set(REGRESSION_METRICS) == set(metrics.METRICS["regression"])
    # the static types the CRD enums come from name exactly the trainer's allowlists
    assert set(get_args(AlgorithmName)) == set(algorithms.CLASSIFIERS) | set(algorithms.REGRESSORS)
    assert set(get_args(MetricName)) == set(metrics.METRICS["classification"]) | set(
        metrics.METRICS["regression"]
    )


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(REPO)
        for p in [*(REPO / "examples").rglob("*.yaml"), *(REPO / "crds" / "samples").glob("*.yaml")]
    ),
)
def test_examples_and_samples_parse(path: Path) -> None:
    from kstudio_operator.resources import ALL_KINDS

    doc = yaml.safe_load((REPO / path).read_text())
    kind = next(k for k in ALL_KINDS if k.kind == doc["kind"])
    kind.spec.model_validate(doc["spec"])


def test_snapshot_is_what_the_trainer_accepts() -> None:
    spec = ExperimentSpec.model_validate(penguins())
    snapshot = spec.snapshot()
    assert set(snapshot) <= {
        "dataset",
        "label",
        "features",
        "task",
        "preprocessing",
        "algorithm",
        "sweep",
        "evaluation",
    }
    assert snapshot["evaluation"] == {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy", "f1_macro"]}
    assert validate_snapshot(snapshot) == []


def test_regressor_for_classification_is_refused_naming_the_algorithm() -> None:
    raw = penguins() | {"algorithm": {"name": "Ridge"}}
    with pytest.raises(ValidationError, match="algorithm Ridge does not do classification"):
        ExperimentSpec.model_validate(raw)


def test_label_among_features_is_refused() -> None:
    raw = penguins() | {"features": ["species", "island"]}
    with pytest.raises(ValidationError, match="label 'species' must not be one of the features"):
        ExperimentSpec.model_validate(raw)


def test_parse_spec_names_each_bad_field() -> None:
    raw = penguins() | {"evaluation": {"testFraction": 0.9}, "dataset": {"uri": "http://x/y.csv"}}
    spec, problems = parse_spec(raw)
    assert spec is None
    text = "; ".join(problems)
    assert "spec.evaluation.testFraction" in text and "spec.dataset.uri" in text


def test_parse_spec_uses_the_trainers_parameter_checks() -> None:
    raw = penguins() | {"algorithm": {"name": "RandomForestClassifier", "params": {"n_estimatorz": 5}}}
    spec, problems = parse_spec(raw)
    assert spec is None and any("n_estimatorz" in p for p in problems), problems


def test_parse_spec_refuses_a_bad_cron() -> None:
    spec, problems = parse_spec(penguins() | {"schedule": "61 * * * *"})
    assert spec is None and problems == ["spec.schedule: '61 * * * *' is not a valid cron expression"]


def test_trainedmodel_digest_must_be_64_hex() -> None:
    with pytest.raises(ValidationError, match="sha256"):
        TrainedModelSpec.model_validate({"artifact": {"uri": "s3://models/a.ilearner", "sha256": "abc"}})
    ok = TrainedModelSpec.model_validate({"artifact": {"uri": "s3://models/a.ilearner", "sha256": "a" * 64}})
    assert ok.artifact_deletion_policy == "Retain"
