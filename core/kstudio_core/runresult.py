"""The run result: `<artifact>.result.json`, written by `kstudio train`, read by the operator.

One model for both sides: the trainer builds a `RunResult` and writes `to_json()`, the operator parses the
same bytes with `RunResult.model_validate_json`. Keys are camelCase on the wire. Readers ignore keys they
do not know (a newer trainer may add some), and every field the operator does not need has a default, so
a reader also accepts a shorter document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

from kstudio_core.evaluation import EvaluationRef
from kstudio_core.ilearner import SHA256_HEX, ClassLabel, ColumnSpec

RESULT_SUFFIX: Final = ".result.json"


def result_uri(artifact_uri: str) -> str:
    """Where the result of the run that wrote `artifact_uri` (an s3:// URI or a local path) lives."""
    return artifact_uri + RESULT_SUFFIX


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)


class ResultArtifact(_Document):
    uri: str
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int | None = None


class RunResult(_Document):
    """What one training run produced: the artifact, its evaluation, and how it was found."""

    artifact: ResultArtifact
    metrics: dict[str, float] = Field(default_factory=dict)
    task: str | None = None
    label: str | None = None
    run: int | None = None
    input_schema: list[ColumnSpec] = Field(default_factory=list)
    classes: list[ClassLabel] = Field(default_factory=list)
    # The sweep, for people and tools: one entry per parameter combination, with its fold scores.
    trials: list[dict[str, Any]] = Field(default_factory=list)
    best_params: dict[str, Any] | None = None
    sweep_metric: str | None = None
    rows: dict[str, int] = Field(default_factory=dict)
    frameworks: dict[str, str] = Field(default_factory=dict)
    training_seconds: float | None = None
    created_at: datetime | None = None
    # The run's evaluation report (kstudio_core.evaluation); absent when the trainer wrote none.
    evaluation: EvaluationRef | None = None

    @field_serializer("input_schema")
    def _columns_without_nulls(self, columns: list[ColumnSpec]) -> list[dict[str, Any]]:
        # A column without categories has no `categories` key (not `null`): the document keeps its shape.
        return [column.model_dump(mode="json", exclude_none=True) for column in columns]

    def to_json(self) -> bytes:
        """The document as the trainer writes it (camelCase keys, indented)."""
        return self.model_dump_json(by_alias=True, indent=2).encode()
