"""A SIGTERM that reaches `kstudio operator` while it is still starting (its imports take a second or more
on a busy node, before kopf installs its own handler) is a clean stop: exit 0 and a line saying so, not a
death by the signal (exit 143, -15 to a parent), which a rolling update or a test's stop would report
as a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

KSTUDIO = Path(sys.executable).parent / "kstudio"
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM now (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & SIGTERM_BIT)
    return False


def test_a_sigterm_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    env["KUBECONFIG"] = str(tmp_path / "none")  # never reached: the stop comes first
    proc = subprocess.Popen(
        [str(KSTUDIO), "operator", "--namespace", "nowhere"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not _catches_sigterm(proc.pid):  # the first handler installed: the operator's, at its start
        assert proc.poll() is None and time.monotonic() < deadline, "never caught SIGTERM"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"stopped by SIGTERM while starting" in out
