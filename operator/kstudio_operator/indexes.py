"""Watch-fed, in-memory lookups (kopf indexes): what each reconcile reads instead of LISTing.

Each function maps one watched object to `{key: value}`; kopf keeps the index current from its watch and
hands it to handlers by the function's name (`experiment_jobs`, `model_users`, ...). Values are trimmed
to what the reconciles read, so memory stays small with many objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from kstudio_operator import constants as c

NamespacedName = tuple[str, str]


def _pick(doc: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: doc[k] for k in keys if doc.get(k) is not None}


# Annotations no reconcile reads that can be as large as the spec: kubectl's client-side apply copy and
# kopf's own records (progress, last handled configuration).
_BULKY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def cached_object(body: Mapping[str, Any]) -> dict[str, Any]:
    """A kstudio object as the reconciles read it (runtime.Runtime.objects): without managedFields and
    bulky annotations, which are most of a server-side-applied object's size."""
    meta = body.get("metadata") or {}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in _BULKY_ANNOTATIONS and not k.startswith(c.PROGRESS_PREFIX)
    }
    kept = _pick(
        meta,
        *("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp"),
        *("deletionTimestamp", "finalizers", "labels", "ownerReferences"),
    )
    if annotations:
        kept["annotations"] = annotations
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def trim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "metadata": _pick(meta, "name", "labels", "annotations", "creationTimestamp"),
        "status": _pick(
            status, "conditions", "active", "ready", "failed", "succeeded", "startTime", "completionTime"
        ),
    }


def trim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "metadata": _pick(meta, "name", "labels", "creationTimestamp"),
        "status": _pick(status, "phase", "containerStatuses"),
    }


def experiment_jobs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, experiment) → the training Jobs of its runs."""
    experiment = labels.get(c.LABEL_EXPERIMENT)
    return {(namespace, experiment): trim_job(body)} if experiment and c.LABEL_RUN in labels else {}


def experiment_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, experiment) → the pods of its training Jobs (why a run failed, what it is doing)."""
    experiment = labels.get(c.LABEL_EXPERIMENT)
    return {(namespace, experiment): trim_pod(body)} if experiment and c.LABEL_RUN in labels else {}


def model_references(body: Mapping[str, Any]) -> set[str]:
    """TrainedModel names a WebService or Endpoint uses: named in its spec (model, traffic, mirror) or
    served (status: model, traffic, mirror)."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return set()
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    named = [spec.get("model"), status.get("model")]
    named += [(doc.get("mirror") or {}).get("model") for doc in (spec, status)]
    for listed in (spec.get("traffic"), status.get("traffic")):
        named += [t.get("model") for t in listed or [] if isinstance(t, dict)]
    return {str(v) for v in named if v}


def model_users(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, model) → "Kind/name" of each WebService and Endpoint that uses it."""
    return {(namespace, model): f"{body.get('kind')}/{name}" for model in model_references(body)}


def trained_models(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) → the TrainedModel's spec, labels and the status fields serving decisions read."""
    status = body.get("status") or {}
    return {
        (namespace, name): {
            "spec": dict(body.get("spec") or {}),
            "labels": dict((body.get("metadata") or {}).get("labels") or {}),
            "status": _pick(
                status, "phase", "reason", "message", "task", "inputSchema", "metrics", "sizeBytes"
            ),
        }
    }


def web_services(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) → the WebService's spec and status (its Endpoints follow its model)."""
    return {
        (namespace, name): {"spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}
    }


def web_service_view(spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """What the Endpoints of a WebService read of it: its spec and the model (or split) it serves."""
    return {"spec": dict(spec), "model": status.get("model"), "traffic": status.get("traffic")}


def endpoint_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a WebService reads of one of its Endpoints."""
    status = _pick(body.get("status") or {}, "phase", "model", "modelDigest", "url", "split")
    return {"spec": dict(body.get("spec") or {}), "status": status}


def endpoints_by_service(
    namespace: str | None, name: str | None, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """(namespace, web service) → each of its Endpoints: name, spec, status."""
    ws = (body.get("spec") or {}).get("webService")
    return {(namespace, ws): {"name": name, **endpoint_view(body)}} if ws else {}


def services_by_experiment(
    namespace: str | None, name: str | None, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """(namespace, experiment) → WebServices that follow its models (spec.modelFrom)."""
    experiment = ((body.get("spec") or {}).get("modelFrom") or {}).get("experiment")
    return {(namespace, experiment): name} if experiment else {}


def experiments_latest(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, experiment) → its latest TrainedModel (what a following WebService may promote)."""
    return {(namespace, name): (body.get("status") or {}).get("latestTrainedModel")}


def endpoint_deployments(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """(namespace, endpoint) → its scorer Deployment: annotations, pod placement, rollout status."""
    endpoint = labels.get(c.LABEL_ENDPOINT)
    meta = body.get("metadata") or {}
    pod_spec = (((body.get("spec") or {}).get("template") or {}).get("spec")) or {}
    entry = {
        "name": meta.get("name"),
        "annotations": dict(meta.get("annotations") or {}),
        # The placement: what a new spec drops must be sent as null (decisions.endpoint.deployment_patch).
        "nodeSelector": dict(pod_spec.get("nodeSelector") or {}),
        "tolerations": list(pod_spec.get("tolerations") or []),
        "status": _pick(
            body.get("status") or {}, "replicas", "readyReplicas", "updatedReplicas", "conditions"
        ),
    }
    return {(namespace, endpoint): entry} if endpoint else {}


def endpoint_services(
    namespace: str | None, labels: kopf.Labels, name: str | None, **_: Any
) -> dict[Any, Any]:
    endpoint = labels.get(c.LABEL_ENDPOINT)
    return {(namespace, endpoint): name} if endpoint else {}


def endpoint_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, endpoint) → its scorer pods: the model each serves, ready or not, and why not."""
    endpoint = labels.get(c.LABEL_ENDPOINT)
    if not endpoint:
        return {}
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    ready = any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in status.get("conditions") or []
    )
    waiting, last = None, None
    for cs in status.get("containerStatuses") or []:
        waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason") or waiting
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            last = _pick(term, "exitCode", "reason", "message")
    return {
        (namespace, endpoint): {
            "name": meta.get("name"),
            "model": annotations.get(c.ANNOTATION_MODEL),
            "sha256": annotations.get(c.ANNOTATION_MODEL_SHA256),
            "traffic": annotations.get(c.ANNOTATION_TRAFFIC),
            "ready": ready,
            "deleting": bool(meta.get("deletionTimestamp")),
            "waiting": waiting,
            "lastTerminated": last,
        }
    }


class NamespaceEntries(Mapping[str, Any]):
    """The first value of each `(namespace, name)` key of an index in one namespace, by name, looked up
    when asked: a reconcile reads two or three models, never a copy of an index of thousands."""

    def __init__(self, index: Mapping[Any, Any], namespace: str) -> None:
        self._index, self._namespace = index, namespace

    def __getitem__(self, name: str) -> Any:
        found = values(self._index, (self._namespace, name))
        if not found:
            raise KeyError(name)
        return found[0]

    def __iter__(self) -> Iterator[str]:
        here = self._namespace
        return (name for (ns, name), entries in list(self._index.items()) if ns == here and entries)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def values(index: Mapping[Any, Any] | None, key: Any) -> list[Any]:
    """Every value an index holds for `key` ([] when none)."""
    if index is None or key not in index:
        return []
    return list(index[key])


# --- BatchJobs ------------------------------------------------------------------------------------------
def batch_jobs_by_model(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, "TrainedModel/<name>" or "Endpoint/<name>") → BatchJobs waiting for it to be Ready:
    those that have not recorded their model yet."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if status.get("modelDigest") or status.get("phase") in ("Succeeded", "Failed"):
        return {}
    if spec.get("model"):
        return {(namespace, f"TrainedModel/{spec['model']}"): name}
    if spec.get("endpoint"):
        return {(namespace, f"Endpoint/{spec['endpoint']}"): name}
    return {}


def batch_job_jobs(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, batch job) → its Indexed Job: the plan it was made for, its progress by index."""
    batch_job = labels.get(c.LABEL_BATCH_JOB)
    if not batch_job:
        return {}
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    entry = {
        "metadata": {
            "name": meta.get("name"),
            "annotations": _pick(annotations, c.ANNOTATION_BATCH_PLAN),
            "ownerReferences": [{"uid": ref.get("uid")} for ref in meta.get("ownerReferences") or []],
        },
        "spec": _pick(body.get("spec") or {}, "completions", "parallelism"),
        "status": _pick(
            body.get("status") or {},
            "conditions",
            "active",
            "ready",
            "failed",
            "succeeded",
            "completedIndexes",
            "failedIndexes",
            "startTime",
            "completionTime",
        ),
    }
    return {(namespace, batch_job): entry}


def batch_job_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, batch job) → its shard pods: index, phase, and how the shard container ended."""
    batch_job = labels.get(c.LABEL_BATCH_JOB)
    if not batch_job:
        return {}
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    index = str(
        (meta.get("annotations") or {}).get(c.ANNOTATION_COMPLETION_INDEX)
        or labels.get(c.ANNOTATION_COMPLETION_INDEX)
        or ""
    )
    entry: dict[str, Any] = {
        "name": meta.get("name"),
        "index": int(index) if index.isdigit() else None,
        "phase": status.get("phase"),
        "created": meta.get("creationTimestamp"),
    }
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            entry |= {
                "exitCode": term.get("exitCode"),
                "reason": term.get("reason"),
                "message": term.get("message"),
            }
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):  # why a shard does not start (a missing Secret, an image it cannot pull)
            entry["waiting"] = f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    return {(namespace, batch_job): entry}
