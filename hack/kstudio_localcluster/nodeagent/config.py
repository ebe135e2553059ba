"""The node agent's configuration file (JSON written by `kstudio-dev cluster up`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or lacks a required key."""


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: Path
    node_name: str
    node_ip: str
    pod_cidr: str
    bridge: str
    state_dir: Path
    repo: Path
    cni_bin_dir: Path = Path("/usr/lib/cni")
    netns: str = ""
    api_server: str = ""
    serving_cert: Path | None = None
    serving_key: Path | None = None
    client_ca_file: Path | None = None
    ca_file: Path | None = None
    kubelet_port: int = 10250
    cpu: str = "2"
    memory: str = ""
    max_pods: int = 110
    cgroup_parent: str = "kstudio-pods"
    pod_netns_prefix: str = "kst-"
    # The venv `kstudio` images run: the checkout's .venv by default, or the product wheel installed into a
    # clean venv (`kstudio-dev image-venv`), so tests can run exactly what the Docker image holds.
    image_venv: Path | None = None

    @property
    def venv(self) -> Path:
        return self.image_venv or self.repo / ".venv"


_REQUIRED = ("kubeconfig", "nodeName", "nodeIP", "podCIDR", "bridge", "stateDir", "repo")


def parse_config(raw: dict[str, Any]) -> AgentConfig:
    """Build an AgentConfig from the decoded JSON; raises ConfigError naming the first missing key."""
    missing = [k for k in _REQUIRED if not raw.get(k)]
    if missing:
        raise ConfigError(f"node agent config lacks required key(s): {', '.join(missing)}")

    def opt_path(key: str) -> Path | None:
        value = raw.get(key)
        return Path(value) if value else None

    return AgentConfig(
        kubeconfig=Path(raw["kubeconfig"]),
        node_name=str(raw["nodeName"]),
        node_ip=str(raw["nodeIP"]),
        pod_cidr=str(raw["podCIDR"]),
        bridge=str(raw["bridge"]),
        state_dir=Path(raw["stateDir"]),
        repo=Path(raw["repo"]).resolve(),
        cni_bin_dir=Path(raw.get("cniBinDir") or "/usr/lib/cni"),
        netns=str(raw.get("netns") or ""),
        api_server=str(raw.get("apiServer") or ""),
        serving_cert=opt_path("servingCert"),
        serving_key=opt_path("servingKey"),
        client_ca_file=opt_path("clientCAFile"),
        ca_file=opt_path("caFile"),
        kubelet_port=int(raw.get("kubeletPort") or 10250),
        cpu=str(raw.get("cpu") or ""),
        memory=str(raw.get("memory") or ""),
        max_pods=int(raw.get("maxPods") or 110),
        cgroup_parent=str(raw.get("cgroupParent") or "kstudio-pods"),
        pod_netns_prefix=str(raw.get("podNetnsPrefix") or "kst-"),
        image_venv=opt_path("imageVenv"),
    )


def load_config(path: Path) -> AgentConfig:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read node agent config {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"node agent config {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"node agent config {path} must be a JSON object")
    return parse_config(raw)
