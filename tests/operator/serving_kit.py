"""Shared by the serving tests and bench/patch.py: a small real model pair and an in-cluster load client."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import operator_support
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_localcluster import netns
from kstudio_trainer.artifact_writer import write_ilearner

V2_BODY = {
    "inputs": [
        {"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.3]},
        {"name": "x2", "shape": [1], "datatype": "FP64", "data": [-0.1]},
    ]
}

# A client inside the cluster's network namespace: OIP V2 infer against a ClusterIP at a fixed rate until
# stdin closes; prints one JSON line: counts, failures and, per second, the model versions that answered.
LOADGEN = r"""
import http.client, json, sys, threading, time
host, key, rate, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
body = json.dumps({"inputs": [{"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.3]},
                              {"name": "x2", "shape": [1], "datatype": "FP64", "data": [-0.1]}]})
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
ok, failed, errors, answers = 0, 0, [], []
t0 = time.monotonic()
conn = None
print("started", t0, flush=True)
while not stop.is_set():
    started = time.monotonic()
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, 80, timeout=10)
        conn.request("POST", f"/v2/models/{name}/infer", body=body,
                     headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            conn.close(); conn = None
        if resp.status == 200:
            ok += 1
            answers.append((round(started - t0, 3), json.loads(data)["model_version"]))
        else:
            failed += 1; errors.append(f"{resp.status} {data[:200]!r}")
    except Exception as exc:
        failed += 1; errors.append(repr(exc)); conn = None
    time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:20], "seconds": time.monotonic() - t0,
                  "answers": answers}))
"""


def build_model_with_schema(path: Path, schema: dict[str, str]) -> str:
    """A small real .ilearner over `schema` (column -> "number" or "string"): scaled numbers, one-hot text."""
    rng = np.random.default_rng(1)
    numbers = [c for c, kind in schema.items() if kind == "number"]
    texts = [c for c, kind in schema.items() if kind == "string"]
    frame = pd.DataFrame(
        {c: rng.normal(size=80) for c in numbers} | {c: rng.choice(["a", "b"], 80) for c in texts}
    )
    y = (frame[numbers[0]] > 0).astype(int)
    pipeline = make_pipeline(
        make_column_transformer(
            (StandardScaler(), numbers), (OneHotEncoder(handle_unknown="ignore"), texts), remainder="drop"
        ),
        LogisticRegression(),
    ).fit(frame, y)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name=c, type=kind) for c, kind in schema.items()],  # type: ignore[arg-type]
        classes=[0, 1],
        metrics={"accuracy": 0.9},
    )
    return write_ilearner(path, pipeline, manifest).sha256


def build_model(path: Path, flip: bool, second: str = "x2") -> str:
    """A small real .ilearner over x1 and `second` (x2); `flip` trains the opposite decision, so answers
    differ; another `second` makes another input schema."""
    x = np.random.default_rng(0).normal(size=(80, 2))
    y = ((x[:, 0] + x[:, 1] > 0) ^ flip).astype(int)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name="x1", type="number"), ColumnSpec(name=second, type="number")],
        classes=[0, 1],
        metrics={"accuracy": 0.9 if flip else 0.95},
    )
    return write_ilearner(
        path, make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), manifest
    ).sha256


def import_model(
    kube: Any, example_data: Any, namespace: str, folder: Path, name: str, flip: bool, second: str = "x2"
) -> str:
    """`build_model` into `folder`, uploaded and declared as TrainedModel `name`: its sha256."""
    path = folder / f"{name}.ilearner"
    sha = build_model(path, flip, second)
    operator_support.import_model(kube, example_data, namespace, path, sha, name)
    return sha


@contextmanager
def load(netns_name: str, ip: str, key: str, rate: float, endpoint: str) -> Iterator[tuple[Any, float]]:
    """LOADGEN at `rate` req/s against `endpoint` inside the cluster's network namespace: (the process, the
    CLOCK_MONOTONIC time it started at, for the times of its answers). Close its stdin to stop it; killed on
    exit if it still runs."""
    gen = subprocess.Popen(
        ["ip", "netns", "exec", netns_name, sys.executable, "-c", LOADGEN, ip, key, str(rate), endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gen.stdout is not None
        word, t0 = gen.stdout.readline().split()
        assert word == "started"
        yield gen, float(t0)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()


def doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> str:
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}
    )


def secret_key(kube: Any, endpoint: str, which: str = "primaryKey") -> str:
    secret = kube.get("secret", f"{endpoint}-keys")
    assert secret is not None
    return base64.b64decode(secret["data"][which]).decode()


def endpoint_ready(kube: Any, name: str, model: str) -> dict[str, Any] | None:
    status = kube.status("endpoint", name)
    return status if status.get("phase") == "Ready" and status.get("model") == model else None


def cluster_ip(kube: Any, service: str) -> str:
    svc = kube.get("service", service)
    assert svc is not None
    return str(svc["spec"]["clusterIP"])


def infer(
    local_cluster: Any, ip: str, key: str | None, endpoint: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """OIP V2 infer of one row on a ClusterIP, from inside the cluster's network namespace."""
    path = f"/v2/models/{endpoint}/infer"
    sent = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    try:
        return netns.http_request(
            local_cluster.info.layout.netns,
            "POST",
            f"http://{ip}{path}",
            json.dumps(V2_BODY).encode(),
            sent | (headers or {}),
        )
    except OSError as exc:  # kube-proxy may not route a new Service yet: "refused" until it does
        return 0, repr(exc)
