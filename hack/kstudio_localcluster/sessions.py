"""Who uses the local cluster, and its state files.

A file lock serialises up/down/release across processes; each pytest session registers itself as a user
(pid + process start time, so a reused pid never counts), and a cluster a fixture started is torn down
when its last user releases it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kstudio_localcluster import processes
from kstudio_localcluster.layout import MINIO_PORT, ClusterLayout


@contextlib.contextmanager
def cluster_lock(layout: ClusterLayout) -> Iterator[None]:
    """Exclusive lock for up/down/release across processes (pytest sessions, CLI)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_file, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def self_user_id() -> str:
    ticks = processes._start_ticks(os.getpid())
    return f"{os.getpid()}-{ticks}"


def live_users(layout: ClusterLayout) -> list[str]:
    live = []
    if layout.users.is_dir():
        for p in layout.users.iterdir():
            pid_s, _, ticks_s = p.name.partition("-")
            rec = processes.ProcessRecord("user", int(pid_s), int(ticks_s or -1), ())
            if pid_s.isdigit() and processes.record_alive(rec):
                live.append(p.name)
            else:
                p.unlink(missing_ok=True)
    return live


def effective(layout: ClusterLayout) -> ClusterLayout:
    """The layout with the MinIO host port the running cluster actually uses (see _start_clean)."""
    state = read_json(layout.state_json) or {}
    if layout.minio_host_port == MINIO_PORT and state.get("minioHostPort") not in (None, MINIO_PORT):
        return dataclasses.replace(layout, minio_host_port=int(state["minioHostPort"]))
    return layout


def other_users(layout: ClusterLayout) -> list[str]:
    return [u for u in live_users(layout) if u != self_user_id()]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    tmp.replace(path)
