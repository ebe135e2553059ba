"""Deterministic child names: a restarted operator finds what it created instead of creating it twice."""

from __future__ import annotations

from kstudio_operator.resources.experiment import ExperimentSpec


def job_name(experiment: str, run: int) -> str:
    return f"{experiment}-run-{run}"


def snapshot_configmap_name(experiment: str, run: int) -> str:
    return f"{experiment}-run-{run}-snapshot"


def trained_model_name(experiment: str, run: int) -> str:
    return f"{experiment}-{run}"


def artifact_uri(spec: ExperimentSpec, namespace: str, experiment: str, run: int) -> str:
    prefix = spec.storage.output_prefix
    if not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{namespace}/{experiment}/{trained_model_name(experiment, run)}.ilearner"
