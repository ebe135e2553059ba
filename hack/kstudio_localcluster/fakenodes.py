"""Simulated nodes: kwok-managed fake Nodes next to the real one, for tests and benchmarks at scale.

`kstudio-dev cluster up --fake-nodes N` (or `ensure_up(fake_nodes=N)`) creates the Nodes kwok-node-0 ..
kwok-node-{N-1} and runs kwok (sigs.k8s.io/kwok, built by `hack/build-binaries.sh kwok`) as one more
process in the cluster's namespace. kwok manages only Nodes annotated `kwok.x-k8s.io/node: fake`: it keeps
them Ready (a Lease every 10 s, as a kubelet does) and marks the pods bound to them Running and Ready
without running anything (the Stages in kwok_stages.yaml); the node agent keeps the real node and runs
only pods bound to it. Fake nodes carry the taint `kwok.x-k8s.io/node=fake:NoSchedule` and the label
`type=kwok`, so only pods that tolerate the taint land there, and `nodeSelector: {type: kwok}` keeps them
off the real node. Pod IPs of fake pods come from 10.245.<i>.0/24 (each node's podCIDR), node addresses
from 192.0.2.0/24 (TEST-NET-1): no packet reaches them, nothing answers there.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kstudio_localcluster import health, kubeconfig, netns, processes, sessions
from kstudio_localcluster.certs import Pki, ensure_pki
from kstudio_localcluster.components import (
    STOP_GRACE,
    ClusterError,
    component_argv,
    component_env,
    failure_summary,
    start_component,
)
from kstudio_localcluster.layout import (
    API_PORT,
    FAKE_NODE_ANNOTATION,
    FAKE_NODE_ANNOTATION_VALUE,
    KWOK_SERVER,
    ClusterLayout,
    repo_root,
)

Log = Callable[[str], None]

NODE_PREFIX = "kwok-node-"
ANNOTATION = FAKE_NODE_ANNOTATION
ANNOTATION_VALUE = FAKE_NODE_ANNOTATION_VALUE
TAINT = {"key": ANNOTATION, "value": ANNOTATION_VALUE, "effect": "NoSchedule"}
LABEL_TYPE = ("type", "kwok")
MAX_NODES = 250  # one /24 of pod IPs and one TEST-NET-1 address per node
# Room for the operator benchmark: 10 nodes hold 1,100 pods of the scorer's default 500m / 512Mi.
CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "110"}


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def node_manifest(index: int) -> dict[str, Any]:
    """Fake Node `kwok-node-<index>`: tainted, labelled, annotated for kwok, with its own pod CIDR."""
    if not 0 <= index < MAX_NODES:
        raise ValueError(f"fake node index {index} is outside 0..{MAX_NODES - 1}")
    name = node_name(index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {ANNOTATION: ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                LABEL_TYPE[0]: LABEL_TYPE[1],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": f"10.245.{index}.0/24", "podCIDRs": [f"10.245.{index}.0/24"], "taints": [TAINT]},
        # The API server keeps a new Node's status; kwok's node-initialize Stage adds conditions and
        # nodeInfo, and keeps the addresses only when both kinds are there (else it empties the list).
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"192.0.2.{index + 1}"},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": dict(CAPACITY),
            "capacity": dict(CAPACITY),
        },
    }


def _api(
    layout: ClusterLayout, pki: Pki, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """One request to the API server over the host forward, as the cluster admin."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", layout.api_host_port, timeout=10.0, context=health.api_context(pki)
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read().decode(errors="replace")
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"message": raw[:300]}
    return resp.status, parsed if isinstance(parsed, dict) else {}


def list_nodes(layout: ClusterLayout, pki: Pki) -> list[dict[str, Any]]:
    """The fake Nodes (by name prefix and kwok's annotation): [{name, ready, pods capacity}]."""
    status, body = _api(layout, pki, "GET", "/api/v1/nodes")
    if status != 200:
        raise ClusterError(f"listing nodes failed: HTTP {status} {body.get('message', '')}")
    out = []
    for node in body.get("items") or []:
        meta = node.get("metadata") or {}
        if not meta.get("name", "").startswith(NODE_PREFIX):
            continue
        if (meta.get("annotations") or {}).get(ANNOTATION) != ANNOTATION_VALUE:
            continue
        conds = (node.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        out.append({"name": meta["name"], "ready": ready})
    return sorted(out, key=lambda n: int(n["name"].removeprefix(NODE_PREFIX) or 0))


def _kwok_healthy(layout: ClusterLayout) -> bool:
    status, body = netns.http_get(layout.netns, f"http://{KWOK_SERVER}/healthz")
    return status == 200 and body.strip() == "ok"


def _wait(what: str, check: Callable[[], bool], timeout: float, layout: ClusterLayout) -> None:
    deadline = time.monotonic() + timeout
    log_file = layout.logs / "kwok.log"
    where = f"(log: {log_file})"
    while True:
        with contextlib.suppress(OSError, ValueError, ssl.SSLError, netns.NetnsError, ClusterError):
            if check():
                return
        rec = processes.read_record(layout.run, "kwok")
        if rec is None or not processes.record_alive(rec):
            raise ClusterError(f"kwok exited while waiting for {what}: {failure_summary(log_file)} {where}")
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}: {failure_summary(log_file)} {where}"
            )
        time.sleep(0.2)


def stop_kwok(layout: ClusterLayout) -> None:
    rec = processes.read_record(layout.run, "kwok")
    if rec is not None:
        processes.stop(rec, grace=STOP_GRACE["kwok"])
        processes.pidfile(layout.run, "kwok").unlink(missing_ok=True)


def _ensure_kwok(
    layout: ClusterLayout, pki: Pki, repo: Path, bin_dir: Path, timeout: float, log: Log
) -> None:
    """Start kwok unless it runs with exactly this checkout's flags (restart it otherwise)."""
    argv = component_argv("kwok", bin_dir, layout, pki, repo)
    rec = processes.read_record(layout.run, "kwok")
    if rec is not None and processes.record_alive(rec) and list(rec.argv[-len(argv) :]) == argv:
        return
    if rec is not None:
        if processes.record_alive(rec):
            log("kwok runs with other flags than this checkout gives it: restarting it")
        stop_kwok(layout)
    layout.kwok_workdir.mkdir(parents=True, exist_ok=True)
    # Inside the netns, like the scheduler's: the API server on loopback, kwok's own client identity.
    kc = layout.component_kubeconfigs / "kwok.kubeconfig"
    kubeconfig.write(kc, pki, "kwok", f"https://127.0.0.1:{API_PORT}", "kstudio-kwok")
    start_component("kwok", layout, argv, component_env({"KWOK_WORKDIR": str(layout.kwok_workdir)}))
    _wait("kwok /healthz", lambda: _kwok_healthy(layout), timeout, layout)


def ensure(
    layout: ClusterLayout, repo: Path, bin_dir: Path, count: int, *, timeout: float, log: Log
) -> list[str]:
    """Exactly `count` Ready fake nodes (kwok-node-0..count-1) managed by a running kwok; 0 removes
    them all and stops kwok. Call under the cluster lock. Returns the fake node names."""
    if not 0 <= count <= MAX_NODES:
        raise ClusterError(f"--fake-nodes must be between 0 and {MAX_NODES}, not {count}")
    pki = ensure_pki(layout.pki)  # adds the kwok client cert to a cluster started before it existed
    wanted = {node_name(i) for i in range(count)}
    existing = {n["name"] for n in list_nodes(layout, pki)}
    for name in sorted(existing - wanted):
        status, body = _api(layout, pki, "DELETE", f"/api/v1/nodes/{name}")
        if status not in (200, 202, 404):
            raise ClusterError(f"deleting fake node {name} failed: HTTP {status} {body.get('message', '')}")
    if count == 0:
        stop_kwok(layout)
    else:
        if not (bin_dir / "kwok").exists():
            raise ClusterError(f"{bin_dir / 'kwok'} is missing: run  bash hack/build-binaries.sh kwok")
        _ensure_kwok(layout, pki, repo, bin_dir, timeout, log)
        for i in range(count):
            if node_name(i) in existing:
                continue
            status, body = _api(layout, pki, "POST", "/api/v1/nodes", node_manifest(i))
            if status not in (201, 409):
                raise ClusterError(f"creating {node_name(i)} failed: HTTP {status} {body.get('message', '')}")

        def all_ready() -> bool:
            nodes = list_nodes(layout, pki)
            return sorted(n["name"] for n in nodes if n["ready"]) == sorted(wanted)

        _wait(f"{count} fake node(s) Ready", all_ready, timeout, layout)
        names = f"{NODE_PREFIX}0" + (f"..{count - 1}" if count > 1 else "")
        log(f"{count} fake node(s) Ready: {names} (kwok)")
    state = sessions.read_json(layout.state_json) or {}
    if state:
        state["fakeNodes"] = count
        sessions.write_json(layout.state_json, state)
    return sorted(wanted)


def repair(
    layout: ClusterLayout, repo: Path, bin_dir: Path, state: dict[str, Any], timeout: float, log: Log
) -> None:
    """On reuse: a cluster that was given fake nodes keeps them; restart kwok if it died."""
    count = int(state.get("fakeNodes") or 0)
    rec = processes.read_record(layout.run, "kwok")
    if count and not (rec is not None and processes.record_alive(rec)) and (bin_dir / "kwok").exists():
        log("kwok is not running: starting it again for the fake nodes")
        ensure(layout, repo, bin_dir, count, timeout=timeout, log=log)


def scale(
    layout: ClusterLayout | None, count: int, *, bin_dir: Path, timeout: float = 90.0, log: Log | None = None
) -> list[str]:
    """Exactly `count` Ready fake nodes on the running cluster (0 removes them and stops kwok); their
    names. `bin_dir` must hold kwok (`hack/build-binaries.sh kwok`)."""
    layout = sessions.effective(layout or ClusterLayout())
    with sessions.cluster_lock(layout):
        if not layout.state_json.exists():
            raise ClusterError("no local cluster is running: start it first (kstudio-dev cluster up)")
        say = log or (lambda msg: print(f"kstudio-dev cluster: {msg}", file=sys.stderr, flush=True))
        return ensure(layout, repo_root(), bin_dir, count, timeout=timeout, log=say)
