"""The operator: registers the kopf handlers (and nothing else; each delegates to handlers/<kind>.py).

Run it with `kstudio operator` (see kstudio_operator.cli) or `kopf run -m kstudio_operator.main`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import kopf

from kstudio_operator import constants as c
from kstudio_operator.handlers import experiment, trainedmodel
from kstudio_operator.handlers.common import Context
from kstudio_operator.kube import Kube
from kstudio_operator.settings import OperatorConfig

CONFIG = OperatorConfig.from_env()
EXPERIMENTS = (c.API_GROUP, c.API_VERSION, c.EXPERIMENTS)
TRAINED_MODELS = (c.API_GROUP, c.API_VERSION, c.TRAINED_MODELS)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG as it is now (not as it was at import time)."""
    info = kopf.login_with_service_account(**kwargs)
    if info is None:
        return kopf.login_with_kubeconfig(**kwargs)
    # kopf dials https://kubernetes.default.svc, which needs cluster DNS; like client-go's in-cluster config,
    # use the API service's address from the environment the kubelet sets (works without DNS).
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        host = f"[{host}]" if ":" in host else host
        info = dataclasses.replace(info, server=f"https://{host}:{port}")
    return info


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.PROGRESS_PREFIX, key="last-handled-configuration"
    )
    # Our handlers post their own Events (kube.Kube.event); kopf's log lines stay in the log.
    settings.posting.loggers = False
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 120
    settings.execution.max_workers = 8
    store, store_error = None, None
    try:
        from kstudio_core.storage import ObjectStore, StorageError, StorageSettings

        try:
            store = ObjectStore(StorageSettings.from_env())
        except StorageError as exc:
            store_error = str(exc)
            logger.warning(f"object storage not configured ({exc}); TrainedModels stay Pending")
    except ImportError as exc:  # pragma: no cover
        store_error = str(exc)
    memo["ctx"] = Context(kube=Kube(), config=CONFIG, store=store, store_error=store_error)


# Experiment: validation on every spec change (PermanentError: an Event, no retries); the run loop is a
# timer, so it also runs for objects that changed while the operator was down.
kopf.on.create(*EXPERIMENTS, id="validate")(experiment.validate_experiment)
kopf.on.update(*EXPERIMENTS, id="validate", field="spec")(experiment.validate_experiment)
kopf.on.resume(*EXPERIMENTS, id="validate")(experiment.validate_experiment)
kopf.timer(*EXPERIMENTS, id="reconcile", interval=CONFIG.reconcile_interval, sharp=False)(
    experiment.reconcile_experiment
)
kopf.on.delete(*EXPERIMENTS, id="cleanup", retries=10, backoff=5)(experiment.delete_experiment)

# TrainedModel: verify + usage on a timer; deletion blocked while referenced (retried until unreferenced).
kopf.timer(*TRAINED_MODELS, id="reconcile", interval=CONFIG.reconcile_interval, sharp=False)(
    trainedmodel.reconcile_trained_model
)
kopf.on.delete(*TRAINED_MODELS, id="guard", retries=None, backoff=5)(trainedmodel.delete_trained_model)
