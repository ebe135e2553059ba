"""Helpers of the scorer tier: tiny models fitted into tmp dirs, settings, and real `kstudio serve`
processes on 127.0.0.1 (PR_SET_PDEATHSIG makes them die with pytest too)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_scorer.settings import ScorerSettings
from kstudio_trainer.artifact_writer import write_ilearner

REPO = Path(__file__).resolve().parents[2]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"


@dataclass(frozen=True)
class BuiltModel:
    path: Path
    sha256: str
    pipeline: Any
    manifest: IlearnerManifest
    frame: pd.DataFrame  # training inputs, handy as request rows


def _mixed_frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "bill_length_mm": rng.normal(44, 5, n).round(1),
            "flipper_count": rng.integers(1, 9, n).astype(float),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "male": rng.random(n) > 0.5,
        }
    )
    score = (df.bill_length_mm - 44) / 5 + (df.island == "Dream") * 1.5 - df.male * 0.5
    y = np.where(score > 0.7, "Chinstrap", np.where(score < -0.7, "Adelie", "Gentoo"))
    return df, y


def build_classifier(directory: Path) -> BuiltModel:
    """LogisticRegression over number, integer, string and boolean columns (a DataFrame pipeline)."""
    df, y = _mixed_frame(300)
    pipeline = make_pipeline(
        make_column_transformer(
            (
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["bill_length_mm", "flipper_count"],
            ),
            (OneHotEncoder(handle_unknown="ignore"), ["island"]),
            ("passthrough", ["male"]),
        ),
        LogisticRegression(max_iter=500),
    )
    pipeline.fit(df, y)
    manifest = IlearnerManifest(
        task="classification",
        label="species",
        inputSchema=[
            ColumnSpec(name="bill_length_mm", type="number"),
            ColumnSpec(name="flipper_count", type="integer"),
            ColumnSpec(name="island", type="string", categories=["Biscoe", "Dream", "Torgersen"]),
            ColumnSpec(name="male", type="boolean"),
        ],
        classes=sorted(set(y.tolist())),
    )
    path = directory / "penguins.ilearner"
    digest = write_ilearner(path, pipeline, manifest)
    return BuiltModel(path, digest.sha256, pipeline, manifest, df)


def build_forest(directory: Path, n_features: int = 6, n_estimators: int = 50) -> BuiltModel:
    """RandomForestClassifier on a bare float matrix (columns f0..fN), integer classes."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, n_features))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(x, y)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name=f"f{i}", type="number") for i in range(n_features)],
        classes=[0, 1],
    )
    path = directory / "forest.ilearner"
    digest = write_ilearner(path, forest, manifest)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(n_features)])
    return BuiltModel(path, digest.sha256, forest, manifest, frame)


def build_regressor(directory: Path) -> BuiltModel:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([3.0, -2.0, 0.5]) + 10
    model = LinearRegression().fit(x, y)
    manifest = IlearnerManifest(
        task="regression",
        label="progression",
        inputSchema=[ColumnSpec(name=n, type="number") for n in ("age", "bmi", "bp")],
    )
    path = directory / "diabetes.ilearner"
    digest = write_ilearner(path, model, manifest)
    return BuiltModel(path, digest.sha256, model, manifest, pd.DataFrame(x, columns=["age", "bmi", "bp"]))


def settings_for(model: BuiltModel, **overrides: Any) -> ScorerSettings:
    values: dict[str, Any] = {
        "model_uri": str(model.path),
        "model_sha256": model.sha256,
        "auth_enabled": False,
        "termination_log": None,
    }
    values.update(overrides)
    return ScorerSettings(**values)


def wait_ready(client: TestClient | httpx.Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return
        if r.json().get("state") == "failed":
            raise AssertionError(f"model failed to load: {r.json()}")
        time.sleep(0.05)
    raise AssertionError("scorer did not become ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class ScorerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def peak_rss_mib(self) -> float:
        """VmHWM: the process's peak resident set size so far."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def start_scorer(env_overrides: dict[str, str], work_dir: Path, *, wait: bool = True) -> ScorerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    env.update(
        {
            "KSTUDIO_HOST": "127.0.0.1",
            "KSTUDIO_PORT": str(port),
            "KSTUDIO_MODEL_DIR": str(work_dir / "model"),
            "KSTUDIO_JOBS_WORK_DIR": str(work_dir / "jobs"),
            "KSTUDIO_TERMINATION_LOG": str(work_dir / "termination-log"),
            "KSTUDIO_SHUTDOWN_GRACE_SECONDS": "10",
            "KSTUDIO_DRAIN_SECONDS": "0",  # tests that stop scorers do not wait; test_drain.py sets it
        }
    )
    env.update(env_overrides)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"scorer-{port}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(KSTUDIO), "serve", "--log-level", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    sp = ScorerProcess(proc, port, log_path, env)
    if wait:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=sp.url, timeout=2) as c:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"scorer exited with {proc.returncode}:\n{sp.log()[-3000:]}")
                try:
                    if c.get("/readyz").status_code == 200:
                        return sp
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        sp.stop()
        raise AssertionError(f"scorer not ready in 60 s:\n{sp.log()[-3000:]}")
    return sp
