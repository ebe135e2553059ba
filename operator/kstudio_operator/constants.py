"""Names shared by the CRDs, the builders and the handlers: one place to look them up."""

from __future__ import annotations

from typing import Final

from kstudio_core import exitcodes

API_GROUP: Final = "kstudio.io"
API_VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{API_GROUP}/{API_VERSION}"
CATEGORY: Final = "kstudio"

# Plurals, as used in API paths and by kopf.
EXPERIMENTS: Final = "experiments"
TRAINED_MODELS: Final = "trainedmodels"
WEB_SERVICES: Final = "webservices"
ENDPOINTS: Final = "endpoints"

__all__ = [
    "APP_NAME",
    "LABEL_COMPONENT",
    "LABEL_ENDPOINT",
    "LABEL_EXPERIMENT",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_PART_OF",
    "LABEL_RUN",
    "LABEL_WEB_SERVICE",
    "MANAGED_BY",
]

# Labels on every child object (app.kubernetes.io/* as recommended by Kubernetes): shared with the pods.
from kstudio_core.labels import (  # noqa: E402
    APP_NAME,
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

# The "Run" button: set or change this annotation on an Experiment to start a run.
ANNOTATION_RUN: Final = f"{API_GROUP}/run"
# Recorded on each training Job so that a restarted operator can rebuild the run history from the Jobs.
ANNOTATION_GENERATION: Final = f"{API_GROUP}/generation"
ANNOTATION_TOKEN: Final = f"{API_GROUP}/run-token"
ANNOTATION_SCHEDULED_AT: Final = f"{API_GROUP}/scheduled-at"
ANNOTATION_TRIGGER: Final = f"{API_GROUP}/trigger"
ANNOTATION_OUTPUT: Final = f"{API_GROUP}/output"

FINALIZER: Final = f"{API_GROUP}/finalizer"
PROGRESS_PREFIX: Final = f"operator.{API_GROUP}"

TRAINER_CONTAINER: Final = "trainer"
SNAPSHOT_KEY: Final = "snapshot.json"
SNAPSHOT_MOUNT: Final = "/var/run/kstudio/snapshot"
S3_CREDENTIALS_MOUNT: Final = "/var/run/secrets/kstudio/s3"
TERMINATION_LOG: Final = "/dev/termination-log"

# Exit codes of the pods (contract with `kstudio train` / `kstudio serve`).
EXIT_SPEC_ERROR: Final = exitcodes.EXIT_INPUT_ERROR
EXIT_INFRA_ERROR: Final = exitcodes.EXIT_INFRASTRUCTURE_ERROR
EXIT_KILLED: Final = exitcodes.EXIT_KILLED

RUNTIME_UID: Final = 65532
