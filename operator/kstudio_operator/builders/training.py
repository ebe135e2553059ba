"""The training run's children: the snapshot ConfigMap and the Job that runs `kstudio train`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kstudio_core.environment import StorageEnv, TrainerEnv
from kstudio_operator import constants as c
from kstudio_operator.builders.names import artifact_uri, job_name, snapshot_configmap_name
from kstudio_operator.resources.experiment import ExperimentSpec, Trigger
from kstudio_operator.settings import OperatorConfig


@dataclass(frozen=True)
class RunRequest:
    """A run the operator decided to start: its number and what triggered it."""

    run: int
    generation: int
    triggers: tuple[Trigger, ...]
    token: str | None = None
    scheduled_at: datetime | None = None
    extra_annotations: dict[str, str] = field(default_factory=dict)


# The container's writable scratch space (an emptyDir; the root filesystem is read-only).
SCRATCH = "/tmp"  # noqa: S108


def run_labels(experiment: str, run: int) -> dict[str, str]:
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_COMPONENT: "trainer",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_EXPERIMENT: experiment,
        c.LABEL_RUN: str(run),
    }


def restricted_pod_security_context() -> dict[str, Any]:
    """Pod-level securityContext that satisfies the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": c.RUNTIME_UID,
        "runAsGroup": c.RUNTIME_UID,
        "fsGroup": c.RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_basics(cpu: str, memory: str) -> dict[str, Any]:
    """What every kstudio container has: requests (memory also as the limit), the restricted security
    context, and the termination message the operator reads when it fails."""
    return {
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": c.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def pod_storage(config: OperatorConfig) -> StorageEnv:
    """Where pods find the object store; its keys reach them only as the mounted storage Secret."""
    return StorageEnv(
        s3_endpoint=config.pod_s3_endpoint,
        s3_secure=config.pod_s3_secure,
        s3_credentials_dir=c.S3_CREDENTIALS_MOUNT,
    )


def process_env() -> list[dict[str, str]]:
    """What any Python process in our read-only containers needs: a writable home and temp dir, and logs
    written as they happen."""
    return [
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def s3_credentials_volume(secret: str) -> dict[str, Any]:
    """The storage Secret (keys accessKey, secretKey) as the volume `s3-credentials`."""
    items = [{"key": "accessKey", "path": "accessKey"}, {"key": "secretKey", "path": "secretKey"}]
    return {"name": "s3-credentials", "secret": {"secretName": secret, "items": items}}


def restricted_container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": c.RUNTIME_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def snapshot_configmap(
    namespace: str, experiment: str, spec: ExperimentSpec, request: RunRequest
) -> dict[str, Any]:
    """The immutable experiment snapshot of one run, as the trainer reads it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": snapshot_configmap_name(experiment, request.run),
            "namespace": namespace,
            "labels": run_labels(experiment, request.run),
            "annotations": {c.ANNOTATION_GENERATION: str(request.generation)},
        },
        "immutable": True,
        "data": {c.SNAPSHOT_KEY: json.dumps(spec.snapshot(), indent=2, sort_keys=True)},
    }


def training_job(
    namespace: str,
    experiment: str,
    spec: ExperimentSpec,
    request: RunRequest,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Job of one run.

    Failure handling is explicit so a run fails instead of looping: exit 2 (bad spec or data) and exit 137
    (killed, typically out of memory) fail the Job at once through the podFailurePolicy; only exit 75
    (infrastructure, e.g. storage unreachable) is retried, at most `spec.backoffLimit` times; disruptions
    (eviction, preemption) are not counted.
    """
    name = job_name(experiment, request.run)
    output = artifact_uri(spec, namespace, experiment, request.run)
    labels = run_labels(experiment, request.run)
    annotations = {
        c.ANNOTATION_GENERATION: str(request.generation),
        c.ANNOTATION_TRIGGER: ",".join(request.triggers),
        c.ANNOTATION_OUTPUT: output,
        **request.extra_annotations,
    }
    if request.token is not None:
        annotations[c.ANNOTATION_TOKEN] = request.token
    if request.scheduled_at is not None:
        annotations[c.ANNOTATION_SCHEDULED_AT] = request.scheduled_at.isoformat().replace("+00:00", "Z")
    env = TrainerEnv(storage=pod_storage(config)).container_env() + process_env()
    container = {
        "name": c.TRAINER_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["kstudio"],
        "args": [
            "train",
            "--snapshot",
            f"{c.SNAPSHOT_MOUNT}/{c.SNAPSHOT_KEY}",
            "--run",
            str(request.run),
            "--output",
            output,
            "--termination-log",
            c.TERMINATION_LOG,
        ],
        "env": env,
        **container_basics(spec.resources.cpu, spec.resources.memory),
        "volumeMounts": [
            {"name": "snapshot", "mountPath": c.SNAPSHOT_MOUNT, "readOnly": True},
            {"name": "s3-credentials", "mountPath": c.S3_CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": SCRATCH},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": c.TRAINER_CONTAINER,
                            "operator": "In",
                            "values": [c.EXIT_INPUT_ERROR, c.EXIT_KILLED],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {c.ANNOTATION_GENERATION: str(request.generation)},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security_context(),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "snapshot",
                            "configMap": {"name": snapshot_configmap_name(experiment, request.run)},
                        },
                        s3_credentials_volume(spec.storage.credentials_secret),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                    ],
                },
            },
        },
    }
