"""Container processes: root filesystem plan, launch through launcher.py, logs, exit, OOM, kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .cgroups import ContainerCgroup

LAUNCHER = Path(__file__).with_name("launcher.py")
_HOST_DIRS = ("usr", "etc", "opt")
_HOST_MAYBE_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_WRITABLE_TMPFS = ("/tmp", "/var/tmp", "/run")  # noqa: S108 - the container's own, not the host's
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass
class Mount:
    """One bind of a host path into the container (a volume, subPath or file)."""

    source: str
    target: str
    read_only: bool = False


def rootfs_ops(
    exposed: list[str], mounts: list[Mount], host_root: str = "/", read_only_root: bool = False
) -> list[dict[str, Any]]:
    """The launcher's steps to build a container root: a tmpfs holding read-only binds of the host's system
    dirs and of `exposed` (Python prefix, checkout), private /tmp, /run, /dev, then `mounts` (volumes,
    /etc/hosts, termination log) shallowest first. Everything else of the host (/root, ~/.cache keys,
    other checkouts) is simply absent."""
    ops: list[dict[str, Any]] = [{"op": "tmpfs", "dst": "/", "mode": "0755"}]
    # A volume mounted inside a host dir (e.g. /etc/config) needs a mount point there: such a dir gets a
    # private copy-on-write overlay instead of a read-only bind, so nothing is ever created on the host.
    overlaid = {m.target.strip("/").split("/")[0] for m in mounts if m.target.strip("/").count("/") >= 1}
    for name in _HOST_DIRS:
        if os.path.isdir(os.path.join(host_root, name)):
            if name in overlaid:
                ops.append({"op": "overlay", "lower": f"/{name}", "dst": f"/{name}"})
            else:
                ops.append({"op": "bind", "src": f"/{name}", "dst": f"/{name}", "ro": True})
    for name in _HOST_MAYBE_LINKS:
        path = os.path.join(host_root, name)
        if os.path.islink(path):
            ops.append({"op": "symlink", "target": os.readlink(path), "dst": f"/{name}"})
        elif os.path.isdir(path):
            ops.append({"op": "bind", "src": f"/{name}", "dst": f"/{name}", "ro": True})
    ops.append({"op": "tmpfs", "dst": "/dev", "mode": "0755"})
    for dev in _DEVICES:
        ops.append({"op": "bind", "src": f"/dev/{dev}", "dst": f"/dev/{dev}"})
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        ops.append({"op": "symlink", "target": f"/proc/self/fd/{i}", "dst": f"/dev/{name}"})
    ops.append({"op": "symlink", "target": "/proc/self/fd", "dst": "/dev/fd"})
    ops.append({"op": "tmpfs", "dst": "/dev/shm", "mode": "1777"})  # noqa: S108 - the container's own
    ops.append({"op": "proc", "dst": "/proc"})
    ops.append({"op": "bind", "src": "/sys", "dst": "/sys", "ro": True})
    ops.append({"op": "tmpfs", "dst": "/tmp", "mode": "1777"})  # noqa: S108 - the container's own
    ops.append({"op": "tmpfs", "dst": "/run", "mode": "0755"})
    ops.append({"op": "mkdir", "dst": "/var", "mode": "0755"})
    ops.append({"op": "tmpfs", "dst": "/var/tmp", "mode": "1777"})  # noqa: S108 - the container's own
    root_needed = any(p == "/root" or p.startswith("/root/") for p in exposed)
    ops.append({"op": "mkdir", "dst": "/root", "mode": "0755" if root_needed else "0700"})
    ops.append({"op": "mkdir", "dst": "/home", "mode": "0755"})
    covered = tuple(f"/{d}/" for d in _HOST_DIRS + _HOST_MAYBE_LINKS)
    ordered = sorted(mounts, key=lambda m: m.target.rstrip("/").count("/"))
    # The "image" (checkout, Python prefix) must keep its absolute paths (shebangs, .pth files). Where it
    # lies under a volume's target (a checkout in /tmp, a pod with an emptyDir at /tmp) it is bound again
    # above the volume, or the volume would hide it and `kstudio` would not be found.
    targets = tuple(m.target.rstrip("/") + "/" for m in ordered)
    image = [p for p in sorted(set(exposed)) if not (p + "/").startswith(covered)]
    shadowed = [p for p in image if (p + "/").startswith(targets)]
    for path in image:
        if path not in shadowed:
            ops.append({"op": "bind", "src": path, "dst": path, "ro": True})
    if read_only_root:
        # readOnlyRootFilesystem: mount points first, then everything but volumes and /dev turns read-only
        ops += [{"op": "mountpoint", "src": m.source, "dst": m.target} for m in ordered]
        ops += [{"op": "readonly", "dst": d} for d in ("/", *_WRITABLE_TMPFS)]
        ops += [{"op": "readonly", "dst": f"/{name}"} for name in sorted(overlaid & set(_HOST_DIRS))]
    for m in ordered:
        ops.append({"op": "bind", "src": m.source, "dst": m.target, "ro": m.read_only})
    for path in shadowed:
        ops.append({"op": "bind", "src": path, "dst": path, "ro": True})
    return ops


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    cwd: str
    hostname: str
    netns: str | None
    rootfs: Path
    ops: list[dict[str, Any]]
    no_new_privs: bool = False
    drop_caps: list[int] = field(default_factory=list)


class StartFailed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _now_rfc3339nano() -> str:
    now = time.time_ns()
    return datetime.fromtimestamp(now // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{now % 10**9:09d}Z"


class LogWriter:
    """Writes both streams of one container instance to a file in the CRI log format
    (`<RFC3339Nano> <stream> <F|P> <text>`), which the containerLogs endpoint reads back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def pump(self, stream_name: str, pipe: IO[bytes]) -> None:
        def run() -> None:
            try:
                while True:
                    line = pipe.readline(16384)
                    if not line:
                        return
                    tag = b"F" if line.endswith(b"\n") else b"P"
                    text = line[:-1] if line.endswith(b"\n") else line
                    record = _now_rfc3339nano().encode() + b" " + stream_name.encode() + b" " + tag + b" "
                    with self._lock:
                        self._file.write(record + text + b"\n")
                        self._file.flush()
            finally:
                pipe.close()

        t = threading.Thread(target=run, name=f"log-{self.path.parent.name}-{stream_name}", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, timeout: float = 2.0) -> None:
        for t in self._threads:
            t.join(timeout)
        with self._lock:
            self._file.close()


class ContainerProcess:
    """One running instance of a container: the launched process, its cgroup and its log."""

    def __init__(self, spec_path: Path, cgroup: ContainerCgroup, log_path: Path) -> None:
        self.spec_path = spec_path
        self.cgroup = cgroup
        self.log = LogWriter(log_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = ""
        self.exit_code: int | None = None
        self.signal: int | None = None

    def start(self, spec: LaunchSpec) -> None:
        """Launch; returns once the command was exec'd. Raises StartFailed for setup/exec errors."""
        r, w = os.pipe()
        doc = {
            "argv": spec.argv,
            "env": spec.env,
            "uid": spec.uid,
            "gid": spec.gid,
            "groups": spec.groups,
            "cwd": spec.cwd,
            "hostname": spec.hostname,
            "netns": spec.netns,
            "rootfs": str(spec.rootfs),
            "ops": spec.ops,
            "noNewPrivs": spec.no_new_privs,
            "dropCaps": spec.drop_caps,
            "cgroupProcs": [str(p) for p in self.cgroup.procs_files],
            "errorFd": w,
        }
        spec.rootfs.mkdir(parents=True, exist_ok=True)
        # The spec holds the env (Secret values too): owner-only, and removed once the launcher has read it.
        fd = os.open(self.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), str(self.spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(w,),
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            os.close(w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.log.pump("stdout", self.proc.stdout)
        self.log.pump("stderr", self.proc.stderr)
        with os.fdopen(r, "rb") as err:
            data = err.read()
        self.spec_path.unlink(missing_ok=True)
        self.started_at = _utc_now()
        if data:
            self.proc.wait()
            self.log.close()
            self.cgroup.kill_all()
            try:
                problem = json.loads(data)
                raise StartFailed(problem["reason"], problem["message"])
            except (ValueError, KeyError):
                raise StartFailed("RunContainerError", data.decode(errors="replace")) from None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def poll(self) -> int | None:
        """Exit code (128+signal when killed) once the main process ended, else None."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            return None
        if rc < 0:
            self.signal = -rc
            rc = 128 - rc
        self.exit_code = rc
        # The main process is gone: like a PID namespace ending, nothing of the container outlives it.
        self.cgroup.kill_all()
        self.log.close()
        return rc

    def oom_killed(self) -> bool:
        return self.signal == signal.SIGKILL and self.cgroup.oom_kills() > 0

    def send(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.cgroup.kill_all()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
