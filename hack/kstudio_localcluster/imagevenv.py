"""The product as the Docker image holds it: this checkout's wheel installed into a clean venv.

The steps are the Dockerfile's: export the locked runtime requirements (`uv export --no-dev`, no
workspace members: the dev distribution never ships), `uv venv`, install them, build the product wheel
(`uv build --wheel`) and install it without dependencies, byte-compiled. The node agent runs this venv
for `kstudio` images when the cluster is started with it (`kstudio-dev cluster up --image-venv DIR`), so
a test then runs exactly what the image would.

Venvs are cached in $KSTUDIO_CACHE/image-venvs/<key>, keyed by the sha256 of the wheel and of the
requirements (hatchling builds reproducible wheels), so an unchanged checkout reuses its venv.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kstudio_localcluster.layout import cache_root, repo_root

Log = Callable[[str], None]
PRODUCT = "kstudio"


class ImageVenvError(RuntimeError):
    """A step of building the wheel or the venv failed; the message names the command and its output."""


def _stderr(msg: str) -> None:
    print(f"kstudio-dev image-venv: {msg}", file=sys.stderr, flush=True)


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise ImageVenvError("uv not found: python3 -m pip install 'uv>=0.13,<0.14'")
    return found


def _run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # uv pip targets --python, never the caller's venv
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise ImageVenvError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def build_wheel(out_dir: Path, repo: Path | None = None) -> Path:
    """`uv build --wheel` of the product (the root project, never the workspace's dev member)."""
    repo = repo or repo_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    _run([_uv(), "build", "--wheel", "--package", PRODUCT, "--out-dir", str(out_dir), "--quiet"], repo)
    wheels = sorted(out_dir.glob(f"{PRODUCT}-*.whl"))
    if len(wheels) != 1:
        raise ImageVenvError(f"expected one {PRODUCT} wheel in {out_dir}, found {[w.name for w in wheels]}")
    return wheels[0]


def export_requirements(path: Path, repo: Path | None = None) -> Path:
    """The locked runtime requirements, with hashes: what the Dockerfile installs before the wheel."""
    repo = repo or repo_root()
    # Read from stdout: with --output-file the header would name the (temporary) path, changing the key.
    path.write_text(_run([_uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-emit-workspace",
                          "--package", PRODUCT, "--quiet"], repo))  # fmt: skip
    return path


def _base_python() -> str:
    """The base interpreter of this process: the node agent exposes exactly that prefix to pods."""
    v = sys.version_info
    return str(Path(sys.base_prefix) / "bin" / f"python{v.major}.{v.minor}")


def ensure_image_venv(repo: Path | None = None, cache: Path | None = None, log: Log = _stderr) -> Path:
    """Return the venv holding this checkout's wheel and locked requirements, building it if needed."""
    repo = repo or repo_root()
    root = (cache or cache_root()) / "image-venvs"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist", repo)
        requirements = export_requirements(work / "requirements.txt", repo)
        key = hashlib.sha256(wheel.read_bytes() + requirements.read_bytes()).hexdigest()[:16]
        venv = root / key
        done = venv / ".complete"  # written last: a venv without it is a build that died half-way
        with (root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions: one builds, the others reuse
            if done.exists():
                return venv
            log(f"installing {wheel.name} into a clean venv ({venv})")
            shutil.rmtree(venv, ignore_errors=True)
            # Built in place: uv writes the venv's absolute path into every script's shebang.
            uv = _uv()
            _run([uv, "venv", "--quiet", "--python", _base_python(), str(venv)], repo)
            py = str(venv / "bin" / "python")
            _run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", py,
                  "--requirements", str(requirements)], repo)  # fmt: skip
            _run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--no-deps", "--python", py,
                  str(wheel)], repo)  # fmt: skip
            if not (venv / "bin" / PRODUCT).exists():
                raise ImageVenvError(f"{venv} has no bin/{PRODUCT} after installing {wheel.name}")
            done.write_text(wheel.name + "\n")
            _prune(root, keep=KEEP)
    return venv


KEEP = 3


def _prune(root: Path, keep: int) -> None:
    """Delete all but the `keep` newest venvs (each holds ~700 MB; a running agent uses a recent one)."""
    built = sorted((d for d in root.iterdir() if (d / ".complete").exists()),
                   key=lambda d: (d / ".complete").stat().st_mtime, reverse=True)  # fmt: skip
    for old in built[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kstudio-dev image-venv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.parse_args(list(argv))
    try:
        print(ensure_image_venv())
    except ImageVenvError as exc:
        _stderr(f"error: {exc}")
        return 1
    return 0
