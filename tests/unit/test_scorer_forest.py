"""Forests summed tree by tree give exactly scikit-learn's numbers (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kstudio_scorer.model.forest import ForestPredictor

RNG = np.random.default_rng(3)
X = RNG.normal(size=(400, 5))
Y = RNG.integers(0, 3, 400)


def test_forest_classifier_probabilities_are_bit_identical() -> None:
    forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(X, Y)
    fast = ForestPredictor(forest)
    assert fast.enabled
    for rows in (1, 7, 400):
        assert np.array_equal(fast.predict_proba(X[:rows]), forest.predict_proba(X[:rows]))


def test_forest_regressors_are_bit_identical() -> None:
    for est in (RandomForestRegressor(n_estimators=15, random_state=0), ExtraTreesRegressor(n_estimators=15)):
        est.fit(X, X[:, 0] * 2)
        assert np.array_equal(ForestPredictor(est).predict(X), est.predict(X))


def test_forest_inside_a_dataframe_pipeline() -> None:
    df = pd.DataFrame({"x": X[:, 0], "c": np.where(X[:, 1] > 0, "p", "q")})
    pipe = make_pipeline(
        make_column_transformer((StandardScaler(), ["x"]), (OneHotEncoder(), ["c"])),
        RandomForestClassifier(n_estimators=10, random_state=0),
    ).fit(df, Y)
    fast = ForestPredictor(pipe)
    assert fast.enabled and np.array_equal(fast.predict_proba(df), pipe.predict_proba(df))


def test_other_estimators_go_through_scikit_learn() -> None:
    lr = LogisticRegression().fit(X, Y)
    fast = ForestPredictor(lr)
    assert not fast.enabled
    assert np.array_equal(fast.predict_proba(X), lr.predict_proba(X))
    assert np.array_equal(fast.predict(X), lr.predict(X))
