"""Start, find and stop the cluster's processes by pidfile, never by name.

Each component runs as `ip netns exec <ns> <binary> ...` started in its own session. `ip netns exec`
execs (no fork), so the PID we get is the component's. A pidfile records the PID with its start time
(/proc/<pid>/stat field 22), so a recycled PID is never mistaken for ours. The processes outlive the
`kstudio-dev cluster up` command that started them; logs go to <root>/logs/<component>.log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces/parens; fields after the last ')' are fixed.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None  # a zombie is as good as dead
    return int(rest[19])


def is_alive(pid: int) -> bool:
    return _start_ticks(pid) is not None


def record_alive(rec: ProcessRecord) -> bool:
    return _start_ticks(rec.pid) == rec.start_ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    # Reap our own children so they do not linger as zombies; not our child -> nothing to do.
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid.json"


def read_record(run_dir: Path, name: str) -> ProcessRecord | None:
    try:
        raw = json.loads(pidfile(run_dir, name).read_text())
        return ProcessRecord(raw["name"], int(raw["pid"]), int(raw["startTicks"]), tuple(raw["argv"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def all_records(run_dir: Path) -> list[ProcessRecord]:
    if not run_dir.is_dir():
        return []
    recs = [read_record(run_dir, p.name.removesuffix(".pid.json")) for p in run_dir.glob("*.pid.json")]
    return [r for r in recs if r is not None]


def start(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_dir: Path,
    netns: str | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start `argv` detached (new session), inside `netns` if given; write its pidfile."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    full = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
    with open(log_dir / f"{name}.log", "ab") as log:
        log.write(f"\n==> {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(full)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        proc.wait()
        raise RuntimeError(f"{name} exited immediately (code {proc.returncode}); see {log_dir / name}.log")
    rec = ProcessRecord(name, proc.pid, ticks, tuple(full))
    pidfile(run_dir, name).write_text(
        json.dumps({"name": name, "pid": rec.pid, "startTicks": ticks, "argv": list(full)})
    )
    # The process outlives us; keep the handle so Python neither warns nor loses it, and so
    # stop() can reap it while we are still its parent.
    _CHILDREN[proc.pid] = proc
    return rec


def signal_record(rec: ProcessRecord, sig: int) -> None:
    if record_alive(rec):
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until every pid is dead (reaping our children); True if they all went in time."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            _reap(pid)
        if not any(is_alive(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(rec: ProcessRecord, *, grace: float) -> None:
    """SIGTERM, wait `grace` seconds, then SIGKILL. Only if the pidfile still names the same process."""
    if not record_alive(rec):
        _reap(rec.pid)
        return
    signal_record(rec, signal.SIGTERM)
    if not wait_gone([rec.pid], grace):
        signal_record(rec, signal.SIGKILL)
        wait_gone([rec.pid], 5.0)


def kill_pids(pids: Sequence[int], *, grace: float) -> None:
    """SIGTERM then SIGKILL a set of pids we found inside our own namespace/cgroups."""
    me = os.getpid()
    targets = [p for p in pids if p != me and is_alive(p)]
    for p in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    if not wait_gone(targets, grace):
        for p in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_gone(targets, 5.0)


def listener_pids(port: int) -> list[int]:
    """PIDs holding a listening TCP socket on `port` (any address) in this network namespace."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(f[9])
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.append(int(proc.name))
                        break
    return pids


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []
