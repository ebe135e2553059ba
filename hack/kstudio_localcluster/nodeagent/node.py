"""The Node object: registration, status heartbeat and Lease renewal (kube-node-lease)."""

from __future__ import annotations

import os
import platform
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .config import AgentConfig
from .context import log, utc_now
from .kubeapi import ApiError, KubeClient

JSON = dict[str, Any]
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
STATUS_SECONDS = 30.0
KUBELET_VERSION = "v1.36.3"


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A dev/test node on a 2-core machine would fit one 1-CPU trainer and two 500m scorers and then refuse a
# rolling update's surge pod. CPU is time-shared and limits are enforced by CFS quota, so the local node
# advertises at least this many CPUs for scheduling (the config's "cpu" key sets an exact value).
MIN_ADVERTISED_CPUS = 8


def node_capacity(cfg: AgentConfig) -> dict[str, str]:
    """Capacity = allocatable: memory as the machine has it, CPUs at least MIN_ADVERTISED_CPUS."""
    cpu = cfg.cpu or str(max(os.cpu_count() or 1, MIN_ADVERTISED_CPUS))
    if cfg.memory:
        memory = cfg.memory
    else:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages // 1024}Ki"
    return {"cpu": cpu, "memory": memory, "pods": str(cfg.max_pods), "ephemeral-storage": "20Gi"}


def node_status(cfg: AgentConfig, ready: bool = True, since: str = "") -> JSON:
    now = utc_now()
    since = since or now
    cap = node_capacity(cfg)

    def cond(ctype: str, status: str, reason: str, message: str) -> JSON:
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    return {
        "capacity": cap,
        "allocatable": cap,
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond(
                "Ready",
                "True" if ready else "False",
                "KubeletReady" if ready else "KubeletNotReady",
                "kstudio node agent is posting ready status" if ready else "node agent stopping",
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": cfg.node_ip},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "kstudio local node",
            "containerRuntimeVersion": "process://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


class NodeRegistration:
    def __init__(self, client: KubeClient, cfg: AgentConfig) -> None:
        self.client = client
        self.cfg = cfg
        self.stop = threading.Event()
        self.since = utc_now()

    def register(self, timeout: float = 120.0) -> None:
        """Create (or adopt) the Node, post its status and take the Lease; retries while the API is down."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._register()
                return
            except (ApiError, OSError) as exc:
                if time.monotonic() > deadline or (isinstance(exc, ApiError) and exc.status in {401, 403}):
                    raise
                log.warning("node registration failed (%s); retrying", exc)
                time.sleep(2.0)

    def _register(self) -> None:
        name = self.cfg.node_name
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "kstudio-local",
                },
            },
            "spec": {"podCIDR": self.cfg.pod_cidr, "podCIDRs": [self.cfg.pod_cidr]},
        }
        try:
            self.client.create("/api/v1/nodes", body)
            log.info("registered node %s", name)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.post_status()
        self.renew_lease()

    def post_status(self, ready: bool = True) -> None:
        self.client.patch(
            f"/api/v1/nodes/{self.cfg.node_name}/status", {"status": node_status(self.cfg, ready, self.since)}
        )

    def renew_lease(self) -> None:
        name = self.cfg.node_name
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _micro_now()}
        lease = self.client.get_or_none(path)
        if lease is None:
            node = self.client.get(f"/api/v1/nodes/{name}")
            body: JSON = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                    ],
                },
                "spec": spec,
            }
            self.client.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body)
        else:
            lease["spec"].update(spec)
            self.client.put(path, lease)

    def run(self) -> None:
        """Renew the Lease every 10 s and post node status every 30 s until stopped."""
        since_status = 0.0
        while not self.stop.wait(RENEW_SECONDS):
            since_status += RENEW_SECONDS
            try:
                self.renew_lease()
                if since_status >= STATUS_SECONDS:
                    since_status = 0.0
                    self.post_status()
            except (ApiError, OSError) as exc:
                log.warning("node heartbeat failed: %s", exc)
