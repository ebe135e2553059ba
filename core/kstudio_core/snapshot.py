"""The experiment snapshot: the Experiment spec as JSON (camelCase keys) that a training run reads.

`validate_snapshot(doc)` lists every problem that can be found without reading data; the operator uses
it to refuse a spec before starting a Job, the trainer before it reads the dataset. Parameter values are
checked against the vocabulary (scikit-learn's own constraints as data), so no scikit-learn is needed.
Problems that need the data (missing columns, text in numeric columns, too few rows) are found by the
trainer's data module.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kstudio_core.vocabulary import (
    DEFAULT_METRICS,
    algorithm_problems,
    algorithms,
    metric_problems,
    parameter_problems,
)

Task = Literal["classification", "regression", "transform"]


class _Model(BaseModel):
    # Nested parts reject unknown keys so a typo ("testFracton") is an error, not a silent default.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class DatasetSpec(_Model):
    uri: str = Field(min_length=1, description="s3://bucket/key or a local path")
    format: Literal["csv", "parquet"] | None = None  # default: from the file suffix, else csv


class PreprocessingSpec(_Model):
    impute: Literal["mean", "median", "most_frequent", "none"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"
    categorical: Literal["onehot", "ordinal"] = "onehot"
    # Override the inference from the data (numeric dtype -> numeric, anything else -> categorical).
    numeric_columns: list[str] | None = None
    categorical_columns: list[str] | None = None


class AlgorithmSpec(_Model):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class SweepSpec(_Model):
    params: dict[str, list[Any]] = Field(min_length=1)
    metric: str | None = None  # default: the first evaluation metric
    folds: int = Field(default=3, ge=2, le=10)


class EvaluationSpec(_Model):
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    metrics: list[str] = Field(default_factory=list)


class ExperimentSnapshot(_Model):
    # The whole Experiment spec may be passed; fields the trainer does not use (schedule, resources,
    # storage, ...) are ignored here and validated by the operator.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    dataset: DatasetSpec
    label: str | None = Field(default=None, min_length=1)  # absent for a transform
    features: list[str] | None = None
    task: Task
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec)
    algorithm: AlgorithmSpec | None = None  # absent for a transform
    sweep: SweepSpec | None = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)

    @property
    def target(self) -> str:
        """The label a predictive experiment learns (validate_snapshot has made sure it has one)."""
        if self.label is None:
            raise ValueError(f"a {self.task} experiment has no label")
        return self.label

    @property
    def estimator(self) -> AlgorithmSpec:
        """The algorithm of a predictive experiment (validate_snapshot has made sure it has one)."""
        if self.algorithm is None:
            raise ValueError(f"a {self.task} experiment has no algorithm")
        return self.algorithm

    @property
    def metric_names(self) -> list[str]:
        return list(self.evaluation.metrics or DEFAULT_METRICS.get(self.task, ()))

    @property
    def sweep_metric(self) -> str:
        if self.sweep is not None and self.sweep.metric:
            return self.sweep.metric
        return self.metric_names[0]


def validate_snapshot(doc: Any) -> list[str]:
    """Every problem in an experiment snapshot that can be found without the data; [] when it is valid."""
    if not isinstance(doc, dict):
        return [f"snapshot must be a JSON object, got {type(doc).__name__}"]
    try:
        spec = ExperimentSnapshot.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [_describe(e) for e in exc.errors()]
    return _semantic_problems(spec)


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "missing":
        return f"{loc}: required field is missing"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown field"
    return f"{loc}: {error['msg']}"


def _semantic_problems(spec: ExperimentSnapshot) -> list[str]:
    problems: list[str] = []
    uri = spec.dataset.uri
    if "://" in uri and not uri.startswith("s3://"):
        problems.append(f"dataset.uri: only s3:// URIs or local paths are supported, got {uri!r}")
    if spec.features is not None:
        if not spec.features:
            problems.append("features: must name at least one column (or be omitted for all but the label)")
        if spec.label is not None and spec.label in spec.features:
            problems.append(f"features: the label {spec.label!r} cannot also be a feature")
        duplicates = sorted({f for f in spec.features if spec.features.count(f) > 1})
        if duplicates:
            problems.append(f"features: duplicate column(s) {', '.join(duplicates)}")
    pre = spec.preprocessing
    both = sorted(set(pre.numeric_columns or []) & set(pre.categorical_columns or []))
    if both:
        problems.append(f"preprocessing: column(s) {', '.join(both)} declared both numeric and categorical")
    if spec.task == "transform":
        return problems + transform_problems(spec)
    if spec.label is None:
        problems.append(f"label: required field is missing (a {spec.task} model predicts it)")
    if spec.algorithm is None:
        return [*problems, f"algorithm: required field is missing (the estimator of the {spec.task})"]
    problems += algorithm_problems(spec.task, spec.algorithm.name, spec.algorithm.params)
    problems += metric_problems(spec.task, spec.evaluation.metrics, "evaluation.metrics")
    if spec.sweep is not None:
        if spec.sweep.metric:
            problems += metric_problems(spec.task, [spec.sweep.metric], "sweep.metric")
        name = spec.algorithm.name
        if name in algorithms(spec.task):
            empty = [k for k, v in spec.sweep.params.items() if not v]
            if empty:
                problems.append(f"sweep.params: no values to try for {', '.join(empty)}")
            names = {k: v[0] for k, v in spec.sweep.params.items() if v}
            name_problems = parameter_problems(spec.task, name, names, "sweep.params")
            if name_problems:
                problems += name_problems
            else:
                for key, values in spec.sweep.params.items():
                    for value in values:
                        problems += parameter_problems(spec.task, name, {key: value}, "sweep.params")
            candidates = 1
            for values in spec.sweep.params.values():
                candidates *= max(1, len(values))
            if candidates > 256:
                problems.append(f"sweep.params: {candidates} combinations, more than the 256 allowed")
    return problems


def transform_problems(spec: ExperimentSnapshot) -> list[str]:
    """A transform fits preprocessing only: no label, no algorithm, no sweep, no metrics."""
    extra = [
        name
        for name, given in (
            ("label", spec.label is not None),
            ("algorithm", spec.algorithm is not None),
            ("sweep", spec.sweep is not None),
            ("evaluation.metrics", bool(spec.evaluation.metrics)),
        )
        if given
    ]
    why = "a transform fits preprocessing only and predicts nothing; leave it out"
    return [f"{name}: {why}" for name in extra]
