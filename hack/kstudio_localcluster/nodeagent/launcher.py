"""Container launcher: turns a fresh root process into one container, then execs its command.

Run by the agent as `python -I -S launcher.py SPEC.json` with stdout/stderr already wired to the log pipes.
It joins the container's memory cgroup and the pod's network namespace, unshares mount/UTS/IPC
namespaces, builds a root filesystem (tmpfs + read-only binds of the host's /usr, /etc, the Python prefix
and the checkout + the pod's volumes) and pivots into it, drops to the pod's user, and execs. A failure
before exec is written to the error fd (close-on-exec: EOF there means the exec happened).

Stdlib only and single-threaded on purpose: no locks held across fork, no imports of the package.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import socket
import stat
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class LaunchError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise LaunchError("RunContainerError", f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            src.encode() if src else None,
            dst.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {src or fstype} on {dst}",
    )


def _makedirs(path: str, mode: int = 0o755) -> None:
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as exc:
        raise LaunchError(
            "CreateContainerError", f"cannot create mount point {path}: {exc.strerror}"
        ) from exc


spec_scratch: list[str] = []


def _mountpoint(src: str, dst: str) -> None:
    """Create `dst` as a directory or an empty file, matching what will be mounted there."""
    try:
        is_dir = stat.S_ISDIR(os.stat(src).st_mode)
    except OSError as exc:
        raise LaunchError("CreateContainerError", f"mount source {src}: {exc.strerror}") from exc
    if is_dir:
        _makedirs(dst)
    elif not os.path.exists(dst):
        _makedirs(os.path.dirname(dst))
        try:
            with open(dst, "a"):
                pass
        except OSError as exc:
            raise LaunchError("CreateContainerError", f"cannot create mount point {dst}: {exc}") from exc


def _apply(root: str, op: dict[str, Any]) -> None:
    dst = os.path.join(root, op["dst"].lstrip("/")) if op["dst"] != "/" else root
    kind = op["op"]
    if kind == "tmpfs":
        _makedirs(dst)
        _mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={op.get('mode', '0755')}")
    elif kind == "mkdir":
        _makedirs(dst, int(op.get("mode", "0755"), 8))
        os.chmod(dst, int(op.get("mode", "0755"), 8))
    elif kind == "symlink":
        _makedirs(os.path.dirname(dst))
        os.symlink(op["target"], dst)
    elif kind == "mountpoint":
        _mountpoint(op["src"], dst)
    elif kind == "readonly":
        _mount(None, dst, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    elif kind == "bind":
        src = op["src"]
        _mountpoint(src, dst)
        _mount(src, dst, None, MS_BIND | MS_REC)
        if op.get("ro"):
            _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    elif kind == "overlay":
        scratch = os.path.join(spec_scratch[0], op["dst"].strip("/").replace("/", "_"))
        upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
        _makedirs(upper)
        _makedirs(work)
        _makedirs(dst)
        _mount(
            "overlay",
            dst,
            "overlay",
            MS_NOSUID | MS_NODEV,
            f"lowerdir={op['lower']},upperdir={upper},workdir={work}",
        )
    elif kind == "proc":
        _makedirs(dst)
        _mount("/proc", dst, None, MS_BIND | MS_REC)
    else:
        raise LaunchError("CreateContainerError", f"unknown mount op {kind!r}")


def setup(spec: dict[str, Any]) -> None:
    for procs in spec.get("cgroupProcs") or []:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = spec["rootfs"]
    os.umask(0o022)
    scratch = root + ".scratch"
    _makedirs(scratch, 0o700)
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    spec_scratch.append(scratch)
    for op in spec["ops"]:
        _apply(root, op)
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")
    for cap in spec.get("dropCaps", []):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if spec.get("noNewPrivs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    cwd = spec.get("cwd") or "/"
    if not os.path.isdir(cwd):
        # like a runtime creating the image's WORKDIR; a read-only host dir is reported below
        with contextlib.suppress(OSError):
            os.makedirs(cwd, mode=0o755, exist_ok=True)
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setgid(int(spec["gid"]))
    os.setuid(int(spec["uid"]))
    os.umask(0o022)
    try:
        os.chdir(spec.get("cwd") or "/")
    except OSError as exc:
        raise LaunchError(
            "CreateContainerError", f"working directory {spec.get('cwd')}: {exc.strerror}"
        ) from exc


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    err_fd = int(spec["errorFd"])
    os.set_inheritable(err_fd, False)
    try:
        setup(spec)
        argv = spec["argv"]
        if not argv:
            raise LaunchError("CreateContainerError", "no command specified")
        try:
            os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - exec is the point
        except OSError as exc:
            raise LaunchError(
                "StartError",
                f'exec: "{argv[0]}": '
                + ("executable file not found in $PATH" if exc.errno == 2 else str(exc.strerror)),
            ) from exc
    except LaunchError as exc:
        os.write(err_fd, json.dumps({"reason": exc.reason, "message": exc.message}).encode())
        os._exit(128)
    except Exception as exc:
        os.write(err_fd, json.dumps({"reason": "RunContainerError", "message": repr(exc)}).encode())
        os._exit(128)


if __name__ == "__main__":
    main()
