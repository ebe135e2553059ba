"""Image references -> what the local node can run.

Only the project's own image exists here: any reference whose repository name is `kstudio`
(`kstudio:dev`, `ghcr.io/org/kstudio:0.1.0`, `kstudio@sha256:...`) maps to the agent's image venv (the
checkout's .venv, or the product wheel in a clean venv), with the Dockerfile's ENTRYPOINT, USER and ENV.
Anything else fails as a registry pull would.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_REPOSITORY = "kstudio"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImagePullError(Exception):
    """The image does not exist on this node and cannot be pulled (ErrImagePull)."""


@dataclass(frozen=True)
class Image:
    reference: str
    image_id: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    workdir: str


def repository_name(reference: str) -> str:
    """Last path component of the repository, without registry, tag or digest."""
    ref = reference.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def resolve_image(reference: str, venv: Path) -> Image:
    if repository_name(reference) != PROJECT_REPOSITORY:
        raise ImagePullError(
            f'failed to pull and unpack image "{reference}": the local node has no registry access and '
            f'runs only the project image (repository "{PROJECT_REPOSITORY}")'
        )
    venv_bin = venv / "bin"
    return Image(
        reference=reference,
        image_id=f"local://{venv}",
        entrypoint=["kstudio"],
        cmd=[],
        env={
            "PATH": f"{venv_bin}:{DEFAULT_PATH}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        },
        uid=65532,
        gid=65532,
        workdir="/",
    )


def container_argv(container: dict[str, object], image: Image) -> list[str]:
    """Docker/CRI rule: command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [str(c) for c in command] if isinstance(command, list) else []
        return argv + ([str(a) for a in args] if isinstance(args, list) else [])
    return image.entrypoint + ([str(a) for a in args] if isinstance(args, list) and args else image.cmd)


def bytecode_targets(venv: Path, repo: Path) -> list[Path]:
    """What `compile_image` byte-compiles: the venv's site-packages and the checkout's source dirs that
    editable installs (.pth files) put on sys.path."""
    targets = sorted((venv / "lib").glob("python3*/site-packages"))
    for site in list(targets):
        for pth in site.glob("*.pth"):
            for line in pth.read_text(errors="replace").splitlines():
                entry = Path(line.strip())
                if entry.is_absolute() and entry.is_dir() and repo in entry.parents:
                    targets.append(entry)
    return targets


def compile_image(venv: Path, repo: Path, python: str) -> float:
    """Byte-compile the project image like the Dockerfile's UV_COMPILE_BYTECODE=1 does.

    Pods run as non-root on a read-only view of the checkout, so they cannot cache bytecode themselves;
    without this every pod start recompiles numpy/sklearn/kubernetes in memory. Runs at the lowest CPU
    priority; returns the seconds it took (a no-op pass takes a few seconds).
    """
    started = time.monotonic()
    targets = [str(t) for t in bytecode_targets(venv, repo)]
    if targets:
        subprocess.run(
            ["nice", "-n", "19", python, "-m", "compileall", "-q", "-j", "2", *targets],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=900,
        )
    return time.monotonic() - started
