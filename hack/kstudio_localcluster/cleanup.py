"""Tearing a cluster instance down, and finding what an earlier one left behind.

Order: kwok (fake nodes) and the node agent first (it stops its pods), then kube-proxy, scheduler,
controller manager, the API server, MinIO, etcd last (stopped together with etcd, the API server hangs
for minutes), the host forward.
Then whatever still lives in the cluster or pod namespaces (found by namespace inode, so also after the
agent deleted a pod namespace's name) or in the agent's cgroups is killed; cgroups, namespaces and
runtime data are removed. Processes are found by pidfile, namespace or cgroup membership, never by name.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kstudio_localcluster import netns, processes
from kstudio_localcluster.components import COMPONENTS, OPTIONAL_COMPONENTS, STOP_GRACE, ClusterError
from kstudio_localcluster.layout import ClusterLayout

Log = Callable[[str], None]


def cgroup_dirs(parent: str) -> list[Path]:
    """Every cgroup directory named `parent` directly under a v1 controller or the v2 root."""
    base = Path("/sys/fs/cgroup")
    found = [base / parent] if (base / parent).is_dir() else []
    if base.is_dir():
        for ctrl in base.iterdir():
            d = ctrl / parent
            if ctrl.is_dir() and not ctrl.is_symlink() and d.is_dir():
                found.append(d)
    return found


def _cgroup_pids(d: Path) -> list[int]:
    pids: set[int] = set()
    for sub in [d, *[p for p in d.rglob("*") if p.is_dir()]]:
        for fname in ("cgroup.procs", "tasks"):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in (sub / fname).read_text().split())
    return sorted(pids)


def _remove_cgroup_tree(d: Path) -> None:
    subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for p in [*subdirs, d]:
        for _ in range(50):
            try:
                p.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def _mounts_under(root: Path) -> list[Path]:
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = Path(line.split()[4].replace("\\040", " "))
            if mp == root or root in mp.parents:
                out.append(mp)
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def pod_netns(layout: ClusterLayout) -> list[str]:
    """The node agent's pod namespaces (named with this instance's prefix)."""
    return [n for n in netns.list_netns() if n.startswith(layout.pod_netns_prefix) and n != layout.netns]


def orphan_forwards(layout: ClusterLayout) -> list[int]:
    """Host forwards of this instance whose pidfile is gone: found by the ports they hold."""
    found = []
    for port in {layout.api_host_port, layout.minio_host_port}:
        for pid in processes.listener_pids(port):
            argv = processes.cmdline(pid)
            ours = "kstudio_localcluster.forward" in argv and "--netns" in argv
            if ours and argv[argv.index("--netns") + 1 :][:1] == [layout.netns]:
                found.append(pid)
    return found


def leftovers(layout: ClusterLayout) -> list[str]:
    """Human-readable list of what a previous cluster left on this machine."""
    found = [
        f"process {r.name} (pid {r.pid})"
        for r in processes.all_records(layout.run)
        if processes.record_alive(r)
    ]
    found += [f"orphan forward (pid {p})" for p in orphan_forwards(layout)]
    if netns.exists(layout.netns):
        found.append(f"netns {layout.netns}")
    found += [f"netns {n}" for n in pod_netns(layout)]
    found += [f"cgroup {d}" for d in cgroup_dirs(layout.cgroup_parent)]
    if layout.state_json.exists():
        found.append(str(layout.state_json))
    return found


def teardown_locked(layout: ClusterLayout, log: Log) -> None:
    # Remember the namespaces by inode first: the agent may delete pod netns names on its way out
    # while processes still live in them.
    ns_inodes = {i for i in (netns.inode(n) for n in [layout.netns, *pod_netns(layout)]) if i is not None}
    records = {r.name: r for r in processes.all_records(layout.run)}
    for name in [*OPTIONAL_COMPONENTS, *reversed(COMPONENTS)]:
        rec = records.pop(name, None)
        if rec is not None:
            processes.stop(rec, grace=STOP_GRACE.get(name, 5.0))
    for rec in records.values():
        processes.stop(rec, grace=5.0)
    processes.kill_pids(orphan_forwards(layout), grace=5.0)
    # Whatever else still lives in our namespaces or cgroups (pods of a crashed agent, stray children).
    pod_ns = pod_netns(layout)
    ns_inodes |= {i for i in (netns.inode(n) for n in [layout.netns, *pod_ns]) if i is not None}
    processes.kill_pids(netns.pids_in_namespaces(ns_inodes), grace=5.0)
    cgroups = cgroup_dirs(layout.cgroup_parent)
    for d in cgroups:
        processes.kill_pids(_cgroup_pids(d), grace=5.0)
    for d in cgroups:
        _remove_cgroup_tree(d)
    for ns in [*pod_ns, layout.netns]:
        try:
            netns.delete_netns(ns)
        except netns.NetnsError as exc:
            log(f"warning: {exc}")
    for mp in _mounts_under(layout.root):
        subprocess.run(["umount", "-l", str(mp)], capture_output=True, check=False)
    for d in (
        layout.etcd_data,
        layout.minio_data,
        layout.agent_state,
        layout.kwok_workdir,
        layout.run,
        layout.component_kubeconfigs,
    ):
        shutil.rmtree(d, ignore_errors=True)
    for f in (layout.state_json, layout.kubeconfig, layout.minio_json, layout.node_agent_json):
        f.unlink(missing_ok=True)
    # layout.users stays: sessions still running keep their claim on whatever cluster comes next.
    left = leftovers(layout)
    if left:
        raise ClusterError("teardown left behind: " + ", ".join(left))
