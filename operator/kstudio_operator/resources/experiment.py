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

Task = Literal["classification", "regression", "transform"]

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
    """The table to train on: one file in object storage, a header row and one column per field."""

    uri: S3Uri = Field(description="s3://bucket/key of the training data.")
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="File format (default: from the key's suffix, else csv)."
    )


class Preprocessing(KModel):
    impute: Literal["mean", "median", "most_frequent", "none"] = Field(
        default="median",
        description="How missing numeric values are filled, from the training rows (default median); "
        "missing categorical values get the most frequent category. none: no filling (the algorithm "
        "must accept missing values, e.g. HistGradientBoosting*).",
    )
    scale: Literal["standard", "minmax", "robust", "none"] = Field(
        default="standard",
        description="How numeric columns are rescaled (default standard: zero mean, unit variance; "
        "minmax: to [0, 1]; robust: median and interquartile range; none: unchanged).",
    )
    categorical: Literal["onehot", "ordinal"] = Field(
        default="onehot",
        description="How text and boolean columns become numbers (default onehot: one 0/1 column per "
        "category, rare categories grouped; ordinal: one integer per category). Categories not seen in "
        "training are accepted when scoring (the infrequent group, or -1).",
    )
    numeric_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=512,
        description="Override the detected type: treat these columns as numeric (text in them is a data "
        "error naming the column).",
    )
    categorical_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=512,
        description="Override the detected type: treat these columns as categorical (e.g. numeric codes).",
    )


class Algorithm(KModel):
    """The scikit-learn estimator and its constructor parameters."""

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
        default=None,
        description="Metric that picks the best combination (the highest, or the lowest for errors such "
        "as rmse); default: the first of evaluation.metrics.",
    )
    folds: int = Field(
        default=3,
        ge=2,
        le=10,
        description="Cross-validation folds on the training split (2-10, default 3); classification "
        "needs at least this many rows of its rarest class.",
    )


class Evaluation(KModel):
    test_fraction: float = Field(
        default=0.2,
        ge=0.05,
        le=0.5,
        description="Share of the rows held out to compute the metrics (0.05-0.5, default 0.2); "
        "stratified by class for classification when every class has at least two rows.",
    )
    seed: int = Field(
        default=42,
        ge=0,
        le=2**31 - 1,
        description="Random seed of the split, the sweep's folds and the estimator: the same spec and "
        "data train the same model (default 42).",
    )
    metrics: list[MetricName] = Field(
        default_factory=list,
        max_length=8,
        description="Metrics computed on the held-out rows (at most 8; the first is the headline). "
        "Default: accuracy, precision_macro, recall_macro, f1_macro, roc_auc for classification; rmse, "
        "mae, r2 for regression.",
    )


class Resources(KModel):
    cpu: Quantity = Field(
        default="1", description="CPU the training container requests, a Kubernetes quantity (default 1)."
    )
    memory: Quantity = Field(
        default="1Gi",
        description="Memory the training container requests and may not exceed, a Kubernetes quantity "
        "(default 1Gi); a run that needs more fails with reason OOMKilled.",
    )


class Storage(KModel):
    """Object storage of the runs: the credentials Secret and where models are written."""

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

    dataset: Dataset = Field(description="The training data: a CSV or Parquet file in object storage.")
    label: ColumnName | None = Field(
        default=None,
        description="Column to predict: class labels for classification, numbers for regression (required "
        "for both). Rows without a label are dropped. A transform has none.",
    )
    features: list[ColumnName] | None = Field(
        default=None, max_length=512, description="Input columns (default: every column but the label)."
    )
    task: Task = Field(
        description="classification (predict a class: labels and probabilities), regression (predict "
        "a number), or transform (fit only the preprocessing: imputation, scaling, encoding of the "
        "features, every other column dropped; the TrainedModel answers with the transformed columns, "
        "Studio's non-predictive web service; no label, algorithm, sweep or metrics); decides which "
        "algorithms and metrics apply."
    )
    preprocessing: Preprocessing = Field(
        default_factory=Preprocessing,
        description="Missing values, scaling and categorical encoding, learned from the training rows and "
        "applied again when scoring.",
    )
    algorithm: Algorithm | None = Field(
        default=None,
        description="The estimator to train: a classifier for classification, a regressor for regression "
        "(required for both); a transform has none.",
    )
    sweep: Sweep | None = Field(
        default=None,
        description="Parameter sweep: every combination of the values is cross-validated on the training "
        "split and the best one is trained and evaluated; absent = train algorithm.params once.",
    )
    evaluation: Evaluation = Field(
        default_factory=Evaluation,
        description="How the data is split into training and test rows, and which metrics are reported.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        pattern=CRON,
        description="Cron schedule for periodic retraining, five fields or @daily-style, in UTC; absent = "
        "no schedule (runs start on create, spec change and the kstudio.io/run annotation).",
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPU and memory of each run's training Job."
    )
    history_limit: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Finished runs kept (1-100, default 10); older ones are deleted with their Job and "
        "TrainedModel, except the latest successful run and runs whose model is in use.",
    )
    backoff_limit: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Retries of a run after an infrastructure error such as unreachable storage (exit 75; "
        "0-5, default 2); bad specs or data and out-of-memory fail at once.",
    )
    active_deadline_seconds: int = Field(
        default=3600,
        ge=60,
        le=86400,
        description="Seconds a run's Job may take, retries included (60-86400, default 3600); then "
        "Kubernetes stops it and the run fails.",
    )
    storage: Storage = Field(
        default_factory=Storage,
        description="Credentials for object storage and where the trained models are written.",
    )

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
    if spec.task == "transform":
        given = [name for name in ("label", "algorithm", "sweep") if getattr(spec, name) is not None]
        given += ["evaluation.metrics"] if spec.evaluation.metrics else []
        return [f"a transform fits preprocessing only: leave out {', '.join(given)}"] if given else []
    missing = [name for name in ("label", "algorithm") if getattr(spec, name) is None]
    if missing:
        return [f"{spec.task} needs {' and '.join(missing)}"]
    assert spec.algorithm is not None
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

    run: int = Field(ge=1, description="Run number, counting from 1.")
    generation: int = Field(ge=1, description="metadata.generation of the spec this run trained.")
    triggers: list[Trigger] = Field(
        default_factory=list,
        max_length=4,
        description="What started it: create, spec (the spec changed), annotation (a new kstudio.io/run "
        "token), schedule (a spec.schedule tick); one run covers every trigger that arrived meanwhile.",
    )
    token: str | None = Field(
        default=None, max_length=253, description="The kstudio.io/run annotation value when it ran."
    )
    scheduled_at: datetime | None = Field(default=None, description="The schedule tick it ran for (UTC).")
    job: str = Field(max_length=63, description="Name of its training Job: <experiment>-run-<run>.")
    phase: RunPhase = Field(description="Pending, Running, Succeeded or Failed.")
    reason: str | None = Field(
        default=None,
        max_length=128,
        description="Why it failed, one word (e.g. InvalidData, OOMKilled, InfrastructureError).",
    )
    message: str | None = Field(
        default=None, max_length=4096, description="Why it failed, in words: what to fix."
    )
    trained_model: str | None = Field(
        default=None, max_length=253, description="The TrainedModel it produced: <experiment>-<run>."
    )
    artifact: str | None = Field(default=None, max_length=1024, description="s3:// URI of its .ilearner.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 32},
        description="Metrics on the held-out test rows, by name.",
    )
    started_at: datetime | None = Field(default=None, description="When its Job started.")
    finished_at: datetime | None = Field(default=None, description="When it succeeded or failed.")


ExperimentPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Invalid"]


class ExperimentStatus(StatusModel):
    """What the operator observed: the runs, the latest model and the schedule (written by the operator)."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    phase: ExperimentPhase | None = Field(
        default=None,
        description="Phase of the latest run (Pending, Running, Succeeded, Failed); Invalid when the spec "
        "is refused (condition SpecValid says why).",
    )
    conditions: list[Condition] = conditions_field(
        "SpecValid, Running and Ready (a TrainedModel of the latest successful run exists)."
    )
    runs: list[RunRecord] = Field(
        default_factory=list,
        max_length=100,
        description="The runs, oldest first: spec.historyLimit of them, plus older runs whose model is in "
        "use.",
    )
    latest_run: int | None = Field(default=None, description="Number of the latest run.")
    latest_trained_model: str | None = Field(
        default=None, max_length=253, description="TrainedModel of the latest successful run."
    )
    latest_metric: str | None = Field(
        default=None,
        max_length=64,
        description="Headline metric of the latest successful run, e.g. accuracy=0.9765.",
    )
    last_schedule_time: datetime | None = Field(
        default=None, description="The last spec.schedule tick that started a run."
    )
    next_schedule_time: datetime | None = Field(
        default=None, description="The next spec.schedule tick (UTC)."
    )


def _task_rule() -> CelRule:
    classifiers = ", ".join(f"'{n}'" for n in CLASSIFIERS)
    regressors = ", ".join(f"'{n}'" for n in REGRESSORS)
    return CelRule(
        path="spec",
        rule=(
            "self.task == 'transform' || !has(self.algorithm) || (self.task == 'classification' "
            f"? self.algorithm.name in [{classifiers}] : self.algorithm.name in [{regressors}])"
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
            rule="!has(self.features) || !has(self.label) || !(self.label in self.features)",
            message="spec.label must not be one of spec.features",
            field_path=".features",
        ),
        CelRule(
            path="spec",
            rule="self.task == 'transform' || (has(self.label) && has(self.algorithm))",
            message="classification and regression need spec.label and spec.algorithm",
        ),
        CelRule(
            path="spec",
            rule="self.task != 'transform' || (!has(self.label) && !has(self.algorithm) "
            "&& !has(self.sweep) && (!has(self.evaluation) || !has(self.evaluation.metrics) "
            "|| size(self.evaluation.metrics) == 0))",
            message="a transform fits preprocessing only: it has no label, algorithm, sweep or "
            "evaluation.metrics",
        ),
    ),
)

# Used for the name of children: `<experiment>-run-<n>` Jobs and `<experiment>-<n>` TrainedModels.
ExperimentName = ShortName
