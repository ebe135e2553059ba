"""A zip-bomb model given to a real `kstudio serve` in a 512 MiB memory cgroup (as a pod's container): refused
with exit 2 and a clear reason, its peak RSS far below the 1.9 GB the model would inflate to.

The limit is not configured: it comes from the cgroup (half of 512 MiB), as in a pod. The cgroup is made
with the node agent's own code (kstudio_localcluster.nodeagent.cgroups), under a parent of its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scorer_support import KSTUDIO, free_port

from fixtures.zip_bombs import MIB, inner_bomb_payload, stored_member, write_bomb, zeros_member
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_localcluster.nodeagent.cgroups import CgroupRoot, ContainerCgroup

MEMORY_LIMIT = 512 * MIB
BOMB_MIB = 1811  # 1.9 GB inflated, ~2 MB on disk
PEAK_RSS_CEILING = 400 * MIB  # a scorer that loaded nothing; the bomb alone would be 1.9 GB


@pytest.fixture
def container_cgroup(tmp_path: Path) -> Iterator[ContainerCgroup]:
    root = CgroupRoot(tmp_path / "cgroup-state", parent="kstudio-scorer-tests")
    pod = uuid.uuid4().hex
    cgroup = root.create(pod, "scorer", MEMORY_LIMIT)
    yield cgroup
    root.remove_pod(pod)


def _join(cgroup: ContainerCgroup) -> Callable[[], None]:
    def in_child() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # die with pytest
        for procs in cgroup.procs_files:
            procs.write_text(str(os.getpid()))

    return in_child


def _serve_once(artifact: Path, sha256: str, work: Path, cgroup: ContainerCgroup) -> tuple[int, int, str]:
    """Run `kstudio serve` to its exit; (exit code, peak RSS bytes, termination log)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    env.update(
        {
            "KSTUDIO_MODEL_URI": str(artifact),
            "KSTUDIO_MODEL_SHA256": sha256,
            "KSTUDIO_AUTH_ENABLED": "false",
            "KSTUDIO_HOST": "127.0.0.1",
            "KSTUDIO_PORT": str(free_port()),
            "KSTUDIO_TERMINATION_LOG": str(work / "termination-log"),
            "KSTUDIO_JOBS_WORK_DIR": str(work / "jobs"),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, str(KSTUDIO), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_join(cgroup),
    )
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024, (work / "termination-log").read_text()


@pytest.fixture(scope="module")
def manifest_json() -> bytes:
    manifest = IlearnerManifest(
        task="classification", label="y", inputSchema=[ColumnSpec(name="x", type="number")], classes=[0, 1]
    )
    return manifest.model_dump_json().encode()


@pytest.mark.parametrize(
    ("bomb", "reason"),
    [
        (
            "declared",
            f"model.skops declares {BOMB_MIB * MIB} inflated bytes, more than the limit of 268435456",
        ),
        ("lying", "model.skops is damaged: Bad CRC-32"),
        ("inner", "model.skops (its members together) declares"),
    ],
)
def test_bomb_model_is_refused_with_exit_2_and_flat_memory(
    bomb: str,
    reason: str,
    manifest_json: bytes,
    tmp_path: Path,
    container_cgroup: ContainerCgroup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = {
        "declared": lambda: zeros_member("model.skops", BOMB_MIB),
        "lying": lambda: zeros_member("model.skops", BOMB_MIB, declared_size=1000),
        "inner": lambda: stored_member("model.skops", inner_bomb_payload(BOMB_MIB)),
    }[bomb]()
    artifact = tmp_path / "bomb.ilearner"
    sha256 = write_bomb(artifact, manifest_json, model)
    code, peak_rss, message = _serve_once(artifact, sha256, tmp_path, container_cgroup)
    with capsys.disabled():
        print(
            f"\n{bomb} bomb ({artifact.stat().st_size / MIB:.1f} MiB file, {BOMB_MIB} MiB inflated): "
            f"exit {code}, peak RSS {peak_rss / MIB:.0f} MiB"
        )
    assert code == 2, f"exit {code} (an OOM kill is -9): {message}"
    assert reason in message
    if bomb == "declared":
        assert "half the container's memory limit of 512 MiB" in message
    assert container_cgroup.oom_kills() == 0
    assert peak_rss < PEAK_RSS_CEILING
