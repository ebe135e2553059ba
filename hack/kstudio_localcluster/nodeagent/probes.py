"""Probes (httpGet, tcpSocket, exec) and kubelet's threshold bookkeeping."""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass
class ProbeSpec:
    handler: JSON
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_json(cls, probe: JSON) -> ProbeSpec:
        return cls(
            handler={k: v for k, v in probe.items() if k in {"httpGet", "tcpSocket", "exec", "grpc"}},
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


class ProbeTracker:
    """Consecutive-result counting: the result flips to success after successThreshold consecutive
    successes and to failure after failureThreshold consecutive failures (kubelet's worker.doProbe)."""

    def __init__(self, spec: ProbeSpec, initial: bool) -> None:
        self.spec = spec
        self.value = initial
        self.successes = 0
        self.failures = 0
        self.last_message = ""

    def record(self, ok: bool, message: str = "") -> bool:
        """Record one probe result; returns the (possibly new) overall value."""
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.success_threshold:
                self.value = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.failure_threshold:
                self.value = False
        return self.value


def resolve_port(port: int | str, container: JSON) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')!r}")


def run_http(handler: JSON, pod_ip: str, container: JSON, timeout: float) -> tuple[bool, str]:
    host = handler.get("host") or pod_ip
    port = resolve_port(handler["port"], container)
    path = handler.get("path") or "/"
    headers = {h["name"]: h["value"] for h in handler.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.36")
    conn: http.client.HTTPConnection
    if str(handler.get("scheme", "HTTP")).upper() == "HTTPS":
        import ssl

        ctx = ssl._create_unverified_context()  # noqa: S323 - kubelet does not verify probe certificates
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read(10240)
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "http://{host}:{port}{path}": {exc}'
    finally:
        conn.close()


def run_tcp(handler: JSON, pod_ip: str, container: JSON, timeout: float) -> tuple[bool, str]:
    host = handler.get("host") or pod_ip
    port = resolve_port(handler["port"], container)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc}"


def exec_argv(pid: int, uid: int, gid: int, command: list[str]) -> list[str]:
    """Run `command` inside a running container (its mount, net, UTS and IPC namespaces, as its user)."""
    return [
        "nsenter",
        "-t",
        str(pid),
        "-m",
        "-n",
        "-u",
        "-i",
        "-r",
        "-w",
        "-S",
        str(uid),
        "-G",
        str(gid),
        "--",
        *command,
    ]


def run_exec(
    handler: JSON, pid: int, uid: int, gid: int, env: Mapping[str, str], timeout: float
) -> tuple[bool, str]:
    argv = exec_argv(pid, uid, gid, list(handler.get("command") or []))
    try:
        out = subprocess.run(argv, env=dict(env), capture_output=True, timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout:g}s"
    if out.returncode == 0:
        return True, ""
    text = (out.stdout + out.stderr).decode(errors="replace").strip()[-512:]
    return False, f"command exited with {out.returncode}: {text}"


def run_probe(
    handler: JSON,
    pod_ip: str,
    container: JSON,
    pid: int,
    uid: int,
    gid: int,
    env: Mapping[str, str],
    timeout: float,
) -> tuple[bool, str]:
    try:
        if "httpGet" in handler:
            return run_http(handler["httpGet"], pod_ip, container, timeout)
        if "tcpSocket" in handler:
            return run_tcp(handler["tcpSocket"], pod_ip, container, timeout)
        if "exec" in handler:
            return run_exec(handler["exec"], pid, uid, gid, env, timeout)
    except ValueError as exc:
        return False, str(exc)
    return False, f"unsupported probe handler {sorted(handler)}"
