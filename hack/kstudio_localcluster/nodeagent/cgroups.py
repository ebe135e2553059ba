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
from dataclasses import dataclass
from pathlib import Path

PARENT = "kstudio-pods"
CFS_PERIOD_US = 100_000


def _v1_mount(controller: str) -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields[0] == "cgroup" and controller in rfields[2].split(","):
                return Path(fields[4])
    return None


def _v2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4])
    return None


def _mount_v1(controller: str, state_dir: Path) -> Path:
    mnt = state_dir / f"cgroup-{controller}"
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "cgroup", "-o", controller, "cgroup", str(mnt)], check=True)
    return mnt


@dataclass(frozen=True)
class CpuSettings:
    """cfs quota per 100 ms period from limits.cpu, relative weight from requests.cpu (kubelet's mapping)."""

    quota_us: int | None = None
    shares: int | None = None

    @classmethod
    def from_millicores(cls, limit_m: int | None, request_m: int | None) -> CpuSettings:
        quota = max(1000, limit_m * CFS_PERIOD_US // 1000) if limit_m else None
        shares = max(2, request_m * 1024 // 1000) if request_m else None
        return cls(quota, shares)


class CgroupRoot:
    """Where container cgroups live (memory and cpu controllers). Mounts a v1 hierarchy privately when this
    mount namespace lacks it (`ip netns exec` remounts /sys, hiding /sys/fs/cgroup)."""

    def __init__(self, state_dir: Path, parent: str = PARENT) -> None:
        self.version = 1
        memory = _v1_mount("memory")
        cpu = _v1_mount("cpu")
        if memory is None and _v2_mount() is not None:
            self.version = 2
            memory = cpu = _v2_mount()
        if memory is None:
            memory = _mount_v1("memory", state_dir)
        if cpu is None:
            try:
                cpu = _mount_v1("cpu", state_dir)
            except subprocess.CalledProcessError:
                cpu = None  # cpu limits are then not enforced; memory still is
        assert memory is not None
        self.mount = memory
        self.base = memory / parent
        self.base.mkdir(exist_ok=True)
        self.cpu_base = cpu / parent if cpu is not None and self.version == 1 else None
        if self.cpu_base is not None:
            self.cpu_base.mkdir(exist_ok=True)
        if self.version == 2:
            for d in (self.mount, self.base):
                with contextlib.suppress(OSError):
                    (d / "cgroup.subtree_control").write_text("+memory +cpu")

    def create(
        self, pod_uid: str, name: str, limit_bytes: int | None, cpu: CpuSettings | None = None
    ) -> ContainerCgroup:
        pod_dir = self.base / pod_uid
        pod_dir.mkdir(exist_ok=True)
        if self.version == 2:
            with contextlib.suppress(OSError):
                (pod_dir / "cgroup.subtree_control").write_text("+memory +cpu")
        cpu_dir = None
        if self.cpu_base is not None:
            (self.cpu_base / pod_uid).mkdir(exist_ok=True)
            cpu_dir = self.cpu_base / pod_uid / name
        cg = ContainerCgroup(pod_dir / name, self.version, cpu_dir)
        cg.destroy()
        cg.path.mkdir()
        if cpu_dir is not None:
            cpu_dir.mkdir()
        if limit_bytes is not None:
            cg.set_limit(limit_bytes)
        if cpu is not None:
            cg.set_cpu(cpu)
        return cg

    def pod_dirs(self) -> list[Path]:
        return [p for p in self.base.iterdir() if p.is_dir()] if self.base.exists() else []

    def remove_pod(self, pod_uid: str) -> None:
        pod_dir = self.base / pod_uid
        cpu_pod = self.cpu_base / pod_uid if self.cpu_base is not None else None
        if pod_dir.exists():
            for child in pod_dir.iterdir():
                if child.is_dir():
                    cpu_child = cpu_pod / child.name if cpu_pod is not None else None
                    ContainerCgroup(child, self.version, cpu_child).destroy()
            with contextlib.suppress(OSError):
                pod_dir.rmdir()
        if cpu_pod is not None and cpu_pod.exists():
            for child in cpu_pod.iterdir():
                if child.is_dir():
                    _rmdir_retry(child)
            with contextlib.suppress(OSError):
                cpu_pod.rmdir()


def _rmdir_retry(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


class ContainerCgroup:
    def __init__(self, path: Path, version: int, cpu_path: Path | None = None) -> None:
        self.path = path
        self.version = version
        self.cpu_path = cpu_path

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    @property
    def procs_files(self) -> list[Path]:
        """Every cgroup.procs a container process must join (memory, and cpu on v1)."""
        extra = [self.cpu_path / "cgroup.procs"] if self.cpu_path is not None else []
        return [self.procs_file, *extra]

    def set_cpu(self, cpu: CpuSettings) -> None:
        if self.version == 2:
            if cpu.quota_us is not None:
                (self.path / "cpu.max").write_text(f"{cpu.quota_us} {CFS_PERIOD_US}")
            if cpu.shares is not None:
                # kubelet's shares -> weight conversion
                weight = 1 + ((cpu.shares - 2) * 9999) // 262142
                (self.path / "cpu.weight").write_text(str(weight))
            return
        if self.cpu_path is None:
            return
        if cpu.quota_us is not None:
            (self.cpu_path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self.cpu_path / "cpu.cfs_quota_us").write_text(str(cpu.quota_us))
        if cpu.shares is not None:
            (self.cpu_path / "cpu.shares").write_text(str(cpu.shares))

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
        if self.path.exists():
            self.kill_all()
            _rmdir_retry(self.path)
        if self.cpu_path is not None and self.cpu_path.exists():
            _rmdir_retry(self.cpu_path)
