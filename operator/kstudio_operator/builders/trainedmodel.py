"""TrainedModel manifests (from a trainer result) and status (from a verified artifact manifest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kstudio_core.runresult import RunResult
from kstudio_operator import constants as c
from kstudio_operator.builders.names import trained_model_name


def headline_metric(metrics: dict[str, float], preferred: list[str]) -> str | None:
    """'name=0.1234' of the first preferred metric the model has (else the first by name): the one figure
    an Experiment's and a TrainedModel's status show."""
    for name in [*preferred, *sorted(metrics)]:
        if name in metrics:
            return f"{name}={metrics[name]:.4f}"
    return None


def trained_model_manifest(
    namespace: str, experiment: str, run: int, generation: int, result: RunResult
) -> dict[str, Any]:
    """The TrainedModel `<experiment>-<run>` for a successful run.

    Deliberately not owned by the Experiment: deleting an Experiment must not garbage-collect a model that
    a WebService or Endpoint serves (the operator deletes the unused ones itself).
    """
    spec: dict[str, Any] = {
        "artifact": {"uri": result.artifact.uri, "sha256": result.artifact.sha256},
        "source": {"experiment": experiment, "run": run, "generation": generation},
    }
    if result.evaluation is not None:
        spec["evaluation"] = {"uri": result.evaluation.uri, "sha256": result.evaluation.sha256}
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
        "spec": spec,
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
        "outputColumns": list(manifest.outputColumns),
        "metrics": metrics,
        "headlineMetric": headline_metric(metrics, preferred),
        "frameworks": dict(manifest.frameworks),
        "sizeBytes": size_bytes,
        "createdAt": manifest.createdAt.isoformat().replace("+00:00", "Z"),
        "verifiedAt": verified_at.isoformat().replace("+00:00", "Z"),
    }
