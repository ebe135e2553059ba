"""Kubernetes I/O for the handlers: an async REST client on aiohttp, with kopf's own credentials.

Async, so that no handler waits for another's API call (kopf runs async handlers on its event loop; a
sync client would hold one of a few worker threads per call). It speaks plain JSON dicts, the shape of
manifests and of what kopf hands to handlers, and imports nothing heavy (no `kubernetes` client package).

Every write uses a deterministic name. A 409 on create means "already there" (an earlier attempt or an
earlier operator process made it) and returns the existing object; a 404 on delete means "already gone".
Requests are counted by verb and resource in the operator's metrics (kstudio_operator_api_requests_total).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

from kstudio_operator import constants as c
from kstudio_operator import metrics

log = logging.getLogger(__name__)
Login = Callable[[], Awaitable[kopf.ConnectionInfo | None]]


class ApiError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0 for transport errors)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def resource_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """/api/v1/namespaces/ns/pods/name or /apis/group/version/namespaces/ns/plural/name."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = base + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    return path + (f"/{quote(name)}" if name else "")


PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Pod": "pods",
    "Event": "events",
    "Job": "jobs",
    "Deployment": "deployments",
    "Experiment": c.EXPERIMENTS,
    "TrainedModel": c.TRAINED_MODELS,
    "WebService": c.WEB_SERVICES,
    "Endpoint": c.ENDPOINTS,
}


def resource_of(path: str) -> str:
    """The resource a request path names, for the metrics: `pods`, `endpoints/status`, `pods/log`."""
    parts = path.strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]  # drop /api/v1 or /apis/<group>/<version>
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    return "/".join(parts[:1] + parts[2:3])


def object_path(obj: Mapping[str, Any], *, collection: bool = False) -> str:
    meta = obj.get("metadata") or {}
    plural = PLURALS[str(obj["kind"])]
    return resource_path(
        str(obj["apiVersion"]), plural, meta.get("namespace"), None if collection else meta.get("name")
    )


class Kube:
    """One aiohttp session per operator; `login` re-reads credentials after a 401 (rotated tokens)."""

    def __init__(self, info: kopf.ConnectionInfo, login: Login | None = None, timeout: float = 30) -> None:
        self._info = info
        self._login = login
        # Per request, not counting the wait for one of the pool's connections: with a thousand reconciles
        # reconciling at once, a total timeout expired in the queue and turned load into errors (and
        # exponential backoff) in the 1,000-endpoint benchmark.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._info.as_ssl_context(), limit=32),
            headers={**self._info.as_http_headers(), "User-Agent": c.MANAGED_BY},
            timeout=self._timeout,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        text: bool = False,
    ) -> Any:
        """The decoded JSON (or text) answer; ApiError on any non-2xx status or transport failure."""
        url = self._info.server.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            if self._session is None:
                self._session = self._new_session()
            metrics.API_REQUESTS.labels(method, resource_of(path)).inc()
            try:
                async with self._session.request(
                    method, url, data=data, headers={"Content-Type": content_type}
                ) as resp:
                    payload = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, f"{method} {path}: {exc or type(exc).__name__}") from exc
            if status == 401 and attempt == 1 and self._login is not None:
                fresh = await self._login()
                if fresh is not None:
                    self._info = fresh
                    await self.close()
                    continue
            if status >= 300:
                raise ApiError(status, f"{method} {path}: {_message(payload)}")
            if text:
                return payload
            return json.loads(payload) if payload else {}
        raise ApiError(401, f"{method} {path}: unauthorized")

    # --- objects ---------------------------------------------------------------------------------
    async def create(self, obj: dict[str, Any], *, read_existing: bool = True) -> tuple[dict[str, Any], bool]:
        """(the object, created-now). An existing object of that name is returned as it is, or as {} with
        `read_existing=False` (a Secret: the operator may create one, never read it)."""
        try:
            return await self.request("POST", object_path(obj, collection=True), obj), True
        except ApiError as exc:
            if exc.status != 409:
                raise
        if not read_existing:
            return {}, False
        return await self.request("GET", object_path(obj)), False

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.request(
                "GET", resource_path(api_version, plural, namespace, name)
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any], *, status: bool
    ) -> dict[str, Any]:
        """JSON merge patch of the object, or of its status subresource."""
        path = resource_path(api_version, plural, namespace, name) + ("/status" if status else "")
        result: dict[str, Any] = await self.request(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )
        return result

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        try:
            await self.request(
                "DELETE",
                resource_path(api_version, plural, namespace, name),
                {"propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 5) -> str:
        try:
            path = resource_path("v1", "pods", namespace, pod) + "/log"
            return str(
                await self.request(
                    "GET", path, query={"container": container, "tailLines": str(lines)}, text=True
                )
            )
        except ApiError:
            return ""

    async def pod_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """GET `path` on a pod's port through the API server's proxy (pods/proxy): reaches the pod
        wherever the operator runs, with the operator's credentials checked by the API server."""
        target = resource_path("v1", "pods", namespace, f"{pod}:{port}") + "/proxy" + path
        return str(await self.request("GET", target, text=True))

    # --- events ------------------------------------------------------------------------------------
    async def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `obj`. Best effort: an Event that cannot be posted is not worth
        failing a reconciliation for."""
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
            await self.request("POST", resource_path("v1", "events", str(meta.get("namespace"))), event)
        except ApiError as exc:
            log.warning("cannot post event %s on %s: %s", reason, meta.get("name"), exc)


def _message(payload: str) -> str:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload[:300]
    return str(doc.get("message") or payload[:300]) if isinstance(doc, dict) else payload[:300]
