"""Names shared by the CRDs, the builders and the handlers: one place to look them up."""

from __future__ import annotations

from typing import Final

# Shared with the pods, the trainer and the scorer, and the people who annotate: spelled once, in the core,
# and re-exported (hence __all__) so that the operator looks every name up in this one module.
from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR, EXIT_KILLED, TERMINATION_LOG
from kstudio_core.labels import (
    ANNOTATION_GENERATION,
    ANNOTATION_MODEL,
    ANNOTATION_MODEL_SHA256,
    ANNOTATION_OUTPUT,
    ANNOTATION_ROLLBACK,
    ANNOTATION_ROTATE_KEY,
    ANNOTATION_RUN,
    ANNOTATION_SCHEDULED_AT,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_TOKEN,
    ANNOTATION_TRAFFIC,
    ANNOTATION_TRIGGER,
    API_GROUP,
    API_VERSION,
    APP_NAME,
    BATCH_JOBS,
    ENDPOINTS,
    EXPERIMENTS,
    FINALIZER,
    GROUP_VERSION,
    LABEL_BATCH_JOB,
    LABEL_COMPONENT,
    LABEL_ENDPOINT,
    LABEL_EXPERIMENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_RUN,
    LABEL_WEB_SERVICE,
    MANAGED_BY,
    TRAINED_MODELS,
    WEB_SERVICES,
)

__all__ = [
    "ANNOTATION_GENERATION",
    "ANNOTATION_MODEL",
    "ANNOTATION_MODEL_SHA256",
    "ANNOTATION_OUTPUT",
    "ANNOTATION_ROLLBACK",
    "ANNOTATION_ROTATE_KEY",
    "ANNOTATION_RUN",
    "ANNOTATION_SCHEDULED_AT",
    "ANNOTATION_SPEC_HASH",
    "ANNOTATION_TOKEN",
    "ANNOTATION_TRAFFIC",
    "ANNOTATION_TRIGGER",
    "API_GROUP",
    "API_VERSION",
    "APP_NAME",
    "BATCH_JOBS",
    "ENDPOINTS",
    "EXIT_INFRASTRUCTURE_ERROR",
    "EXIT_INPUT_ERROR",
    "EXIT_KILLED",
    "EXPERIMENTS",
    "FINALIZER",
    "GROUP_VERSION",
    "LABEL_BATCH_JOB",
    "LABEL_COMPONENT",
    "LABEL_ENDPOINT",
    "LABEL_EXPERIMENT",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "LABEL_RUN",
    "LABEL_WEB_SERVICE",
    "MANAGED_BY",
    "TERMINATION_LOG",
    "TRAINED_MODELS",
    "WEB_SERVICES",
]

CATEGORY: Final = "kstudio"

# Where kopf keeps its progress on our objects.
PROGRESS_PREFIX: Final = f"operator.{API_GROUP}"

TRAINER_CONTAINER: Final = "trainer"
SNAPSHOT_KEY: Final = "snapshot.json"
SNAPSHOT_MOUNT: Final = "/var/run/kstudio/snapshot"
S3_CREDENTIALS_MOUNT: Final = "/var/run/secrets/kstudio/s3"

RUNTIME_UID: Final = 65532

# Written by the operator on a BatchJob's Job: what it planned (model, inputs, shards), so that a restarted
# operator rebuilds the status from the Job.
ANNOTATION_BATCH_PLAN: Final = f"{API_GROUP}/batch-plan"
# Set by the Job controller on the pods of an Indexed Job: the pod's shard.
ANNOTATION_COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"
