"""The cluster's network namespace: made with iproute2, reached from Python with setns(2).

Topology (inside netns `<name>`): `lo` up, bridge `kst0` holding the node IP 10.244.0.1/24, the
service CIDR 10.96.0.0/16 routed onto the bridge (kube-proxy's nftables rules catch it there), and
no other route: nothing in the namespace reaches any network but its own.

Sockets keep the namespace they were created in, so `socket_in_netns` makes a socket in a throwaway
thread that has switched namespace (setns only affects the calling thread); the caller then uses it
from any thread. That is how readiness checks and the host port forward reach the namespace.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

from kstudio_localcluster.layout import BRIDGE, NODE_IP, SERVICE_CIDR

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")


class NetnsError(RuntimeError):
    """A namespace operation failed; the message names the command and its stderr."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def ensure_netns(name: str) -> None:
    """Create the namespace and its bridge; idempotent (each step checks before it acts)."""
    if not exists(name):
        _ip("netns", "add", name)
    _ip("link", "set", "lo", "up", netns=name)
    if _ip("link", "show", BRIDGE, netns=name, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge", netns=name)
    if f"{NODE_IP}/24" not in _ip("-4", "addr", "show", "dev", BRIDGE, netns=name).stdout:
        _ip("addr", "add", f"{NODE_IP}/24", "dev", BRIDGE, netns=name)
    _ip("link", "set", BRIDGE, "up", netns=name)
    _ip("route", "replace", SERVICE_CIDR, "dev", BRIDGE, netns=name)
    # The node forwards between pod veths and rewrites ClusterIPs; nothing leaves the namespace anyway.
    subprocess.run(
        ["ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        capture_output=True,
        check=False,
    )


def delete_netns(name: str) -> None:
    """Delete the namespace (its bridge and the host ends of pod veths go with it)."""
    if exists(name):
        _ip("netns", "del", name)


def pids_in_netns(name: str) -> list[int]:
    """Every process whose network namespace is `name` (`ip netns pids`)."""
    if not exists(name):
        return []
    proc = _ip("netns", "pids", name, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def nft_tables(name: str | None) -> str:
    """`nft list tables` inside namespace `name` (None: the host)."""
    cmd = ["nft", "list", "tables"]
    if name:
        cmd = ["ip", "netns", "exec", name, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def inode(name: str) -> int | None:
    """Identity of a namespace that stays valid after its name is deleted (while processes hold it)."""
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def pids_in_namespaces(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of `inodes` (also finds namespaces whose name is gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def routes(name: str) -> str:
    return _ip("route", "show", "table", "all", netns=name).stdout


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


def socket_in_netns(name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket living in network namespace `name` (usable from any thread)."""
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            errors.append(NetnsError(f"network namespace {name!r} does not exist"))
            return
        try:
            _setns(fd)
            result.append(socket.socket(family, kind))
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(fd)

    # The thread ends in the other namespace and dies; the caller's thread never switches.
    t = threading.Thread(target=make, name=f"setns-{name}", daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]


def connect_in_netns(name: str, host: str, port: int, timeout: float) -> socket.socket:
    sock = socket_in_netns(name)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        self.sock = connect_in_netns(self._netns, self.host, self.port, self.timeout or 5.0)


class _NetnsHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, netns: str, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._netns = netns
        self._ctx = context

    def connect(self) -> None:
        raw = connect_in_netns(self._netns, self.host, self.port, self.timeout or 5.0)
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.host)


def http_get(
    netns: str, url: str, *, timeout: float = 3.0, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """GET `url` from inside the namespace; returns (status, body). Raises OSError if unreachable."""
    return http_request(netns, "GET", url, timeout=timeout, context=context)


def http_request(
    netns: str,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 3.0,
    context: ssl.SSLContext | None = None,
) -> tuple[int, str]:
    """One HTTP request from inside the namespace (e.g. to a ClusterIP); returns (status, body).
    Raises OSError if unreachable."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = context or ssl.create_default_context()
        conn = _NetnsHTTPSConnection(netns, host, parts.port or 443, timeout, ctx)
    else:
        conn = _NetnsHTTPConnection(netns, host, parts.port or 80, timeout)
    try:
        path = parts.path or "/"
        conn.request(
            method, path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {}
        )
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()
