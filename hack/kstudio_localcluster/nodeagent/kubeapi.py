"""A small, thread-safe Kubernetes REST client (stdlib only) for the node agent.

The agent needs a handful of verbs on plain JSON (get/list/watch/create/patch/delete and TokenRequest);
dicts keep pod specs in their API spelling (camelCase), exactly as kubelet sees them.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _materialize(data_b64: str, suffix: str, keep: list[Any]) -> str:
    handle = tempfile.NamedTemporaryFile(suffix=suffix)  # noqa: SIM115 - kept open for the client's lifetime
    handle.write(base64.b64decode(data_b64))
    handle.flush()
    keep.append(handle)
    return handle.name


class KubeClient:
    """Talks to one API server with the credentials of a kubeconfig's current context."""

    def __init__(self, kubeconfig: Path, server_override: str = "") -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user: dict[str, Any] = next(
            (u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}
        )
        self._keep: list[Any] = []
        base = kubeconfig.parent

        def path_of(key: str, data_key: str, suffix: str, source: dict[str, Any]) -> str | None:
            if source.get(data_key):
                return _materialize(source[data_key], suffix, self._keep)
            if source.get(key):
                p = Path(source[key])
                return str(p if p.is_absolute() else base / p)
            return None

        url = urllib.parse.urlsplit(server_override or cluster["server"])
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 443
        ctx_ssl = ssl.create_default_context(
            cafile=path_of("certificate-authority", "certificate-authority-data", ".crt", cluster)
        )
        cert = path_of("client-certificate", "client-certificate-data", ".crt", user)
        key = path_of("client-key", "client-key-data", ".key", user)
        if cert:
            ctx_ssl.load_cert_chain(cert, key)
        self._token = user.get("token")
        self._ssl = ctx_ssl
        self._local = threading.local()

    # -- plumbing -------------------------------------------------------------------------------------
    def _conn(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self._ssl, timeout=timeout)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kstudio-node-agent/v1.36.3"}
        if content_type:
            headers["Content-Type"] = content_type
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> JSON:
        if query:
            path = f"{path}?{urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})}"
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._conn(timeout)
                self._local.conn = conn
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(
                    method, path, body=payload, headers=self._headers(content_type if body else None)
                )
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            if resp.status >= 400:
                try:
                    status = json.loads(data)
                    raise ApiError(resp.status, status.get("reason", ""), status.get("message", ""))
                except ValueError:
                    raise ApiError(resp.status, resp.reason, data.decode(errors="replace")) from None
            return json.loads(data) if data else {}
        raise AssertionError("unreachable")

    # -- verbs ----------------------------------------------------------------------------------------
    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str) -> JSON | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body)

    def put(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: JSON, kind: str = "strategic") -> JSON:
        ctype = {
            "strategic": "application/strategic-merge-patch+json",
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return self.request("PATCH", path, body, content_type=ctype)

    def delete(self, path: str, body: JSON | None = None) -> JSON:
        return self.request("DELETE", path, body)

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 240, **query: Any
    ) -> Iterator[JSON]:
        """Yield watch events ({"type", "object"}) until the server closes the stream."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **query,
        }
        conn = self._conn(timeout_seconds + 30)
        try:
            conn.request("GET", f"{path}?{urllib.parse.urlencode(params)}", headers=self._headers())
            resp = conn.getresponse()
            if resp.status >= 400:
                data = resp.read()
                raise ApiError(resp.status, resp.reason, data.decode(errors="replace"))
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
