"""The explicit trusted list the scorer gives skops: as strict as skops' defaults or stricter, complete for
every algorithm the trainer builds, and loading a model imports only what the model needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io as skops_io
from sklearn.naive_bayes import GaussianNB

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest, UntrustedContentError, write_container
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_scorer.model.skops_trust import SKLEARN_TYPES, explicit_lists
from kstudio_trainer import pipeline as trainer_pipeline
from kstudio_trainer.algorithms import CLASSIFIERS, REGRESSORS
from kstudio_trainer.artifact_writer import write_ilearner

SKOPS_DEFAULTS = """
import json, skops.io._trusted_types as t
print(json.dumps({n: v for n, v in vars(t).items() if n.endswith("_NAMES")}))
"""


def _type_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def test_lists_match_skops_own_except_estimators_and_ufuncs() -> None:
    """A skops upgrade that adds or changes a default list fails here, not in a serving pod."""
    out = subprocess.run([sys.executable, "-c", SKOPS_DEFAULTS], capture_output=True, text=True, check=True)
    skops_lists: dict[str, list[str]] = json.loads(out.stdout)
    ours = explicit_lists()
    assert set(ours) == set(skops_lists)
    for name in ours:
        if name in ("SKLEARN_ESTIMATOR_TYPE_NAMES", "SCIPY_UFUNC_TYPE_NAMES", "NUMPY_UFUNC_TYPE_NAMES"):
            # Narrower than skops' (never wider): only what our pipelines hold.
            assert set(ours[name]) <= set(skops_lists[name]), name
        else:
            assert sorted(ours[name]) == sorted(skops_lists[name]), name
    assert ours["SCIPY_UFUNC_TYPE_NAMES"] == [] and ours["NUMPY_UFUNC_TYPE_NAMES"] == []


def test_every_allowlisted_algorithm_and_preprocessing_step_is_trusted() -> None:
    frame = [
        trainer_pipeline.Pipeline,
        trainer_pipeline.ColumnTransformer,
        trainer_pipeline.SimpleImputer,
        trainer_pipeline.OneHotEncoder,
        trainer_pipeline.OrdinalEncoder,
        *trainer_pipeline._SCALERS.values(),
    ]
    estimators = [*CLASSIFIERS.values(), *REGRESSORS.values()]
    missing = sorted(_type_path(c) for c in frame + estimators if _type_path(c) not in SKLEARN_TYPES)
    assert missing == []


def test_public_estimator_outside_the_list_is_refused_though_skops_would_trust_it(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 2))
    model = GaussianNB().fit(x, (x[:, 0] > 0).astype(int))
    payload = skops_io.dumps(model)
    manifest = IlearnerManifest(
        task="classification", label="y", inputSchema=[ColumnSpec(name="a", type="number")]
    )
    digest = write_container(tmp_path / "nb.ilearner", manifest, payload)
    with pytest.raises(UntrustedContentError, match=r"sklearn\.naive_bayes\.GaussianNB"):
        load_ilearner(tmp_path / "nb.ilearner", digest.sha256)


LOAD_AND_LIST_MODULES = """
import json, sys
from kstudio_scorer.model.artifact import load_ilearner
load_ilearner(sys.argv[1], sys.argv[2])
import skops.io._trusted_types as t
print(json.dumps({"modules": sorted(sys.modules), "estimators": t.SKLEARN_ESTIMATOR_TYPE_NAMES}))
"""


def test_loading_a_model_imports_only_the_modules_it_needs(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(40, 2))
    manifest = IlearnerManifest(
        task="regression", label="y", inputSchema=[ColumnSpec(name=n, type="number") for n in "ab"]
    )
    digest = write_ilearner(tmp_path / "lr.ilearner", LinearRegression().fit(x, x[:, 0]), manifest)
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LIST_MODULES, str(tmp_path / "lr.ilearner"), digest.sha256],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout)
    assert loaded["estimators"] == list(SKLEARN_TYPES)
    assert "sklearn.linear_model" in loaded["modules"]
    # skops' default list would import every scikit-learn module, test helpers (and pytest) included.
    unneeded = {"pytest", "sklearn.utils._testing", "sklearn.naive_bayes", "sklearn.datasets"}
    assert unneeded.isdisjoint(loaded["modules"]), unneeded & set(loaded["modules"])
