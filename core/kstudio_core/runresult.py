"""The run result: `<artifact>.result.json`, written by `kstudio train`, read by the operator.

Only the fields the operator relies on are typed; the trainer writes more (trials, best parameters, rows,
timings) for people and tools, and readers ignore what they do not know.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from kstudio_core.evaluation import EvaluationRef

RESULT_SUFFIX: Final = ".result.json"
SHA256_HEX: Final = r"^[0-9a-f]{64}$"


def result_uri(artifact_uri: str) -> str:
    """Where the result of the run that wrote `artifact_uri` lives."""
    return artifact_uri + RESULT_SUFFIX


class ResultArtifact(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    uri: str
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int | None = Field(default=None, alias="sizeBytes")


class RunResult(BaseModel):
    """The typed part of a run result document."""

    model_config = ConfigDict(extra="ignore")

    artifact: ResultArtifact
    metrics: dict[str, float] = Field(default_factory=dict)
    task: str | None = None
    # The run's evaluation report (kstudio_core.evaluation); absent when the trainer wrote none.
    evaluation: EvaluationRef | None = None
