"""A BatchJob's children, as pure functions: the plan its shards read, and its Indexed Job.

The Job controller is the distributed engine: completionMode Indexed runs one pod per shard (index),
`backoffLimitPerIndex` retries each shard on its own, and the podFailurePolicy maps the shard runner's exit
codes (kstudio_core.exitcodes): 2 (bad input: a missing column, too many bad rows, a model that does not
match its digest) fails that index at once, and with `maxFailedIndexes: 0` the whole Job; 75
(infrastructure) counts against the index's retries; a pod disrupted by the cluster (eviction,
preemption) is replaced without counting. Pods are replaced only once the old one is gone
(podReplacementPolicy Failed, which a podFailurePolicy implies), so one shard never has two writers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from kstudio_core.batch import SHARD_CONTAINER, BatchPlan, ErrorThreshold, InputObject, PlannedModel
from kstudio_core.environment import FieldRef, ShardEnv
from kstudio_operator import constants as c
from kstudio_operator.builders.scorer import quantity_bytes
from kstudio_operator.builders.training import (
    SCRATCH,
    container_basics,
    pod_storage,
    process_env,
    restricted_pod_security_context,
    s3_credentials_volume,
)
from kstudio_operator.resources.batchjob import BatchJobSpec
from kstudio_operator.settings import OperatorConfig

# One shard is one core: no BLAS or OpenMP thread pools competing with the other shards on the node.
SINGLE_CORE_ENV = [
    {"name": name, "value": "1"} for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
]


@dataclass(frozen=True)
class JobPlan:
    """What a BatchJob's Job was created for, kept on the Job (annotation kstudio.io/batch-plan): a
    restarted operator reads it back instead of planning again."""

    model: str
    model_source: str
    model_uri: str
    model_sha256: str
    objects: int
    size_bytes: int
    format: str
    shards: int

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_annotation(cls, text: str | None) -> JobPlan | None:
        try:
            return cls(**json.loads(text or ""))
        except (ValueError, TypeError):
            return None


def job_name(batch_job: str) -> str:
    return batch_job


def batch_labels(batch_job: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_COMPONENT: "batch-shard",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_BATCH_JOB: batch_job,
    }


def output_prefix(spec: BatchJobSpec) -> str:
    return spec.output.uri if spec.output.uri.endswith("/") else spec.output.uri + "/"


def batch_plan(
    namespace: str,
    name: str,
    uid: str,
    spec: BatchJobSpec,
    inputs: list[InputObject],
    input_format: str,
    shards: int,
    model: PlannedModel,
) -> BatchPlan:
    """The plan every shard reads (kstudio_core.batch.BatchPlan)."""
    threshold = spec.error_threshold
    return BatchPlan(
        batch_job=f"{namespace}/{name}",
        uid=uid,
        inputs=inputs,
        input_format=input_format,
        output_prefix=output_prefix(spec),
        output_format=spec.output.format,
        one_file=spec.output.one_file,
        shards=shards,
        columns=list(spec.output.columns) if spec.output.columns else None,
        include_inputs=spec.output.include_inputs,
        error_threshold=ErrorThreshold(
            rows=threshold.rows if threshold else None, percent=threshold.percent if threshold else None
        ),
        model=model,
    )


def shard_job(
    namespace: str,
    name: str,
    spec: BatchJobSpec,
    plan: BatchPlan,
    job_plan: JobPlan,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Indexed Job: `plan.shards` completions, `spec.parallelism` at once (default all)."""
    labels = batch_labels(name)
    env = ShardEnv(
        batch_plan_uri=plan.layout.plan,
        model_uri=plan.model.uri,
        model_sha256=plan.model.sha256,
        storage=pod_storage(config),
        model_dir=f"{SCRATCH}/model",
        # The scorer's rule: a model that inflates beyond half the memory limit is refused before loading.
        max_model_bytes=quantity_bytes(spec.resources.memory) // 2,
        pod_name=FieldRef(field_path="metadata.name"),
    )
    container = {
        "name": SHARD_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["kstudio"],
        "args": ["score-shard", "--termination-log", c.TERMINATION_LOG],
        "env": env.container_env() + process_env() + SINGLE_CORE_ENV,
        **container_basics(spec.resources.cpu, spec.resources.memory),
        "volumeMounts": [
            {"name": "s3-credentials", "mountPath": c.S3_CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": SCRATCH},
        ],
    }
    exit_codes = {"containerName": SHARD_CONTAINER, "operator": "In"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": {c.ANNOTATION_BATCH_PLAN: job_plan.to_annotation()},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": plan.shards,
            "parallelism": min(spec.parallelism or plan.shards, plan.shards),
            "backoffLimitPerIndex": spec.retries_per_shard,
            "maxFailedIndexes": 0,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailIndex", "onExitCodes": {**exit_codes, "values": [c.EXIT_INPUT_ERROR]}},
                    {
                        "action": "Count",
                        "onExitCodes": {**exit_codes, "values": [c.EXIT_INFRASTRUCTURE_ERROR]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security_context(),
                    **spec.scheduling.pod_spec_fields(),
                    "containers": [container],
                    "volumes": [
                        s3_credentials_volume(spec.credentials_secret),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                    ],
                },
            },
        },
    }
