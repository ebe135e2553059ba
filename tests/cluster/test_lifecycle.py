"""`cluster up` reuses or replaces, `cluster down` leaves nothing behind.

These tests destroy clusters, so each runs its own instance (netns `kstudio-lc`, its own state dir and
host ports, its own cgroup parent and pod netns prefix) beside the shared one, which they never touch.
The teardown test runs a real pod through the node agent, and also plants what a crashed agent leaves
(a pod netns with a process, a memory cgroup holding a process), so teardown has to clean both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kstudio_localcluster import cluster, netns, processes
from kstudio_localcluster.layout import ClusterLayout, repo_root

pytestmark = pytest.mark.cluster

NAME = "kstudio-lc"
KSTUDIO_DEV = repo_root() / ".venv" / "bin" / "kstudio-dev"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[ClusterLayout]:
    lay = ClusterLayout(
        name=NAME, root=tmp_path / "cluster", api_host_port=_free_port(), minio_host_port=_free_port()
    )
    try:
        yield lay
    finally:
        cluster.teardown(lay)  # whatever a failed test left


def _cli(layout: ClusterLayout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(KSTUDIO_DEV), "cluster", "--name", layout.name, "--root", str(layout.root),
            "--api-port", str(layout.api_host_port), "--minio-port", str(layout.minio_host_port), *args,
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _pids(layout: ClusterLayout) -> dict[str, int]:
    return {r.name: r.pid for r in processes.all_records(layout.run) if processes.record_alive(r)}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _plant_crashed_pod(layout: ClusterLayout) -> list[int]:
    """What a killed node agent leaves: a pod netns with a process, a container cgroup with a process."""
    pod_ns = f"{layout.pod_netns_prefix}deadbeef"
    subprocess.run(["ip", "netns", "add", pod_ns], check=True)
    sleeper_in_pod = subprocess.Popen(["ip", "netns", "exec", pod_ns, "sleep", "600"], start_new_session=True)
    v1 = Path("/sys/fs/cgroup/memory")
    base = v1 if v1.is_dir() else Path("/sys/fs/cgroup")  # cgroup v1 memory controller, else v2
    cg = base / layout.cgroup_parent / "planted-pod-uid" / "c1"
    cg.mkdir(parents=True)
    sleeper_in_cgroup = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (cg / "cgroup.procs").write_text(str(sleeper_in_cgroup.pid))
    stray_in_cluster_ns = subprocess.Popen(
        ["ip", "netns", "exec", layout.netns, "sleep", "600"], start_new_session=True
    )
    return [sleeper_in_pod.pid, sleeper_in_cgroup.pid, stray_in_cluster_ns.pid]


def _veths(ns: str | None) -> list[str]:
    cmd = ["ip", "-o", "link", "show", "type", "veth"]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _nft_tables(ns: str | None) -> str:
    cmd = ["nft", "list", "tables"]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


POD = """
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: default}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: kstudio:dev
    command: [python, -c, "import time; time.sleep(600)"]
    resources: {limits: {memory: 128Mi}}
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"""


def test_cluster_down_leaves_no_process_netns_veth_cgroup_or_nftables_table(
    layout: ClusterLayout, go_binaries: Path
) -> None:
    assert cluster.agent_available(repo_root())
    up = _cli(layout, "up")
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={layout.kubeconfig}" in up.stdout
    before = _pids(layout)
    assert set(before) == set(cluster.COMPONENTS)
    assert "table ip kube-proxy" in _nft_tables(layout.netns)
    kubectl = [str(go_binaries / "kubectl"), "--kubeconfig", str(layout.kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", "-"], input=POD, text=True, capture_output=True, check=True)
    subprocess.run(
        [*kubectl, "wait", "pod/sleeper", "--for=condition=Ready", "--timeout=60s"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [n for n in netns.list_netns() if n.startswith(layout.pod_netns_prefix)], "agent made no pod netns"
    assert list(Path("/sys/fs/cgroup").glob(f"*/{layout.cgroup_parent}/*")), "agent made no pod cgroup"
    veths = _veths(layout.netns)
    assert veths, "the pod has no veth on the cluster bridge"
    planted = _plant_crashed_pod(layout)

    down = _cli(layout, "down")
    assert down.returncode == 0, down.stderr

    alive = [
        (p, Path(f"/proc/{p}/cmdline").read_bytes())
        for p in [*before.values(), *planted]
        if processes.is_alive(p)
    ]
    for p in planted:  # reap the test's own children so they do not linger as zombies
        processes.wait_gone([p], 1.0)
    assert alive == []
    assert not netns.exists(layout.netns)
    assert not set(veths) & set(_veths(None))
    assert [n for n in netns.list_netns() if n.startswith(layout.pod_netns_prefix)] == []
    assert list(Path("/sys/fs/cgroup").glob(f"*/{layout.cgroup_parent}")) == []
    assert "kube-proxy" not in _nft_tables(None)
    assert not _port_open(layout.api_host_port) and not _port_open(layout.minio_host_port)
    assert not layout.state_json.exists() and not layout.etcd_data.exists()
    status = _cli(layout, "status")
    assert status.returncode == 3 and "running: False" in status.stdout


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_up_twice_reuses_the_healthy_cluster(layout: ClusterLayout, go_binaries: Path) -> None:
    first = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    pids = _pids(layout)
    second = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    assert not first.reused and second.reused
    assert _pids(layout) == pids
    assert second.minio == first.minio


def test_up_replaces_a_half_killed_cluster(layout: ClusterLayout, go_binaries: Path) -> None:
    cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    old = _pids(layout)
    # A session that died mid-way: etcd and the API server killed, the rest still running.
    for name in ("etcd", "kube-apiserver"):
        os.kill(old[name], signal.SIGKILL)
    processes.wait_gone([old["etcd"], old["kube-apiserver"]], 5.0)
    messages: list[str] = []
    info = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=messages.append)
    assert not info.reused
    assert any("cleaning up a previous cluster (etcd is not running)" in m for m in messages), messages
    assert not any(processes.is_alive(p) for p in old.values())
    new = _pids(layout)
    assert set(new) == set(old) and not set(new.values()) & set(old.values())
    out = subprocess.run(
        [str(go_binaries / "kubectl"), "--kubeconfig", str(info.kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "ok"


def test_up_refuses_a_host_port_taken_by_someone_else(layout: ClusterLayout, go_binaries: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", layout.api_host_port))
        squatter.listen()
        with pytest.raises(
            cluster.ClusterError, match=rf"127.0.0.1:{layout.api_host_port} is already in use"
        ):
            cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    assert not netns.exists(layout.netns)  # refused before creating anything


def test_up_restarts_a_cluster_whose_flags_differ_from_this_checkout(
    layout: ClusterLayout, go_binaries: Path
) -> None:
    cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    old = _pids(layout)
    # As if an older harness had started kube-proxy without --bind-address.
    pidfile = processes.pidfile(layout.run, "kube-proxy")
    raw = json.loads(pidfile.read_text())
    raw["argv"] = [a for a in raw["argv"] if not a.startswith("--bind-address")]
    pidfile.write_text(json.dumps(raw))
    messages: list[str] = []
    info = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=messages.append)
    assert not info.reused
    assert any("kube-proxy runs with other flags" in m for m in messages), messages
    assert not set(_pids(layout).values()) & set(old.values())


def test_up_recovers_when_a_crashed_session_lost_its_pidfiles(
    layout: ClusterLayout, go_binaries: Path
) -> None:
    cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
    old = _pids(layout)
    for name in old:  # every pidfile gone; processes, netns and the host ports still held
        processes.pidfile(layout.run, name).unlink()
    messages: list[str] = []
    info = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=messages.append)
    assert not info.reused
    assert any("orphan forward" in m and f"netns {NAME}" in m for m in messages), messages
    assert not any(processes.is_alive(p) for p in old.values())
    assert _port_open(layout.api_host_port)


def test_up_restarts_a_dead_node_agent_and_keeps_the_control_plane(
    layout: ClusterLayout, go_binaries: Path
) -> None:
    assert cluster.agent_available(repo_root())
    cluster.ensure_up(layout, bin_dir=go_binaries, log=lambda _: None)
    old = _pids(layout)
    os.kill(old["node-agent"], signal.SIGKILL)
    processes.wait_gone([old["node-agent"]], 5.0)
    messages: list[str] = []
    info = cluster.ensure_up(layout, bin_dir=go_binaries, log=messages.append)
    assert info.reused and info.node_agent
    assert "node agent not running: starting it" in messages
    new = _pids(layout)
    assert new["node-agent"] != old["node-agent"]
    assert {k: v for k, v in new.items() if k != "node-agent"} == {
        k: v for k, v in old.items() if k != "node-agent"
    }


def test_minio_host_forward_moves_off_a_busy_port_9000_and_reuse_keeps_it(
    tmp_path: Path, go_binaries: Path
) -> None:
    layout = ClusterLayout(
        name=NAME, root=tmp_path / "cluster", api_host_port=_free_port(), minio_host_port=9000
    )
    squatter = socket.socket()
    try:
        with contextlib.suppress(OSError):  # busy already (e.g. the shared cluster's forward) is just as good
            squatter.bind(("127.0.0.1", 9000))
            squatter.listen()
        assert _port_open(9000)
        first = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
        assert first.minio.host_endpoint != "127.0.0.1:9000"
        port = int(first.minio.host_endpoint.rsplit(":", 1)[1])
        assert _port_open(port)
        again = cluster.ensure_up(layout, bin_dir=go_binaries, agent=False, log=lambda _: None)
        assert again.reused and again.minio == first.minio
    finally:
        squatter.close()
        cluster.teardown(layout)
    assert not _port_open(port)
