"""Experiment: the training experiment. Every run is a Job; every successful run a TrainedModel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kstudio_core import vocabulary
from kstudio_operator.constants import EXPERIMENTS
from kstudio_operator.resources.common import (
    CelRule,
    ColumnName,
    Condition,
    KModel,
    ObjectName,
    PrinterColumn,
    Quantity,
    ResourceKind,
    S3Prefix,
    S3Uri,
    ShortName,
    StatusModel,
    conditions_field,
)

Task = Literal["classification", "regression"]

# The algorithm and metric allowlists, by task, are the shared vocabulary (one source of truth, generated
# from the estimators the trainer builds), so a spec can never make the trainer import arbitrary code.
CLASSIFIERS: tuple[str, ...] = vocabulary.algorithm_names("classification")
REGRESSORS: tuple[str, ...] = vocabulary.algorithm_names("regression")
CLASSIFICATION_METRICS: tuple[str, ...] = vocabulary.CLASSIFICATION_METRICS
REGRESSION_METRICS: tuple[str, ...] = vocabulary.REGRESSION_METRICS
# The same names as static types, for the pydantic models and mypy (a unit test keeps them equal).
AlgorithmName = Literal[
    "LogisticRegression",
    "RandomForestClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "DecisionTreeClassifier",
    "SVC",
    "KNeighborsClassifier",
    "LinearRegression",
    "Ridge",
    "Lasso",
    "RandomForestRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "DecisionTreeRegressor",
    "SVR",
    "KNeighborsRegressor",
]
MetricName = Literal[
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
    "roc_auc_ovr",
    "log_loss",
    "r2",
    "mae",
    "mse",
    "rmse",
    "mape",
]
# Five-field cron (minute hour day-of-month month day-of-week) or a @macro; croniter checks the rest.
CRON = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"
PARAM_NAME = r"^[a-z_][a-z0-9_]{0,63}$"


class Dataset(KModel):
    uri: S3Uri = Field(description="s3://bucket/key of the training data.")
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="File format (default: from the key's suffix, else csv)."
    )


class Preprocessing(KModel):
    impute: Literal["mean", "median", "most_frequent", "none"] = "median"
    scale: Literal["standard", "minmax", "robust", "none"] = "standard"
    categorical: Literal["onehot", "ordinal"] = "onehot"
    numeric_columns: list[ColumnName] | None = Field(
        default=None, max_length=512, description="Override: treat these columns as numeric."
    )
    categorical_columns: list[ColumnName] | None = Field(
        default=None, max_length=512, description="Override: treat these columns as categorical."
    )


class Algorithm(KModel):
    name: AlgorithmName = Field(description="A scikit-learn estimator from the allowlist.")
    params: dict[Annotated[str, Field(pattern=PARAM_NAME)], Any] = Field(
        default_factory=dict,
        description="Constructor parameters of the estimator (checked by the trainer).",
        json_schema_extra={"maxProperties": 32},
    )


class Sweep(KModel):
    params: dict[str, Annotated[list[Any], Field(min_length=1, max_length=32)]] = Field(
        description="Parameter grid: each name maps to the values to try.",
        json_schema_extra={"minProperties": 1, "maxProperties": 8},
    )
    metric: MetricName | None = Field(
        default=None, description="Metric to maximise (default: the first one)."
    )
    folds: int = Field(default=3, ge=2, le=10)


class Evaluation(KModel):
    test_fraction: float = Field(default=0.2, ge=0.05, le=0.5)
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    metrics: list[MetricName] = Field(default_factory=list, max_length=8)


class Resources(KModel):
    cpu: Quantity = "1"
    memory: Quantity = "1Gi"


class Storage(KModel):
    credentials_secret: ObjectName = Field(
        default="kstudio-s3",
        description="Secret in this namespace with keys accessKey and secretKey, mounted into training Jobs.",
    )
    output_prefix: S3Prefix = Field(
        default="s3://models/",
        description="Where artifacts go: <prefix><namespace>/<experiment>/<experiment>-<run>.ilearner.",
    )


class ExperimentSpec(KModel):
    """What to train, on what data, how to evaluate it, and when to re-run."""

    dataset: Dataset
    label: ColumnName
    features: list[ColumnName] | None = Field(
        default=None, max_length=512, description="Input columns (default: every column but the label)."
    )
    task: Task
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    algorithm: Algorithm
    sweep: Sweep | None = None
    evaluation: Evaluation = Field(default_factory=Evaluation)
    schedule: str | None = Field(
        default=None, max_length=128, pattern=CRON, description="Cron schedule for periodic retraining (UTC)."
    )
    resources: Resources = Field(default_factory=Resources)
    history_limit: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Runs kept in status.runs (runs whose model is in use are kept).",
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=5, description="Retries of a run after infrastructure errors (exit 75)."
    )
    active_deadline_seconds: int = Field(default=3600, ge=60, le=86400)
    storage: Storage = Field(default_factory=Storage)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        problems = experiment_spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def snapshot(self) -> dict[str, Any]:
        """The part of the spec the trainer needs: what `kstudio train --snapshot` reads."""
        keep = ("dataset", "label", "features", "task", "preprocessing", "algorithm", "sweep", "evaluation")
        wire = self.to_wire()
        return {k: wire[k] for k in keep if k in wire}


def experiment_spec_problems(spec: ExperimentSpec) -> list[str]:
    """Cross-field problems a JSON schema cannot express (the CRD's CEL rules mirror them)."""
    problems: list[str] = []
    allowed = CLASSIFIERS if spec.task == "classification" else REGRESSORS
    if spec.algorithm.name not in allowed:
        problems.append(
            f"algorithm {spec.algorithm.name} does not do {spec.task}; use one of {', '.join(allowed)}"
        )
    if spec.features is not None and spec.label in spec.features:
        problems.append(f"label {spec.label!r} must not be one of the features")
    metrics = CLASSIFICATION_METRICS if spec.task == "classification" else REGRESSION_METRICS
    bad = [m for m in spec.evaluation.metrics if m not in metrics]
    if spec.sweep is not None and spec.sweep.metric is not None and spec.sweep.metric not in metrics:
        bad.append(spec.sweep.metric)
    if bad:
        problems.append(f"metric(s) {', '.join(bad)} do not apply to {spec.task}")
    return problems


RunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
Trigger = Literal["create", "spec", "annotation", "schedule"]


class RunRecord(StatusModel):
    """One run of the experiment: a snapshot of the spec at `generation`, trained by `job`."""

    run: int = Field(ge=1)
    generation: int = Field(ge=1)
    triggers: list[Trigger] = Field(default_factory=list, max_length=4)
    token: str | None = Field(default=None, max_length=253)
    scheduled_at: datetime | None = None
    job: str = Field(max_length=63)
    phase: RunPhase
    reason: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4096)
    trained_model: str | None = Field(default=None, max_length=253)
    artifact: str | None = Field(default=None, max_length=1024)
    metrics: dict[str, float] = Field(default_factory=dict, json_schema_extra={"maxProperties": 32})
    started_at: datetime | None = None
    finished_at: datetime | None = None


ExperimentPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Invalid"]


class ExperimentStatus(StatusModel):
    observed_generation: int | None = None
    phase: ExperimentPhase | None = None
    conditions: list[Condition] = conditions_field()
    runs: list[RunRecord] = Field(default_factory=list, max_length=100)
    latest_run: int | None = None
    latest_trained_model: str | None = Field(default=None, max_length=253)
    latest_metric: str | None = Field(default=None, max_length=64, description="e.g. accuracy=0.9765")
    last_schedule_time: datetime | None = None
    next_schedule_time: datetime | None = None


def _task_rule() -> CelRule:
    classifiers = ", ".join(f"'{n}'" for n in CLASSIFIERS)
    regressors = ", ".join(f"'{n}'" for n in REGRESSORS)
    return CelRule(
        path="spec",
        rule=(
            f"self.task == 'classification' ? self.algorithm.name in [{classifiers}] "
            f": self.algorithm.name in [{regressors}]"
        ),
        message="spec.algorithm.name does not match spec.task (a classifier for classification, "
        "a regressor for regression)",
        field_path=".algorithm.name",
    )


EXPERIMENT = ResourceKind(
    kind="Experiment",
    plural=EXPERIMENTS,
    singular="experiment",
    short_names=("kexp",),
    spec=ExperimentSpec,
    status=ExperimentStatus,
    description="A training experiment: every run trains a model in a Job and records a TrainedModel.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", description="Phase of the latest run"),
        PrinterColumn("Run", ".status.latestRun", "integer", "Number of the latest run"),
        PrinterColumn("Model", ".status.latestTrainedModel", description="Latest successful TrainedModel"),
        PrinterColumn("Metric", ".status.latestMetric", description="Headline metric of the latest model"),
        PrinterColumn("Algorithm", ".spec.algorithm.name", priority=1),
        PrinterColumn("Schedule", ".spec.schedule", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="",
            rule="self.metadata.name.size() <= 52",
            message="Experiment names are at most 52 characters (Jobs are named <experiment>-run-<n>)",
            field_path=".metadata.name",
        ),
        _task_rule(),
        CelRule(
            path="spec",
            rule="!has(self.features) || !(self.label in self.features)",
            message="spec.label must not be one of spec.features",
            field_path=".features",
        ),
    ),
)

# Used for the name of children: `<experiment>-run-<n>` Jobs and `<experiment>-<n>` TrainedModels.
ExperimentName = ShortName
