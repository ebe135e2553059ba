"""Readiness checks of the local cluster's components, over the host forward (HTTP, no client library)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from urllib.parse import urlsplit

from kstudio_localcluster.certs import Pki
from kstudio_localcluster.layout import NODE_NAME, ClusterLayout


def api_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    ctx.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    return ctx


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # KCM/scheduler healthz serve self-signed certs
    return ctx


def host_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 3.0) -> tuple[int, str]:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def api_ready(layout: ClusterLayout, pki: Pki) -> bool:
    status, body = host_get(f"https://127.0.0.1:{layout.api_host_port}/readyz", api_context(pki))
    return status == 200 and body.strip() == "ok"


def minio_ready(layout: ClusterLayout) -> bool:
    status, _ = host_get(f"http://127.0.0.1:{layout.minio_host_port}/minio/health/ready")
    return status == 200


def node_ready(layout: ClusterLayout, pki: Pki) -> bool:
    status, body = host_get(
        f"https://127.0.0.1:{layout.api_host_port}/api/v1/nodes/{NODE_NAME}", api_context(pki)
    )
    if status != 200:
        return False
    conds = json.loads(body).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def default_sa_exists(layout: ClusterLayout, pki: Pki) -> bool:
    status, _ = host_get(
        f"https://127.0.0.1:{layout.api_host_port}/api/v1/namespaces/default/serviceaccounts/default",
        api_context(pki),
    )
    return status == 200
