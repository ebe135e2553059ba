"""The host forward (127.0.0.1:6443 and the MinIO port into the cluster netns) under load."""

from __future__ import annotations

import http.client
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest

from fixtures.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster


def _ctx(cluster: LocalCluster) -> ssl.SSLContext:
    pki = cluster.info.layout.pki
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def test_idle_keepalive_connection_survives_a_burst_of_other_connections(local_cluster: LocalCluster) -> None:
    port = local_cluster.info.layout.api_host_port
    log = local_cluster.info.layout.logs / "forward.log"
    log_offset = log.stat().st_size
    ctx = _ctx(local_cluster)
    idle = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    idle.request("GET", "/readyz")
    first = idle.getresponse()
    assert (first.status, first.read()) == (200, b"ok")

    def one(_: int) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        try:
            conn.request("GET", "/livez")
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(400)))
    assert statuses == [200] * 400

    idle.request("GET", "/readyz")  # same TCP connection, idle all along
    again = idle.getresponse()
    assert (again.status, again.read()) == (200, b"ok")
    idle.close()
    # asyncio drops tasks nobody references: the forward must hold every connection's task.
    with log.open("rb") as fh:
        fh.seek(log_offset)
        assert b"Task was destroyed but it is pending" not in fh.read()
