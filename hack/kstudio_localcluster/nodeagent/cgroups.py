"""Memory cgroups (v1 on this kernel; v2 when that is all there is) for containers.

Every container gets one, limit or not: it bounds memory when the pod asks, it is how an OOM kill is told
apart from any other SIGKILL, and its member list is how every process of the container is found and
killed (there is no PID namespace).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

PARENT = "kstudio-pods"


def _mountinfo_memory_root() -> tuple[Path, int] | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields[0] == "cgroup" and "memory" in rfields[2].split(","):
                return Path(fields[4]), 1
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4]), 2
    return None


class CgroupRoot:
    """Where container cgroups live; mounts the memory hierarchy privately if this mount ns lacks it
    (`ip netns exec` remounts /sys, hiding /sys/fs/cgroup)."""

    def __init__(self, state_dir: Path, parent: str = PARENT) -> None:
        found = _mountinfo_memory_root()
        if found is None:
            mnt = state_dir / "cgroup-memory"
            mnt.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "cgroup", "-o", "memory", "cgroup", str(mnt)], check=True)
            found = (mnt, 1)
        self.mount, self.version = found
        self.base = self.mount / parent
        self.base.mkdir(exist_ok=True)
        if self.version == 2:
            with contextlib.suppress(OSError):
                (self.mount / "cgroup.subtree_control").write_text("+memory")
            with contextlib.suppress(OSError):
                (self.base / "cgroup.subtree_control").write_text("+memory")

    def create(self, pod_uid: str, name: str, limit_bytes: int | None) -> ContainerCgroup:
        pod_dir = self.base / pod_uid
        pod_dir.mkdir(exist_ok=True)
        if self.version == 2:
            with contextlib.suppress(OSError):
                (pod_dir / "cgroup.subtree_control").write_text("+memory")
        cg = ContainerCgroup(pod_dir / name, self.version)
        cg.destroy()
        cg.path.mkdir()
        if limit_bytes is not None:
            cg.set_limit(limit_bytes)
        return cg

    def pod_dirs(self) -> list[Path]:
        return [p for p in self.base.iterdir() if p.is_dir()] if self.base.exists() else []

    def remove_pod(self, pod_uid: str) -> None:
        pod_dir = self.base / pod_uid
        if not pod_dir.exists():
            return
        for child in pod_dir.iterdir():
            if child.is_dir():
                ContainerCgroup(child, self.version).destroy()
        with contextlib.suppress(OSError):
            pod_dir.rmdir()


class ContainerCgroup:
    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def set_limit(self, limit_bytes: int) -> None:
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
            return
        (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        memsw = self.path / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            with contextlib.suppress(OSError):
                memsw.write_text(str(limit_bytes))
        with contextlib.suppress(OSError):
            (self.path / "memory.swappiness").write_text("0")

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def destroy(self) -> None:
        if not self.path.exists():
            return
        self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
