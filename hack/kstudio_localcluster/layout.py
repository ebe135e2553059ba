"""Names, addresses, ports and paths of one local cluster instance.

The default instance is the one every developer and test uses (netns "kstudio", API on 127.0.0.1:6443,
files under ~/.cache/kstudio/cluster). Tests that must destroy a cluster (the teardown check) build a
second instance with another name, root directory and host ports, so they never touch the shared one.

`KSTUDIO_CLUSTER_INSTANCE=N` (1-99) makes another instance the default of this process and its children:
netns "kst<N>", API on 127.0.0.1:6443+N, files under ~/.cache/kstudio/cluster-<N>. Two checkouts on one
machine (say, two worktrees under test at once) then each run their own cluster instead of waiting for
the one cluster, at the cost of a second control plane's memory and CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

NODE_NAME = "kst-node"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
BRIDGE = "kst0"
API_PORT = 6443
MINIO_PORT = 9000
KUBELET_PORT = 10250
CNI_BIN_DIR = "/usr/lib/cni"
K8S_VERSION = "v1.36.3"
# Fake nodes (fakenodes.py): kwok's health/metrics server inside the netns, the annotation that makes a
# Node kwok's, and the pod IPs kwok hands out (each fake node gets a /24 of it as its podCIDR).
KWOK_SERVER = "127.0.0.1:10247"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_ANNOTATION_VALUE = "fake"
KWOK_POD_CIDR = "10.245.0.0/16"


def cache_root() -> Path:
    """$KSTUDIO_CACHE, else ~/.cache/kstudio (binaries, cluster state)."""
    env = os.environ.get("KSTUDIO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kstudio"


def repo_root() -> Path:
    """The project checkout whose .venv provides the `kstudio` image for pods (and our CLI)."""
    env = os.environ.get("KSTUDIO_REPO")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def _instance() -> int | None:
    """The instance number $KSTUDIO_CLUSTER_INSTANCE names (None: the default instance)."""
    raw = os.environ.get("KSTUDIO_CLUSTER_INSTANCE", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 99:
        raise ValueError(f"KSTUDIO_CLUSTER_INSTANCE={raw!r}: expected a number from 1 to 99")
    return int(raw)


def _default_name() -> str:
    n = _instance()
    return "kstudio" if n is None else f"kst{n}"


def _default_root() -> Path:
    n = _instance()
    return cache_root() / ("cluster" if n is None else f"cluster-{n}")


def _default_api_port() -> int:
    return API_PORT + (_instance() or 0)


def _default_minio_port() -> int:
    # MinIO's host forward moves to a free port when this one is busy (cluster._start_clean).
    n = _instance()
    return MINIO_PORT if n is None else MINIO_PORT + 100 + n


@dataclass(frozen=True)
class ClusterLayout:
    """Everything that identifies one cluster instance on this machine."""

    name: str = field(default_factory=_default_name)
    root: Path = field(default_factory=_default_root)
    api_host_port: int = field(default_factory=_default_api_port)
    minio_host_port: int = field(default_factory=_default_minio_port)

    @property
    def netns(self) -> str:
        return self.name

    @property
    def cgroup_parent(self) -> str:
        """Parent cgroup (under each v1 controller, or the v2 root) for the node agent's pods."""
        return f"{self.name}-pods"

    @property
    def pod_netns_prefix(self) -> str:
        """Prefix of the node agent's per-pod network namespaces ("kst-" for the default instance)."""
        return "kst-" if self.name == "kstudio" else f"{self.name}-pod-"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def minio_data(self) -> Path:
        return self.root / "minio-data"

    @property
    def agent_state(self) -> Path:
        return self.root / "node-agent"

    @property
    def kwok_workdir(self) -> Path:
        """kwok's KWOK_WORKDIR: keeps it from reading a ~/.kwok/kwok.yaml that is not ours."""
        return self.root / "kwok"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def minio_json(self) -> Path:
        return self.root / "minio.json"

    @property
    def node_agent_json(self) -> Path:
        return self.root / "node-agent.json"

    @property
    def state_json(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def component_kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"
