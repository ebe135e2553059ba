"""TrainedModel: an immutable, digest-pinned .ilearner in object storage, verified by the operator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from kstudio_core.ilearner import ColumnType
from kstudio_operator.constants import TRAINED_MODELS
from kstudio_operator.resources.common import (
    CelRule,
    ColumnName,
    Condition,
    KModel,
    ObjectName,
    PrinterColumn,
    ResourceKind,
    S3Uri,
    Sha256,
    StatusModel,
    conditions_field,
)


class Artifact(KModel):
    uri: S3Uri = Field(description="s3://bucket/key of the .ilearner file.")
    sha256: Sha256 = Field(description="sha256 of the whole file, 64 lowercase hex digits.")


class EvaluationReportRef(KModel):
    """The run's evaluation report (evaluation.json with its figures): readers check the sha256 of its bytes
    before they show anything (kstudio_core.evaluation)."""

    uri: S3Uri = Field(description="s3://bucket/key of evaluation.json, next to the artifact.")
    sha256: Sha256 = Field(description="sha256 of evaluation.json, 64 lowercase hex digits.")


class Source(KModel):
    experiment: ObjectName = Field(description="The Experiment that trained it.")
    run: int = Field(ge=1, description="The run number in that Experiment's status.runs.")
    generation: int | None = Field(
        default=None, ge=1, description="The Experiment's metadata.generation that run trained."
    )


class TrainedModelSpec(KModel):
    """Immutable once created: a different model is a different TrainedModel."""

    artifact: Artifact = Field(
        description="The .ilearner file and its sha256: the operator and the scorer refuse a file whose "
        "digest differs, before reading it."
    )
    source: Source | None = Field(default=None, description="The run that produced it; absent for imports.")
    evaluation: EvaluationReportRef | None = Field(
        default=None, description="The run's evaluation report; absent when there is none (imports)."
    )
    description: str | None = Field(
        default=None, max_length=1024, description="A note for people (at most 1024 characters)."
    )
    artifact_deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What happens to the .ilearner file when this object is deleted: Retain (default, the "
        "file stays) or Delete (the operator removes it and its run result).",
    )


class InputColumn(KModel):
    name: ColumnName = Field(description="Column name, as in the training data.")
    type: ColumnType = Field(
        description="Type a scoring request must give it: number, integer, string or boolean."
    )


ModelPhase = Literal["Pending", "Ready", "Invalid"]


# A status object stays small however many services share one model.
LISTED_USERS = 256


class TrainedModelStatus(StatusModel):
    """What the operator found when it verified the artifact, and who uses the model."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    phase: ModelPhase | None = Field(
        default=None,
        description="Pending (not verified yet, e.g. storage unreachable), Ready (downloaded, sha256 "
        "matches, manifest read) or Invalid (see reason and message).",
    )
    reason: str | None = Field(
        default=None, max_length=128, description="Why the phase, one CamelCase word (e.g. DigestMismatch)."
    )
    message: str | None = Field(default=None, max_length=4096, description="Why the phase, in words.")
    conditions: list[Condition] = conditions_field(
        "Ready (verified) and InUse (a WebService or Endpoint serves it: deletion waits)."
    )
    task: Literal["classification", "regression", "transform"] | None = Field(
        default=None,
        description="What the model does: classification or regression; transform (preprocessing only, "
        "answers with outputColumns).",
    )
    label: str | None = Field(default=None, max_length=256, description="The column it predicts.")
    output_columns: list[str] = Field(
        default_factory=list,
        max_length=4096,
        description="A transform: the columns it answers with, in order.",
    )
    input_schema: list[InputColumn] = Field(
        default_factory=list,
        max_length=1024,
        description="The columns a scoring request must give, with their types.",
    )
    classes: list[bool | int | float | str] = Field(
        default_factory=list,
        max_length=1024,
        description="Classification: the class labels, in the order of Scored Probabilities.",
    )
    metrics: dict[str, float] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 32},
        description="Metrics on the held-out test rows, by name.",
    )
    headline_metric: str | None = Field(
        default=None,
        max_length=64,
        description="The first of the experiment's evaluation.metrics, e.g. accuracy=0.9765.",
    )
    frameworks: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 16},
        description="Library versions it was trained with, e.g. scikit-learn: 1.9.1.",
    )
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the .ilearner file in bytes.")
    evaluation: EvaluationReportRef | None = Field(
        default=None,
        description="The run's evaluation report (spec.evaluation), named once the model is verified.",
    )
    created_at: datetime | None = Field(default=None, description="When the trainer wrote it.")
    verified_at: datetime | None = Field(default=None, description="When the operator verified its sha256.")
    used_by: list[str] = Field(
        default_factory=list,
        max_length=LISTED_USERS,
        description=f"WebServices and Endpoints serving this model: the first {LISTED_USERS}.",
    )
    used_by_count: int | None = Field(
        default=None, ge=0, description="How many WebServices and Endpoints serve it."
    )


TRAINED_MODEL = ResourceKind(
    kind="TrainedModel",
    plural=TRAINED_MODELS,
    singular="trainedmodel",
    short_names=("ktm",),
    spec=TrainedModelSpec,
    status=TrainedModelStatus,
    description="A trained model: an immutable .ilearner artifact pinned by its sha256.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase", description="Ready once the artifact is verified"),
        PrinterColumn("Task", ".status.task"),
        PrinterColumn("Metric", ".status.headlineMetric"),
        PrinterColumn("Experiment", ".spec.source.experiment"),
        PrinterColumn("Run", ".spec.source.run", "integer"),
        PrinterColumn("Size", ".status.sizeBytes", "integer", "Artifact size in bytes", priority=1),
        PrinterColumn("Digest", ".spec.artifact.sha256", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="spec",
            rule="self == oldSelf",
            message="TrainedModel spec is immutable: create a new TrainedModel for a different artifact",
        ),
    ),
)
