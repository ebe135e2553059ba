"""Spec + column plan -> an unfitted Pipeline: ColumnTransformer preprocessing, then the model (a
transform: the preprocessing alone)."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, RobustScaler, StandardScaler

from kstudio_trainer.algorithms import build_estimator
from kstudio_trainer.data import ColumnPlan
from kstudio_trainer.spec import ExperimentSnapshot

PREPROCESS_STEP = "preprocess"
MODEL_STEP = "model"
MAX_ONEHOT_CATEGORIES = 100

_SCALERS: dict[str, Any] = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


def build_pipeline(spec: ExperimentSnapshot, plan: ColumnPlan) -> Pipeline:
    model = build_estimator(spec.task, spec.estimator.name, spec.estimator.params, spec.evaluation.seed)
    return Pipeline([(PREPROCESS_STEP, build_preprocessing(spec, plan)), (MODEL_STEP, model)])


def build_preprocessing(
    spec: ExperimentSnapshot, plan: ColumnPlan, *, short_names: bool = False
) -> ColumnTransformer:
    """Imputation, scaling and encoding of the planned columns; every other column is dropped (column
    selection). `short_names`: output columns named after their input (`bill_length_mm`, `island_Biscoe`)
    rather than prefixed with their transformer (`numeric__bill_length_mm`)."""
    pre = spec.preprocessing
    transformers: list[tuple[str, Any, list[str]]] = []
    if plan.numeric:
        steps: list[tuple[str, Any]] = []
        if pre.impute != "none":
            steps.append(("impute", SimpleImputer(strategy=pre.impute)))
        if pre.scale != "none":
            steps.append(("scale", _SCALERS[pre.scale]()))
        transformers.append(("numeric", Pipeline(steps) if steps else "passthrough", plan.numeric))
    if plan.categorical:
        cat_steps: list[tuple[str, Any]] = []
        if pre.impute != "none":
            cat_steps.append(("impute", SimpleImputer(strategy="most_frequent")))
        if pre.categorical == "onehot":
            encoder: Any = OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                max_categories=MAX_ONEHOT_CATEGORIES,
                sparse_output=False,
            )
        else:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
            )
        cat_steps.append(("encode", encoder))
        transformers.append(("categorical", Pipeline(cat_steps), plan.categorical))
    return ColumnTransformer(
        transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=not short_names
    )
