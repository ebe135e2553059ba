"""Kubernetes I/O for the handlers: idempotent create, tolerant delete, label-selected lists.

Every write uses a deterministic name. A 409 on create means "already there" (a previous attempt or a
previous operator process made it) and returns the existing object; a 404 on delete means "already gone".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from kstudio_operator import constants as c

log = logging.getLogger(__name__)
_CLIENT: kubernetes.client.ApiClient | None = None


def load_client() -> kubernetes.client.ApiClient:
    """One shared API client: in-cluster credentials if present, else the kubeconfig ($KUBECONFIG)."""
    global _CLIENT
    if _CLIENT is None:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            # Read $KUBECONFIG now: the client library's default is captured when it is imported.
            kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)  # type: ignore[no-untyped-call]
        _CLIENT = kubernetes.client.ApiClient()
    return _CLIENT


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient | None = None) -> None:
        # Typed as Any: we pass and receive plain dicts (manifests), not the client's model classes.
        self.client: Any = client or load_client()
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.batch: Any = kubernetes.client.BatchV1Api(self.client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.client)

    def _dict(self, obj: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.client.sanitize_for_serialization(obj))

    # --- create (409 tolerant) ---------------------------------------------------------------------
    def ensure_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self._dict(self.core.create_namespaced_config_map(ns, body))
        except ApiException as exc:
            if exc.status != 409:
                raise
            return self._dict(self.core.read_namespaced_config_map(name, ns))

    def ensure_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the Job, created-now). An existing Job is returned as it is: a run's Job never changes."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self._dict(self.batch.create_namespaced_job(ns, body)), True
        except ApiException as exc:
            if exc.status != 409:
                raise
            return self._dict(self.batch.read_namespaced_job(name, ns)), False

    def ensure_custom(self, plural: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            created = self.custom.create_namespaced_custom_object(
                c.API_GROUP, c.API_VERSION, ns, plural, body
            )
            return cast(dict[str, Any], created), True
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = self.custom.get_namespaced_custom_object(c.API_GROUP, c.API_VERSION, ns, plural, name)
            return cast(dict[str, Any], existing), False

    # --- read ------------------------------------------------------------------------------------------
    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return [self._dict(j) for j in items]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [self._dict(p) for p in items]

    def list_custom(self, namespace: str, plural: str, selector: str | None = None) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(
            c.API_GROUP, c.API_VERSION, namespace, plural, label_selector=selector or ""
        )
        return cast(list[dict[str, Any]], result.get("items", []))

    def get_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(c.API_GROUP, c.API_VERSION, namespace, plural, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pod_log_tail(self, namespace: str, pod: str, lines: int = 5) -> str:
        try:
            return str(
                self.core.read_namespaced_pod_log(
                    pod, namespace, container=c.TRAINER_CONTAINER, tail_lines=lines
                )
            )
        except ApiException:
            return ""

    # --- events -----------------------------------------------------------------------------------------
    def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `obj` (kopf's own posting only carries warnings; see main.py).
        Best effort: an Event that cannot be posted is not worth failing a reconciliation for."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": c.MANAGED_BY},
            "reportingComponent": c.MANAGED_BY,
            "reportingInstance": c.MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta.get("namespace"), event)
        except ApiException as exc:
            log.warning("cannot post event %s on %s: %s", reason, meta.get("name"), exc.reason)

    # --- delete (404 tolerant) ---------------------------------------------------------------------------
    def delete_job(self, namespace: str, name: str) -> None:
        self._tolerate_404(
            lambda: self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        )

    def delete_configmap(self, namespace: str, name: str) -> None:
        self._tolerate_404(lambda: self.core.delete_namespaced_config_map(name, namespace))

    def delete_custom(self, namespace: str, plural: str, name: str) -> None:
        self._tolerate_404(
            lambda: self.custom.delete_namespaced_custom_object(
                c.API_GROUP, c.API_VERSION, namespace, plural, name
            )
        )

    @staticmethod
    def _tolerate_404(call: Any) -> None:
        try:
            call()
        except ApiException as exc:
            if exc.status != 404:
                raise
