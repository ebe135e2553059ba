"""TrainedModel: an immutable, digest-pinned .ilearner in object storage, verified by the operator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

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
    experiment: ObjectName
    run: int = Field(ge=1)
    generation: int | None = Field(default=None, ge=1)


class TrainedModelSpec(KModel):
    """Immutable once created: a different model is a different TrainedModel."""

    artifact: Artifact
    source: Source | None = Field(default=None, description="The run that produced it; absent for imports.")
    evaluation: EvaluationReportRef | None = Field(
        default=None, description="The run's evaluation report; absent when there is none (imports)."
    )
    description: str | None = Field(default=None, max_length=1024)
    artifact_deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain", description="What happens to the .ilearner file when this object is deleted."
    )


class InputColumn(KModel):
    name: ColumnName
    type: Literal["number", "integer", "string", "boolean"]


ModelPhase = Literal["Pending", "Ready", "Invalid"]


# A status object stays small however many services share one model.
LISTED_USERS = 256


class TrainedModelStatus(StatusModel):
    observed_generation: int | None = None
    phase: ModelPhase | None = None
    reason: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4096)
    conditions: list[Condition] = conditions_field()
    task: Literal["classification", "regression"] | None = None
    label: str | None = Field(default=None, max_length=256)
    input_schema: list[InputColumn] = Field(default_factory=list, max_length=1024)
    classes: list[bool | int | float | str] = Field(default_factory=list, max_length=1024)
    metrics: dict[str, float] = Field(default_factory=dict, json_schema_extra={"maxProperties": 32})
    headline_metric: str | None = Field(default=None, max_length=64, description="e.g. accuracy=0.9765")
    frameworks: dict[str, str] = Field(default_factory=dict, json_schema_extra={"maxProperties": 16})
    size_bytes: int | None = Field(default=None, ge=0)
    evaluation: EvaluationReportRef | None = Field(
        default=None, description="The evaluation report of the verified model (spec.evaluation)"
    )
    created_at: datetime | None = None
    verified_at: datetime | None = None
    used_by: list[str] = Field(
        default_factory=list,
        max_length=LISTED_USERS,
        description=f"WebServices and Endpoints serving this model: the first {LISTED_USERS}",
    )
    used_by_count: int | None = Field(default=None, ge=0, description="how many use it")


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
