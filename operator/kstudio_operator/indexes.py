"""Watch-fed, in-memory lookups (kopf indexes): what each reconcile reads instead of LISTing.

Each function maps one watched object to `{key: value}`; kopf keeps the index current from its watch and
hands it to handlers by the function's name (`experiment_jobs`, `model_users`, ...). Values are trimmed
to what the reconciles read, so memory stays small with many objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kstudio_operator import constants as c

NamespacedName = tuple[str, str]


def _pick(doc: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: doc[k] for k in keys if doc.get(k) is not None}


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
    """TrainedModel names a WebService or Endpoint uses: named in its spec or served (status)."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return set()
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return {str(v) for v in (spec.get("model"), status.get("model")) if v}


def model_users(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, model) → "Kind/name" of each WebService and Endpoint that uses it."""
    return {(namespace, model): f"{body.get('kind')}/{name}" for model in model_references(body)}


def trained_models(namespace: str | None, name: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """(namespace, name) → the TrainedModel's spec, labels and usedBy (runs check their model exists)."""
    return {
        (namespace, name): {
            "spec": dict(body.get("spec") or {}),
            "labels": dict((body.get("metadata") or {}).get("labels") or {}),
            "usedBy": list((body.get("status") or {}).get("usedBy") or []),
        }
    }


def values(index: Mapping[Any, Any] | None, key: Any) -> list[Any]:
    """Every value an index holds for `key` ([] when none)."""
    if index is None or key not in index:
        return []
    return list(index[key])
