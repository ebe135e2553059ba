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
    APP_NAME,
    FINALIZER,
    LABEL_COMPONENT,
    LABEL_ENDPOINT,
    LABEL_EXPERIMENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_RUN,
    LABEL_WEB_SERVICE,
    MANAGED_BY,
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
    "APP_NAME",
    "EXIT_INFRASTRUCTURE_ERROR",
    "EXIT_INPUT_ERROR",
    "EXIT_KILLED",
    "FINALIZER",
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
]

API_VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{API_GROUP}/{API_VERSION}"
CATEGORY: Final = "kstudio"

# Plurals, as used in API paths and by kopf.
EXPERIMENTS: Final = "experiments"
TRAINED_MODELS: Final = "trainedmodels"
WEB_SERVICES: Final = "webservices"
ENDPOINTS: Final = "endpoints"

# Where kopf keeps its progress on our objects.
PROGRESS_PREFIX: Final = f"operator.{API_GROUP}"

TRAINER_CONTAINER: Final = "trainer"
SNAPSHOT_KEY: Final = "snapshot.json"
SNAPSHOT_MOUNT: Final = "/var/run/kstudio/snapshot"
S3_CREDENTIALS_MOUNT: Final = "/var/run/secrets/kstudio/s3"

RUNTIME_UID: Final = 65532
