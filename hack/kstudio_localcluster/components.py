"""The cluster's processes: their start order, command lines and environment.

Flags follow ../shared/notes/local-cluster-by-hand.md (verified by hand on this machine kind), plus
kubelet client/CA flags on the API server (for `kubectl logs`) and --bind-address on kube-proxy.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from kstudio_localcluster import forward, processes
from kstudio_localcluster.certs import Pki
from kstudio_localcluster.hosttools import diagnose_log_line
from kstudio_localcluster.layout import (
    API_PORT,
    CLUSTER_CIDR,
    FAKE_NODE_ANNOTATION,
    FAKE_NODE_ANNOTATION_VALUE,
    KWOK_POD_CIDR,
    KWOK_SERVER,
    MINIO_PORT,
    NODE_IP,
    NODE_NAME,
    SERVICE_CIDR,
    ClusterLayout,
)


class ClusterError(RuntimeError):
    """The cluster could not be brought up or torn down; the message says what and where to look."""


# Start order; teardown runs it backwards (node agent first, etcd and the forward last).
COMPONENTS = (
    "etcd",
    "minio",
    "kube-apiserver",
    "forward",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "node-agent",
)
# Started on request only (`cluster up --fake-nodes N`, fakenodes.py); stopped first.
OPTIONAL_COMPONENTS = ("kwok",)
STOP_GRACE = {"kwok": 5.0, "node-agent": 30.0, "kube-apiserver": 15.0, "etcd": 10.0, "minio": 5.0}
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def component_argv(name: str, bin_dir: Path, layout: ClusterLayout, pki: Pki, repo: Path) -> list[str]:
    kc = layout.component_kubeconfigs
    if name == "etcd":
        return [
            str(bin_dir / "etcd"), "--name=kstudio", f"--data-dir={layout.etcd_data}",
            "--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=kstudio=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn",
        ]  # fmt: skip
    if name == "kube-apiserver":
        return [
            str(bin_dir / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
            f"--cert-dir={pki.dir}", f"--tls-cert-file={pki.crt('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}", f"--client-ca-file={pki.ca_crt}",
            f"--secure-port={API_PORT}", "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
            f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
            f"--kubelet-certificate-authority={pki.ca_crt}",
            "--kubelet-preferred-address-types=InternalIP,Hostname", "--profiling=false",
        ]  # fmt: skip
    if name == "kube-controller-manager":
        k = kc / "kube-controller-manager.kubeconfig"
        return [
            str(bin_dir / "kube-controller-manager"), f"--kubeconfig={k}", f"--authentication-kubeconfig={k}",
            f"--authorization-kubeconfig={k}", f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_crt}", f"--cluster-signing-cert-file={pki.ca_crt}",
            f"--cluster-signing-key-file={pki.ca_key}", "--use-service-account-credentials=true",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257", "--controllers=*",
            f"--cluster-cidr={CLUSTER_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            # Its controllers create ReplicaSets and pods at 20 requests/s each by default, which alone
            # takes 50 s for 1,000 Endpoints on fake nodes (the scale benchmark); control planes that run
            # thousands of pods raise it the same way.
            "--kube-api-qps=200", "--kube-api-burst=400",
        ]  # fmt: skip
    if name == "kube-scheduler":
        k = kc / "kube-scheduler.kubeconfig"
        return [
            str(bin_dir / "kube-scheduler"), f"--kubeconfig={k}", f"--authentication-kubeconfig={k}",
            f"--authorization-kubeconfig={k}", "--leader-elect=false", "--bind-address=127.0.0.1",
            "--secure-port=10259", "--profiling=false",
        ]  # fmt: skip
    if name == "kube-proxy":
        return [
            str(bin_dir / "kube-proxy"), f"--kubeconfig={kc / 'kube-proxy.kubeconfig'}",
            f"--hostname-override={NODE_NAME}", f"--bind-address={NODE_IP}",  # node IP without waiting
            "--proxy-mode=nftables", f"--cluster-cidr={CLUSTER_CIDR}",
            "--conntrack-max-per-core=0", "--healthz-bind-address=127.0.0.1:10256",
            "--metrics-bind-address=127.0.0.1:10249",
        ]  # fmt: skip
    if name == "minio":
        return [
            str(bin_dir / "minio"), "server", str(layout.minio_data), "--quiet",
            "--address", f"{NODE_IP}:{MINIO_PORT}", "--console-address", "127.0.0.1:9001",
        ]  # fmt: skip
    if name == "forward":
        return [
            _python(repo), "-m", "kstudio_localcluster.forward", "--netns", layout.netns,
            f"--code-hash={hashlib.sha256(Path(forward.__file__).read_bytes()).hexdigest()[:12]}",
            f"127.0.0.1:{layout.api_host_port}=127.0.0.1:{API_PORT}",
            f"127.0.0.1:{layout.minio_host_port}={NODE_IP}:{MINIO_PORT}",
        ]  # fmt: skip
    if name == "kwok":
        return [
            str(bin_dir / "kwok"), f"--kubeconfig={kc / 'kwok.kubeconfig'}",
            f"--config={Path(__file__).with_name('kwok_stages.yaml')}",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}={FAKE_NODE_ANNOTATION_VALUE}",
            f"--cidr={KWOK_POD_CIDR}", "--node-lease-duration-seconds=40", f"--server-address={KWOK_SERVER}",
        ]  # fmt: skip
    if name == "node-agent":
        return [
            str(repo / ".venv" / "bin" / "kstudio-dev"),
            "node-agent",
            "--config",
            str(layout.node_agent_json),
        ]
    raise ValueError(name)


def _python(repo: Path) -> str:
    """The checkout's interpreter (stable across CLI and pytest, so flags compare equal on reuse)."""
    venv = repo / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def component_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "KSTUDIO_S3_"))}
    env["PATH"] = SYS_PATH if not env.get("PATH") else f"{env['PATH']}:{SYS_PATH}"
    env.update(extra or {})
    return env


_ERRORISH = re.compile(r"error|fail|fatal|panic|not found|denied|refused|no such|cannot|unable", re.I)


def failure_summary(log_file: Path, max_len: int = 300) -> str:
    """One line from a component's log that says why it stopped: a missing host tool turned into the
    command that installs it, else the last line that looks like an error, else the last line."""
    try:
        with log_file.open("rb") as f:
            f.seek(max(0, log_file.stat().st_size - 65536))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in lines:
        diagnosed = diagnose_log_line(line)
        if diagnosed != line:
            return diagnosed
    errorish = [ln for ln in lines if _ERRORISH.search(ln)]
    return (errorish or lines or [""])[-1][:max_len]


def start_component(name: str, layout: ClusterLayout, argv: list[str], env: dict[str, str]) -> None:
    processes.start(
        name,
        argv,
        run_dir=layout.run,
        log_dir=layout.logs,
        netns=None if name == "forward" else layout.netns,
        env=env,
        cwd=layout.root,
    )
