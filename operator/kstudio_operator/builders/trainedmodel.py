"""TrainedModel manifests (from a trainer result) and status (from a verified artifact manifest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kstudio_operator import constants as c
from kstudio_operator.builders.names import trained_model_name
from kstudio_operator.builders.runs import headline_metric
from kstudio_operator.resources.common import SHA256_HEX


class ResultArtifact(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    uri: str
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int | None = Field(default=None, alias="sizeBytes")


class TrainerResult(BaseModel):
    """`<output>.result.json` written by `kstudio train` (only the fields the operator uses)."""

    model_config = ConfigDict(extra="ignore")

    artifact: ResultArtifact
    metrics: dict[str, float] = Field(default_factory=dict)
    task: str | None = None


def trained_model_manifest(
    namespace: str, experiment: str, run: int, generation: int, result: TrainerResult
) -> dict[str, Any]:
    """The TrainedModel `<experiment>-<run>` for a successful run.

    Deliberately not owned by the Experiment: deleting an Experiment must not garbage-collect a model that
    a WebService or Endpoint serves (the operator deletes the unused ones itself).
    """
    return {
        "apiVersion": c.GROUP_VERSION,
        "kind": "TrainedModel",
        "metadata": {
            "name": trained_model_name(experiment, run),
            "namespace": namespace,
            "labels": {
                c.LABEL_NAME: c.APP_NAME,
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_EXPERIMENT: experiment,
                c.LABEL_RUN: str(run),
            },
        },
        "spec": {
            "artifact": {"uri": result.artifact.uri, "sha256": result.artifact.sha256},
            "source": {"experiment": experiment, "run": run, "generation": generation},
        },
    }


def status_from_manifest(manifest: Any, size_bytes: int, verified_at: datetime) -> dict[str, Any]:
    """status fields of a Ready TrainedModel from its artifact's manifest (an IlearnerManifest)."""
    metrics = {k: float(v) for k, v in manifest.metrics.items()}
    preferred = [str(m) for m in (manifest.experiment.get("evaluation") or {}).get("metrics") or []]
    return {
        "task": manifest.task,
        "label": manifest.label,
        "inputSchema": [{"name": col.name, "type": col.type} for col in manifest.inputSchema],
        "classes": list(manifest.classes),
        "metrics": metrics,
        "headlineMetric": headline_metric(metrics, preferred),
        "frameworks": dict(manifest.frameworks),
        "sizeBytes": size_bytes,
        "createdAt": manifest.createdAt.isoformat().replace("+00:00", "Z"),
        "verifiedAt": verified_at.isoformat().replace("+00:00", "Z"),
    }


def _model_refs(obj: dict[str, Any]) -> set[str]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {str(v) for v in (spec.get("model"), status.get("model")) if v}


def referrers(model: str, webservices: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> list[str]:
    """ "Kind/name" of every WebService and Endpoint that names `model` in its spec or serves it (status)."""
    out = []
    for kind, objs in (("WebService", webservices), ("Endpoint", endpoints)):
        for obj in objs:
            if model in _model_refs(obj) and not (obj.get("metadata") or {}).get("deletionTimestamp"):
                out.append(f"{kind}/{obj['metadata']['name']}")
    return sorted(out)


def models_in_use(webservices: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> set[str]:
    used: set[str] = set()
    for obj in [*webservices, *endpoints]:
        if not (obj.get("metadata") or {}).get("deletionTimestamp"):
            used |= _model_refs(obj)
    return used
