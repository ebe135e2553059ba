"""Transform-only experiments: the spec's rules on every side, the trainer's fitted preprocessing, its
manifest."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.dummy import DummyClassifier

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest, read_manifest
from kstudio_core.snapshot import validate_snapshot
from kstudio_operator.resources.experiment import ExperimentSpec
from kstudio_trainer.artifact_writer import write_ilearner
from kstudio_trainer.errors import DataError
from kstudio_trainer.spec import parse_snapshot
from kstudio_trainer.transform import train_transform

TRANSFORM: dict[str, Any] = {"dataset": {"uri": "s3://datasets/penguins.csv"}, "task": "transform"}


def frame(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "length": rng.normal(44, 5, n),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "male": rng.random(n) > 0.5,
            "species": rng.choice(["Adelie", "Gentoo"], n),
        }
    )


def test_a_transform_has_no_label_algorithm_sweep_or_metrics_and_a_model_needs_both() -> None:
    assert validate_snapshot(TRANSFORM) == []
    extra = TRANSFORM | {
        "label": "species",
        "algorithm": {"name": "Ridge"},
        "evaluation": {"metrics": ["r2"]},
    }
    problems = validate_snapshot(extra)
    assert [p.split(":")[0] for p in problems] == ["label", "algorithm", "evaluation.metrics"], problems
    assert "predicts nothing" in problems[0]
    missing = validate_snapshot(TRANSFORM | {"task": "classification"})
    assert missing == [
        "label: required field is missing (a classification model predicts it)",
        "algorithm: required field is missing (the estimator of the classification)",
    ]


def test_the_operator_refuses_the_same_specs() -> None:
    ExperimentSpec.model_validate(TRANSFORM | {"features": ["length", "island"]})
    with pytest.raises(
        ValidationError, match="a transform fits preprocessing only: leave out label, algorithm"
    ):
        ExperimentSpec.model_validate(TRANSFORM | {"label": "x", "algorithm": {"name": "Ridge"}})
    with pytest.raises(ValidationError, match="regression needs label and algorithm"):
        ExperimentSpec.model_validate(TRANSFORM | {"task": "regression"})
    assert "algorithm" not in ExperimentSpec.model_validate(TRANSFORM).snapshot()


def test_the_trainer_fits_the_preprocessing_of_the_selected_columns_and_names_its_output(
    tmp_path: Path,
) -> None:
    snapshot = TRANSFORM | {"features": ["length", "island", "male"]}
    outcome = train_transform(frame(), parse_snapshot(snapshot), snapshot, 3)
    names = outcome.manifest.outputColumns
    assert names == ["length", "island_Biscoe", "island_Dream", "island_Torgersen", "male_False", "male_True"]
    assert outcome.manifest.task == "transform" and outcome.manifest.label is None and outcome.metrics == {}
    out = outcome.pipeline.transform(frame().head(5)[["length", "island", "male"]])
    assert out.shape == (5, len(names))
    digest = write_ilearner(tmp_path / "t.ilearner", outcome.pipeline, outcome.manifest)  # trusted types only
    assert read_manifest(tmp_path / "t.ilearner", digest.sha256).outputColumns == names


def test_output_names_that_would_collide_keep_their_transformer_prefix() -> None:
    data = frame().assign(island_Biscoe=1.0)  # a numeric column named like a one-hot output
    snapshot = TRANSFORM | {"features": ["island_Biscoe", "island"]}
    outcome = train_transform(data, parse_snapshot(snapshot), snapshot, 1)
    assert outcome.manifest.outputColumns[:2] == ["numeric__island_Biscoe", "categorical__island_Biscoe"]


def test_a_transform_of_unknown_columns_is_refused_naming_them() -> None:
    snapshot = TRANSFORM | {"features": ["length", "beak"]}
    with pytest.raises(DataError, match=r"unknown feature column.*'beak'"):
        train_transform(frame(), parse_snapshot(snapshot), snapshot, 1)


def test_a_transform_manifest_names_its_output_and_a_model_its_label() -> None:
    schema = [ColumnSpec(name="x", type="number")]
    with pytest.raises(ValidationError, match="names the columns it answers with"):
        IlearnerManifest(task="transform", inputSchema=schema)
    with pytest.raises(ValidationError, match="a regression model names its label"):
        IlearnerManifest(task="regression", inputSchema=schema)


def test_a_model_manifest_is_written_as_before_transforms_existed(tmp_path: Path) -> None:
    # A classification or regression model's manifest.json has no outputColumns key (nor a null label): a
    # scorer of a release before transforms (its manifest forbids unknown keys) still reads the models a
    # new trainer writes, as during an upgrade.
    manifest = IlearnerManifest(
        task="classification", label="y", inputSchema=[ColumnSpec(name="x", type="number")], classes=[0, 1]
    )
    pipeline = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    write_ilearner(tmp_path / "m.ilearner", pipeline, manifest)
    with zipfile.ZipFile(tmp_path / "m.ilearner") as zf:
        written = json.loads(zf.read("manifest.json"))
    assert "outputColumns" not in written and written["label"] == "y"
    transform = IlearnerManifest(
        task="transform", inputSchema=[ColumnSpec(name="x", type="number")], outputColumns=["x"]
    )
    write_ilearner(tmp_path / "t.ilearner", pipeline, transform)
    with zipfile.ZipFile(tmp_path / "t.ilearner") as zf:
        written = json.loads(zf.read("manifest.json"))
    assert written["outputColumns"] == ["x"] and "label" not in written
