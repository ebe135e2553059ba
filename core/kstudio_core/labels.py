"""Label and annotation keys: the API group's names on objects, shared by the operator, the pods it
builds and the people (or tools) who set an annotation to ask for something."""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "kstudio.io"
API_VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{API_GROUP}/{API_VERSION}"

# Plurals of the five kinds, as in API paths (the operator, its kopf registrations, the console's watches).
EXPERIMENTS: Final = "experiments"
TRAINED_MODELS: Final = "trainedmodels"
WEB_SERVICES: Final = "webservices"
ENDPOINTS: Final = "endpoints"
BATCH_JOBS: Final = "batchjobs"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "kstudio-operator"
APP_NAME: Final = "kstudio"

LABEL_EXPERIMENT: Final = f"{API_GROUP}/experiment"
LABEL_RUN: Final = f"{API_GROUP}/run"
LABEL_WEB_SERVICE: Final = f"{API_GROUP}/webservice"
LABEL_ENDPOINT: Final = f"{API_GROUP}/endpoint"
LABEL_BATCH_JOB: Final = f"{API_GROUP}/batchjob"

# Requests a person sets on an object:
# the "Run" button: set or change it on an Experiment to start a run;
ANNOTATION_RUN: Final = f"{API_GROUP}/run"
# `<token>` on an Endpoint: serve the model served before the last rollout, until the spec changes;
ANNOTATION_ROLLBACK: Final = f"{API_GROUP}/rollback"
# `primaryKey/<token>` or `secondaryKey/<token>` on an Endpoint: regenerate that key once per token.
ANNOTATION_ROTATE_KEY: Final = f"{API_GROUP}/rotate-key"

# Written by the operator on a training Job, so that a restarted operator rebuilds the run history from
# the Jobs: the Experiment generation, the run's token, schedule slot, trigger and artifact URI.
ANNOTATION_GENERATION: Final = f"{API_GROUP}/generation"
ANNOTATION_TOKEN: Final = f"{API_GROUP}/run-token"
ANNOTATION_SCHEDULED_AT: Final = f"{API_GROUP}/scheduled-at"
ANNOTATION_TRIGGER: Final = f"{API_GROUP}/trigger"
ANNOTATION_OUTPUT: Final = f"{API_GROUP}/output"

# Written by the operator on a scorer pod template: the model its pods serve (name and sha256), read back
# from the pods to report what is really served; and on the Deployment the hash of the spec it applied.
ANNOTATION_MODEL: Final = f"{API_GROUP}/model"
ANNOTATION_MODEL_SHA256: Final = f"{API_GROUP}/model-sha256"
# ... and every model of its traffic split with its sha256 and weight (`name@sha256:weight,...`): what
# the pods load, read back likewise (the first two name the model with the largest weight).
ANNOTATION_TRAFFIC: Final = f"{API_GROUP}/traffic"
ANNOTATION_SPEC_HASH: Final = f"{API_GROUP}/spec-hash"

FINALIZER: Final = f"{API_GROUP}/finalizer"
