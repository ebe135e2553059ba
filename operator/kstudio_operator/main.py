"""The operator's kopf registrations: startup, the indexes, the wake-ups that route watch events to the
reconciles, and the reconciles themselves (handlers/, one module per kind; serving.py for WebService and
Endpoint). Nothing here decides or builds anything.

Run it with `kstudio operator` (see kstudio_operator.cli) or `kopf run -m kstudio_operator.main`.

How it stays cheap: one watch per kind feeds the indexes (indexes.py) and the cache of kstudio objects;
an `on.event` handler below queues the key of each object a change concerns (its own changes, those of
the Jobs/pods it owns or of the objects that reference it), and a fixed pool of workers per kind
reconciles the queued keys (runtime.py). Reconciles read the caches, never LIST; an idle operator makes
no API requests beyond the watches.

kopf itself writes nothing: only `on.event` and index handlers are registered here (tests/unit checks
it), and for those kopf 1.x's processing (`kopf/_core/reactor/processing.py`) adds no finalizer, stores
no progress or diff-base annotation and patches nothing (an event handler's result is stored only when it
returns one; ours return None); it would only remove its own finalizer, whose name no object carries
(configure). So a standby replica can run all of this, with the workers left unstarted (cli.py).
Annotations that kopf wrote when deletion was its `on.delete` (`operator.kstudio.io/last-handled-
configuration`, progress records) stay on older objects: nothing reads them, the cache drops them
(indexes.cached_object), and removing them would cost one write per object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from kstudio_core.kubelogin import cluster_credentials
from kstudio_operator import constants as c
from kstudio_operator import indexes, kopf_scale, metrics
from kstudio_operator.finalizer import finalizing, while_alive
from kstudio_operator.handlers import batchjob, experiment, serving, trainedmodel
from kstudio_operator.kube import Kube
from kstudio_operator.runtime import (
    Key,
    Reconcile,
    Runtime,
    runtime,
    start_workers,
    stop_workers,
    trim_after_bursts,
)
from kstudio_operator.settings import OperatorConfig

kopf_scale.install()  # kopf's start-up barrier linear in the objects, its own patches bounded

EXPERIMENTS = (c.API_GROUP, c.API_VERSION, c.EXPERIMENTS)
TRAINED_MODELS = (c.API_GROUP, c.API_VERSION, c.TRAINED_MODELS)
WEB_SERVICES = (c.API_GROUP, c.API_VERSION, c.WEB_SERVICES)
ENDPOINTS = (c.API_GROUP, c.API_VERSION, c.ENDPOINTS)
BATCH_JOBS = (c.API_GROUP, c.API_VERSION, c.BATCH_JOBS)
BATCH_LABELS = {c.LABEL_BATCH_JOB: kopf.PRESENT}
RUN_LABELS = {c.LABEL_EXPERIMENT: kopf.PRESENT, c.LABEL_RUN: kopf.PRESENT}
SCORER_LABELS = {c.LABEL_ENDPOINT: kopf.PRESENT}
KOPF_FINALIZER = f"{c.PROGRESS_PREFIX}/kopf-unused"  # see configure()
# How long a TrainedModel waits after a change of its users before its usedBy is written (see
# model_user_changed).
USED_BY_SECONDS = 2.0


def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG as it is now (not as it was at import time)."""
    return cluster_credentials(settings)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo | None:
    """kopf's watches and our own client (kube.Kube) use the same credentials."""
    info = credentials(settings)

    async def relogin() -> kopf.ConnectionInfo | None:
        return credentials(settings)

    rt = memo.get("rt")
    if info is not None and isinstance(rt, Runtime) and rt.kube_or_none is None:
        rt.kube_or_none = Kube(info, login=relogin)
    return info


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    # kopf runs no handler of its own "changing" kind (on.create/update/delete/resume, daemons, timers),
    # so it never stores progress or a diff-base and never adds a finalizer; but it removes *its*
    # finalizer from any object no such handler needs, on every replica. So its finalizer must never be
    # ours (c.FINALIZER, which the reconciles add and remove: finalizer.py): a name no object carries.
    settings.persistence.finalizer = KOPF_FINALIZER
    # Our handlers post their own Events (kube.Kube.event); kopf's log lines stay in the log.
    settings.posting.loggers = False
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    store, store_error = None, None
    from kstudio_core.storage import ObjectStore, StorageError, StorageSettings

    try:
        store = ObjectStore(StorageSettings.from_env())
    except StorageError as exc:
        store_error = str(exc)
        logger.warning(f"object storage not configured ({exc}); TrainedModels stay Pending")
    config = OperatorConfig.from_env()
    # kopf hands its indexes to startup handlers already (empty until the watches fill them in place).
    rt = Runtime(config=config, store=store, store_error=store_error, indexes=_indexes(kwargs))
    metrics.track(rt.pending_wakeups, rt.endpoint_phases, rt.in_flight, rt.counts)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    memo["rt"] = rt
    # With --leader-election (cli.run_elected), a standby keeps its caches and queues current but starts
    # no worker until it holds the Lease; without, this process leads from the start.
    leading = memo.get("leading")
    if isinstance(leading, asyncio.Event):
        rt.workers.append(asyncio.create_task(_stand_by(leading, rt), name="standing by"))
    else:
        lead(rt)


async def _stand_by(leading: asyncio.Event, rt: Runtime) -> None:
    """Until this replica leads: its heap trimmed after its watches' bursts (the listing at start; its
    queue, which only the workers drain, is no sign of work here); then lead."""
    trimmer = asyncio.create_task(trim_after_bursts(rt, settled=lambda: True), name="standby heap trimmer")
    try:
        await leading.wait()
    finally:
        trimmer.cancel()
    lead(rt)


def lead(rt: Runtime) -> None:
    """Start reconciling: the workers, and every cached object queued once (the queue keeps a key once:
    objects whose events queued them already are not queued twice). A reconcile of an object nothing
    changed writes nothing. Before kopf has filled every index from its initial listing, the cache is
    empty and the objects come with their first watch events, as at any start."""
    metrics.LEADER.set(1)
    start_workers(rt, RECONCILERS)
    for key in list(rt.objects):
        rt.wake(key)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    rt = memo.get("rt")
    if isinstance(rt, Runtime):
        await stop_workers(rt)
        if rt.kube_or_none is not None:
            await rt.kube_or_none.close()


# --- indexes (watch-fed lookups; handlers receive them by these names) ---------------------------------
def _inline(fn: Callable[..., dict[Any, Any]]) -> Callable[..., Awaitable[dict[Any, Any]]]:
    """`fn` as a coroutine function: kopf runs a plain function in its thread pool, one thread hop per
    watch event and index; these are pure and take microseconds, so they run on the event loop."""

    async def on_loop(**kwargs: Any) -> dict[Any, Any]:
        return fn(**kwargs)

    return on_loop


INDEXES: dict[str, tuple[tuple[str, ...], Callable[..., dict[Any, Any]], dict[str, Any]]] = {
    "experiment_jobs": (("batch", "v1", "jobs"), indexes.experiment_jobs, RUN_LABELS),
    "experiment_pods": (("", "v1", "pods"), indexes.experiment_pods, RUN_LABELS),
    "trained_models": (TRAINED_MODELS, indexes.trained_models, {}),
    "web_services": (WEB_SERVICES, indexes.web_services, {}),
    "services_by_experiment": (WEB_SERVICES, indexes.services_by_experiment, {}),
    "endpoints_by_service": (ENDPOINTS, indexes.endpoints_by_service, {}),
    "experiments_latest": (EXPERIMENTS, indexes.experiments_latest, {}),
    "endpoint_deployments": (("apps", "v1", "deployments"), indexes.endpoint_deployments, SCORER_LABELS),
    "endpoint_pods": (("", "v1", "pods"), indexes.endpoint_pods, SCORER_LABELS),
    "endpoint_services": (("", "v1", "services"), indexes.endpoint_services, SCORER_LABELS),
    "batch_jobs_by_model": (BATCH_JOBS, indexes.batch_jobs_by_model, {}),
    "batch_job_jobs": (("batch", "v1", "jobs"), indexes.batch_job_jobs, BATCH_LABELS),
    "batch_job_pods": (("", "v1", "pods"), indexes.batch_job_pods, BATCH_LABELS),
}
for _id, (_resource, _fn, _labels) in INDEXES.items():
    kopf.index(*_resource, id=_id, labels=_labels or None)(_inline(_fn))
# One index over two kinds: who uses a model.
kopf.index(*WEB_SERVICES, id="model_users")(_inline(indexes.model_users))
kopf.index(*ENDPOINTS, id="model_users")(_inline(indexes.model_users))


def _indexes(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs[name] for name in [*INDEXES, "model_users"]}


# --- wake-ups: a change reaches the reconcile of the object it concerns ------------------------------
# Coroutines, not plain functions: they run on the event loop that owns the work queues (and take
# microseconds), where kopf would run a plain function in a thread.
@kopf.on.event(*EXPERIMENTS)
async def experiment_changed(
    namespace: str | None,
    name: str | None,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    rt = runtime(memo)
    rt.object_changed(("Experiment", str(namespace), str(name)), body, type)
    for service in indexes.values(kwargs["services_by_experiment"], (namespace, name)):
        rt.wake(("WebService", str(namespace), service))


@kopf.on.event("batch", "v1", "jobs", labels=RUN_LABELS)
@kopf.on.event("", "v1", "pods", labels=RUN_LABELS)
async def run_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    runtime(memo).wake(("Experiment", str(namespace), str(labels[c.LABEL_EXPERIMENT])))


@kopf.on.event(*TRAINED_MODELS)
async def trained_model_changed(
    namespace: str | None,
    name: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """The model itself; whoever serves or references it and the services following the Experiment it
    came from, when what they read of it changed (not for its usedBy)."""
    rt = runtime(memo)
    key: Key = ("TrainedModel", str(namespace), str(name))
    rt.object_changed(key, body, type)
    view = list(indexes.trained_models(namespace, name, body).values())
    if not rt.view_changed(key, view, deleted=type == "DELETED"):
        return
    for user in indexes.values(kwargs["model_users"], (namespace, name)):
        kind, _, user_name = str(user).partition("/")
        rt.wake((kind, str(namespace), user_name))
        if kind == "WebService":  # its following Endpoints want this model without naming it
            for endpoint in indexes.values(kwargs["endpoints_by_service"], (namespace, user_name)):
                rt.wake(("Endpoint", str(namespace), str(endpoint["name"])))
    experiment = labels.get(c.LABEL_EXPERIMENT)
    for service in indexes.values(kwargs["services_by_experiment"], (namespace, experiment)):
        rt.wake(("WebService", str(namespace), service))


@kopf.on.event(*WEB_SERVICES)
async def web_service_changed(
    namespace: str | None,
    name: str | None,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """The service and, when its spec or served models changed, its Endpoints (followers take its model, or
    its split during a canary)."""
    rt = runtime(memo)
    key: Key = ("WebService", str(namespace), str(name))
    rt.object_changed(key, body, type)
    view = indexes.web_service_view(body.get("spec") or {}, body.get("status") or {})
    if not rt.view_changed(key, view, deleted=type == "DELETED"):
        return
    for endpoint in indexes.values(kwargs["endpoints_by_service"], (namespace, name)):
        rt.wake(("Endpoint", str(namespace), str(endpoint["name"])))


@kopf.on.event(*ENDPOINTS)
async def endpoint_changed(
    namespace: str | None,
    name: str | None,
    spec: kopf.Spec,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """The endpoint and, when what it reads of it changed, its WebService."""
    rt = runtime(memo)
    key: Key = ("Endpoint", str(namespace), str(name))
    rt.object_changed(key, body, type)
    if rt.view_changed(key, indexes.endpoint_view(body), deleted=type == "DELETED"):
        rt.wake(("WebService", str(namespace), str(spec.get("webService"))))


# What an Endpoint reads of each kind of child: its index entry.
SCORER_VIEWS: dict[str, Callable[..., dict[Any, Any]]] = {
    "Deployment": indexes.endpoint_deployments,
    "Pod": indexes.endpoint_pods,
    "Service": indexes.endpoint_services,
}


@kopf.on.event("apps", "v1", "deployments", labels=SCORER_LABELS)
@kopf.on.event("", "v1", "pods", labels=SCORER_LABELS)
@kopf.on.event("", "v1", "services", labels=SCORER_LABELS)
async def scorer_changed(
    namespace: str | None,
    name: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Its Endpoint, when what the Endpoint reads of this child (the index entry) changed."""
    owner: Key = ("Endpoint", str(namespace), str(labels[c.LABEL_ENDPOINT]))
    _child_changed(runtime(memo), SCORER_VIEWS, owner, namespace, name, labels, body, type)


def _child_changed(
    rt: Runtime,
    views: dict[str, Callable[..., dict[Any, Any]]],
    owner: Key,
    namespace: str | None,
    name: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    type: str | None,
) -> None:
    """Wake `owner` when what it reads of this child (its index entry, by the child's kind) changed."""
    kind = str(body.get("kind"))
    index = views.get(kind)  # a body without its kind: wake, as for any change
    view = list(index(namespace=namespace, name=name, labels=labels, body=body).values()) if index else None
    if index is None or rt.view_changed((kind, str(namespace), str(name)), view, deleted=type == "DELETED"):
        rt.wake(owner)


@kopf.on.event(*WEB_SERVICES)
@kopf.on.event(*ENDPOINTS)
async def model_user_changed(
    namespace: str | None, name: str | None, body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Models this object stopped or started using re-check their usedBy (and the Experiments that made
    them their pruning). Its other changes (status, replicas, ...) do not concern them."""
    rt = runtime(memo)
    referrer = (str(body.get("kind")), str(namespace), str(name))
    now = set() if type == "DELETED" else indexes.model_references(body)
    before = rt.references.get(referrer, set())
    rt.references[referrer] = now
    if not now:
        rt.references.pop(referrer, None)
    for model in before ^ now:
        # usedBy is what the model's status shows; its deletion guard reads the index, current at once.
        # So a burst of new users (a thousand WebServices of one model) is one status write, not one each.
        rt.wake_after(("TrainedModel", str(namespace), model), USED_BY_SECONDS)


@kopf.on.event(*BATCH_JOBS)
async def batch_job_changed(
    namespace: str | None, name: str | None, body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any
) -> None:
    runtime(memo).object_changed(("BatchJob", str(namespace), str(name)), body, type)


# What a BatchJob reads of its Job and its shard pods.
SHARD_VIEWS: dict[str, Callable[..., dict[Any, Any]]] = {
    "Job": indexes.batch_job_jobs,
    "Pod": indexes.batch_job_pods,
}


@kopf.on.event("batch", "v1", "jobs", labels=BATCH_LABELS)
@kopf.on.event("", "v1", "pods", labels=BATCH_LABELS)
async def batch_shards_changed(
    namespace: str | None,
    name: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Its BatchJob, when what it reads of this Job or pod (the index entry) changed."""
    owner: Key = ("BatchJob", str(namespace), str(labels[c.LABEL_BATCH_JOB]))
    _child_changed(runtime(memo), SHARD_VIEWS, owner, namespace, name, labels, body, type)


@kopf.on.event(*TRAINED_MODELS)
@kopf.on.event(*ENDPOINTS)
async def batch_model_changed(
    namespace: str | None, name: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """BatchJobs waiting for this TrainedModel or Endpoint to be Ready."""
    rt = runtime(memo)
    for batch_job in indexes.values(kwargs["batch_jobs_by_model"], (namespace, f"{body.get('kind')}/{name}")):
        rt.wake(("BatchJob", str(namespace), str(batch_job)))


# --- reconciles: the workers of each kind call these (runtime.py); deletion included (finalizer.py) ----
RECONCILERS: dict[str, Reconcile] = {
    # kopf's on.delete("cleanup", retries=10, backoff=5) and ("guard", retries=None, backoff=5) before.
    "Experiment": finalizing(
        experiment.reconcile_experiment, experiment.cleanup_experiment, retries=10, backoff=5
    ),
    "TrainedModel": finalizing(
        trainedmodel.reconcile_trained_model, trainedmodel.release_trained_model, retries=None, backoff=5
    ),
    "WebService": while_alive(serving.reconcile_web_service),
    "Endpoint": while_alive(serving.reconcile_endpoint),
    "BatchJob": while_alive(batchjob.reconcile_batch_job),
}
