"""Start and stop the servers the benchmark compares: our `kstudio serve`, MLServer and KServe's Python
model server (each peer in its own venv under ~/.cache/kstudio), and the floor (our HTTP stack, no model)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KSTUDIO_CACHE", Path.home() / ".cache" / "kstudio"))
BENCH_VENV = CACHE / "bench-venv"
MLSERVER_VERSION = "1.7.1"
KSERVE_VENV = CACHE / "bench-venv-kserve"
KSERVE_VERSION = "0.21.0"
BENCH_DIR = Path(__file__).resolve().parent
SERVER_CPU = "1"  # both servers run pinned to this core, one at a time; the load generator gets core 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """The same environment for both servers: one BLAS thread (one core), OpenBLAS' own kernel choice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSTUDIO_", "OPENBLAS_", "MLSERVER_"))}
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.update(extra)
    return env


def ensure_mlserver_venv(sklearn_version: str) -> Path:
    """MLServer + mlserver-sklearn in their own venv, with our scikit-learn version (same model bytes)."""
    python = BENCH_VENV / "bin" / "python"
    probe = (
        f"import mlserver, sklearn; assert mlserver.__version__ == '{MLSERVER_VERSION}'; "
        f"assert sklearn.__version__ == '{sklearn_version}'"
    )
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return BENCH_VENV
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed to build the MLServer venv (pip install uv)")
    print(f"installing MLServer {MLSERVER_VERSION} into {BENCH_VENV} ...", flush=True)
    subprocess.run([uv, "venv", "--python", "python3.11", str(BENCH_VENV)], check=True, capture_output=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            f"mlserver=={MLSERVER_VERSION}",
            f"mlserver-sklearn=={MLSERVER_VERSION}",
            f"scikit-learn=={sklearn_version}",
        ],
        check=True,
    )
    return BENCH_VENV


def ensure_kserve_venv(sklearn_version: str) -> str | None:
    """KServe's model server in its own venv with our scikit-learn. None when it installs; else why not."""
    python = KSERVE_VENV / "bin" / "python"
    probe = (
        f"import kserve, sklearn; from importlib.metadata import version; "
        f"assert version('kserve') == '{KSERVE_VERSION}'; assert sklearn.__version__ == '{sklearn_version}'"
    )
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return None
    uv = shutil.which("uv")
    if uv is None:
        return "uv is needed to build the KServe venv (pip install uv)"
    print(f"installing kserve {KSERVE_VERSION} into {KSERVE_VENV} ...", flush=True)
    made = subprocess.run(
        [uv, "venv", "--python", "python3.11", str(KSERVE_VENV)], capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"uv venv failed: {made.stderr.strip()[-500:]}"
    installed = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            f"kserve=={KSERVE_VERSION}",
            f"scikit-learn=={sklearn_version}",
            "joblib",
        ],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        return f"uv pip install kserve=={KSERVE_VERSION} failed: {installed.stderr.strip()[-800:]}"
    return None


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *cmd],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and every worker it forked
        )


def start_ours(
    model_path: Path, sha256: str, name: str, work: Path, extra_env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    env = server_env(
        {
            "KSTUDIO_MODEL_URI": str(model_path),
            "KSTUDIO_MODEL_SHA256": sha256,
            "KSTUDIO_MODEL_NAME": name,
            "KSTUDIO_AUTH_ENABLED": "false",
            "KSTUDIO_HOST": "127.0.0.1",
            "KSTUDIO_PORT": str(port),
            "KSTUDIO_MAX_CONCURRENT_CALLS": "64",  # the bench drives up to 32 connections
            "KSTUDIO_TERMINATION_LOG": str(work / "termination-log"),
            "KSTUDIO_JOBS_WORK_DIR": str(work / "jobs"),
            **(extra_env or {}),
        }
    )
    log = work / f"ours-{name}.log"
    proc = _spawn(
        [sys.executable, str(REPO / ".venv" / "bin" / "kstudio"), "serve", "--log-level", "warning"], env, log
    )
    server = Server(f"kstudio:{name}", proc, port, log)
    wait_http(f"{server.base}/readyz", proc)
    return server


def start_mlserver(
    joblib_path: Path, name: str, work: Path, *, max_batch_size: int = 0, max_batch_time: float = 0.0
) -> Server:
    port = free_port()
    model_dir = work / f"mlserver-{name}-{max_batch_size}"
    shutil.rmtree(model_dir, ignore_errors=True)
    (model_dir / name).mkdir(parents=True)
    shutil.copy(joblib_path, model_dir / name / "model.joblib")
    (model_dir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "debug": False,
                "host": "127.0.0.1",
            }
        )
    )
    model_settings: dict[str, object] = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    if max_batch_size:
        model_settings.update({"max_batch_size": max_batch_size, "max_batch_time": max_batch_time})
    (model_dir / name / "model-settings.json").write_text(json.dumps(model_settings))
    log = work / f"mlserver-{name}-{max_batch_size}.log"
    proc = _spawn([str(BENCH_VENV / "bin" / "mlserver"), "start", str(model_dir)], server_env({}), log)
    label = f"mlserver:{name}" + (f"+batch{max_batch_size}" if max_batch_size else "")
    server = Server(label, proc, port, log)
    wait_http(f"{server.base}/v2/models/{name}/ready", proc)
    return server


def start_kserve(joblib_path: Path, name: str, work: Path) -> Server:
    port = free_port()
    log = work / f"kserve-{name}.log"
    cmd = [
        str(KSERVE_VENV / "bin" / "python"),
        str(BENCH_DIR / "kserve_sklearn.py"),
        "--model_path",
        str(joblib_path),
        "--model_name",
        name,
        "--http_port",
        str(port),
        "--grpc_port",
        str(free_port()),
    ]
    proc = _spawn(cmd, server_env({}), log)
    server = Server(f"kserve:{name}", proc, port, log)
    wait_http(f"{server.base}/v2/models/{name}/ready", proc)
    return server


def start_floor(answers: dict[int, bytes], work: Path) -> Server:
    """Our HTTP stack answering each POST with `answers[len(body)]`, no model."""
    port = free_port()
    table = {}
    for size, body in answers.items():
        path = work / f"floor-answer-{size}.json"
        path.write_bytes(body)
        table[str(size)] = str(path)
    table_path = work / "floor-answers.json"
    table_path.write_text(json.dumps(table))
    log = work / "floor.log"
    proc = _spawn(
        [sys.executable, str(BENCH_DIR / "floor.py"), str(port), str(table_path)], server_env({}), log
    )
    server = Server("floor", proc, port, log)
    wait_http(f"{server.base}/", proc)
    return server
