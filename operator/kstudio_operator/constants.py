"""Names shared by the CRDs, the builders and the handlers: one place to look them up."""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "kstudio.io"
API_VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{API_GROUP}/{API_VERSION}"
CATEGORY: Final = "kstudio"

# Plurals, as used in API paths and by kopf.
EXPERIMENTS: Final = "experiments"
TRAINED_MODELS: Final = "trainedmodels"
WEB_SERVICES: Final = "webservices"
ENDPOINTS: Final = "endpoints"

# Labels on every child object (app.kubernetes.io/* as recommended by Kubernetes).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "kstudio-operator"
APP_NAME: Final = "kstudio"

LABEL_EXPERIMENT: Final = f"{API_GROUP}/experiment"
LABEL_RUN: Final = f"{API_GROUP}/run"

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

# Trainer exit codes (contract with `kstudio train`).
EXIT_SPEC_ERROR: Final = 2
EXIT_INFRA_ERROR: Final = 75
# 128 + SIGKILL: what a container killed by the kernel's OOM killer (or any SIGKILL) exits with.
EXIT_KILLED: Final = 137

RUNTIME_UID: Final = 65532
