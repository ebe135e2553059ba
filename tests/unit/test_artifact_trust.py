"""Every estimator the trainer may build round-trips through the .ilearner with the fixed trusted list.

This keeps artifact.TRUSTED_TYPES honest: if a scikit-learn upgrade or a new allowlisted estimator needs
another type, this fails here instead of in a serving pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kstudio_core.ilearner import IlearnerManifest
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_trainer.algorithms import CLASSIFIERS, REGRESSORS
from kstudio_trainer.artifact_writer import write_ilearner
from kstudio_trainer.data import prepare
from kstudio_trainer.pipeline import build_pipeline
from kstudio_trainer.spec import parse_snapshot

# Keep fits small: this is about serialization, not accuracy.
SMALL: dict[str, dict[str, Any]] = {
    "RandomForestClassifier": {"n_estimators": 3},
    "RandomForestRegressor": {"n_estimators": 3},
    "GradientBoostingClassifier": {"n_estimators": 3},
    "GradientBoostingRegressor": {"n_estimators": 3},
    "HistGradientBoostingClassifier": {"max_iter": 3},
    "HistGradientBoostingRegressor": {"max_iter": 3},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 90
    f = pd.DataFrame(
        {
            "length": rng.normal(5, 1, n),
            "count": rng.integers(0, 9, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "flag": rng.choice([True, False], n),
        }
    )
    f.loc[::11, "length"] = np.nan
    f.loc[::13, "colour"] = None
    f["kind"] = np.where(
        f["length"].fillna(5) + f["count"] / 4 > 6.2, "tall", np.where(f["count"] > 4, "mid", "low")
    )
    f["size"] = f["length"].fillna(5) * 3 + f["count"] + rng.normal(0, 0.1, n)
    return f


def _spec(task: str, name: str, label: str, categorical: str = "onehot", **preprocessing: str) -> Any:
    return parse_snapshot(
        {
            "dataset": {"uri": "unused.csv"},
            "label": label,
            "features": ["length", "count", "colour", "flag"],
            "task": task,
            "preprocessing": {"categorical": categorical, **preprocessing},
            "algorithm": {"name": name, "params": SMALL.get(name, {})},
        }
    )


@pytest.mark.parametrize(
    ("task", "name", "label"),
    [("classification", n, "kind") for n in CLASSIFIERS] + [("regression", n, "size") for n in REGRESSORS],
)
def test_allowlisted_estimator_round_trips_with_trusted_types(
    tmp_path: Path, frame: pd.DataFrame, task: str, name: str, label: str
) -> None:
    spec = _spec(task, name, label)
    data = prepare(frame, spec)
    pipeline = build_pipeline(spec, data.plan).fit(data.x, data.y)
    manifest = IlearnerManifest(task=task, label=label, inputSchema=data.schema)
    digest = write_ilearner(tmp_path / "m.ilearner", pipeline, manifest)
    loaded = load_ilearner(tmp_path / "m.ilearner", digest.sha256)
    np.testing.assert_array_equal(loaded.pipeline.predict(data.x), pipeline.predict(data.x))


def test_ordinal_encoding_round_trips(tmp_path: Path, frame: pd.DataFrame) -> None:
    spec = _spec("classification", "HistGradientBoostingClassifier", "kind", categorical="ordinal")
    data = prepare(frame, spec)
    pipeline = build_pipeline(spec, data.plan).fit(data.x, data.y)
    digest = write_ilearner(
        tmp_path / "m.ilearner",
        pipeline,
        IlearnerManifest(task="classification", label="kind", inputSchema=data.schema),
    )
    loaded = load_ilearner(tmp_path / "m.ilearner", digest.sha256)
    np.testing.assert_array_equal(loaded.pipeline.predict(data.x), pipeline.predict(data.x))


@pytest.mark.parametrize(
    ("impute", "scale"), [("none", "none"), ("mean", "minmax"), ("most_frequent", "robust")]
)
def test_every_preprocessing_round_trips(
    tmp_path: Path, frame: pd.DataFrame, impute: str, scale: str
) -> None:
    """ "none"/"none" leaves numeric columns as "passthrough", fitted as a FunctionTransformer."""
    spec = _spec("regression", "HistGradientBoostingRegressor", "size", impute=impute, scale=scale)
    data = prepare(frame, spec)
    pipeline = build_pipeline(spec, data.plan).fit(data.x, data.y)
    digest = write_ilearner(
        tmp_path / "m.ilearner",
        pipeline,
        IlearnerManifest(task="regression", label="size", inputSchema=data.schema),
    )
    loaded = load_ilearner(tmp_path / "m.ilearner", digest.sha256)
    np.testing.assert_array_equal(loaded.pipeline.predict(data.x), pipeline.predict(data.x))


def test_schema_types_follow_the_data(frame: pd.DataFrame) -> None:
    data = prepare(frame, _spec("classification", "LogisticRegression", "kind"))
    assert [(c.name, c.type) for c in data.schema] == [
        ("length", "number"),
        ("count", "integer"),
        ("colour", "string"),
        ("flag", "boolean"),
    ]
    assert data.schema[2].categories == ["blue", "green", "red"]
    assert data.plan.numeric == ["length", "count"] and data.plan.categorical == ["colour", "flag"]
