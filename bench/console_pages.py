"""Console page time with N TrainedModels in the namespace (issue 18: target p50 <= 200 ms at N = 1,000).

    .venv/bin/python bench/console_pages.py [--models 1000] [--requests 200]

On the local cluster (`make cluster-up`): a fresh namespace with N TrainedModels of one small real artifact
and 10 Endpoints pinned to some of them (replicas 0), made Ready by `kstudio operator`, plus the penguins
Experiment trained once (a run with its evaluation report); then the operator stops and `kstudio console
-n <namespace>` runs on this machine. Each page is fetched once cold (reports read and verified, charts
drawn) and then `--requests` times in a row over one keep-alive connection; printed: p50, p99 and max in
ms, the page's size, the console's RSS, and the API server's LIST/WATCH requests counted while the pages
were fetched (the console reads its watch-fed cache: none are expected). Printed, not asserted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from operator_scale import build_ilearner, create_objects
from scale_kit import KSTUDIO, Cluster, Operator

LOGS = Path("/tmp/kstudio-bench-console")
NAMESPACE = "kstudio-bench-console"


def _manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kstudio.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def wait(what: str, check: Any, timeout: float = 900) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(2)
    return time.monotonic() - started


def ready_models(cluster: Cluster, n: int) -> bool:
    items = cluster.items(NAMESPACE, "trainedmodels")
    return sum(1 for m in items if (m.get("status") or {}).get("phase") == "Ready") >= n


def populate(cluster: Cluster, n: int) -> float:
    """N models + 10 Endpoints + one penguins run, all Ready (the operator running); seconds it took."""
    from kstudio_devtools.examples import upload_examples

    store = cluster.store()
    upload_examples(store)
    artifact_path = LOGS / "bench.ilearner"
    sha256 = build_ilearner(artifact_path)
    store.put_bytes(artifact_path.read_bytes(), "s3://models/bench/console.ilearner")
    artifact = {"uri": "s3://models/bench/console.ilearner", "sha256": sha256}
    penguins = _manifest(
        "Experiment",
        "penguins",
        {
            "dataset": {"uri": "s3://datasets/penguins.csv", "format": "csv"},
            "label": "species",
            "task": "classification",
            "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 20}},
            "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy", "f1_macro"]},
            "resources": {"cpu": "500m", "memory": "1Gi"},
        },
    )
    docs = [_manifest("TrainedModel", f"m-{i}", {"artifact": artifact}) for i in range(n)]
    docs += [
        _manifest("Endpoint", f"ep-{i}", {"webService": "svc", "model": f"m-{i * 97 % n}", "replicas": 0})
        for i in range(10)
    ]
    started = time.monotonic()
    create_objects(cluster, NAMESPACE, [penguins, *docs])
    wait(f"{n + 1} TrainedModels Ready", lambda: ready_models(cluster, n + 1))
    return time.monotonic() - started


def cleanup(cluster: Cluster, operator: Operator) -> None:
    """Delete the objects with the operator running (it releases their finalizers), then the namespace."""
    if not operator.running():
        operator.start()
    kinds = "experiments.kstudio.io,trainedmodels.kstudio.io,endpoints.kstudio.io"
    cluster.kubectl("-n", NAMESPACE, "delete", kinds, "--all", "--timeout=300s", check=False)
    operator.stop()
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


class Console:
    """`kstudio console -n NAMESPACE` on this machine (KUBECONFIG and MinIO from the host)."""

    def __init__(self, cluster: Cluster) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {k: v for k, v in cluster.env.items() if not k.startswith("KSTUDIO_")} | cluster.storage_env()
        log = (LOGS / "console.log").open("ab")
        self.proc = subprocess.Popen(
            [str(KSTUDIO), "console", "-n", NAMESPACE, "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path: str) -> tuple[int, bytes, float]:
        started = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started

    def wait_ready(self) -> float:
        def ready() -> bool:
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                self.connection.close()
                return False

        return wait("the console ready", ready, 120)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.connection.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pages(n: int) -> list[tuple[str, str, str]]:
    """(name, path, a text the page must hold: what makes it the page it claims to be)."""
    ns = f"/ns/{NAMESPACE}"
    return [
        ("overview", f"{ns}/", "Recent events"),
        (f"trained models list ({n + 1} rows)", f"{ns}/models", f"{n + 1} trained models."),
        ("model with its report", f"{ns}/models/penguins-1", "(verified)"),
        ("model without report", f"{ns}/models/m-{n // 2}", "has no evaluation report"),
        ("experiment (run chart)", f"{ns}/experiments/penguins", 'class="chart"'),
        ("endpoint", f"{ns}/endpoints/ep-5", "Rollout history"),
        ("events", f"{ns}/events", "Verified"),
        ("revision (polled every 2 s)", f"{ns}/revision", "revision"),
    ]


def measure(console: Console, path: str, expect: str, requests: int) -> dict[str, float]:
    status, body, cold = console.get(path)
    if status != 200 or expect.encode() not in body:
        raise SystemExit(f"GET {path}: HTTP {status} without {expect!r}: {body[:300]!r}")
    times = [console.get(path)[2] for _ in range(requests)]
    times.sort()
    return {
        "cold_ms": cold * 1000,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))] * 1000,
        "max_ms": times[-1] * 1000,
        "kib": len(body) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    cluster = Cluster()
    cluster.fresh_namespace(NAMESPACE)
    operator = Operator(cluster, NAMESPACE, LOGS / "operator.log")
    operator.start()
    try:
        print(
            f"populating {NAMESPACE}: {args.models} TrainedModels, 10 Endpoints, one penguins run", flush=True
        )
        ready_s = populate(cluster, args.models)
        operator.stop()
        print(f"  all Ready after {ready_s:.0f} s; operator stopped", flush=True)
        console = Console(cluster)
        try:
            print(f"console ready {console.wait_ready():.1f} s after start (its watches listed everything)")
            before = cluster.requests()
            rows = [
                (name, measure(console, path, text, args.requests)) for name, path, text in pages(args.models)
            ]
            delta = cluster.requests() - before
            rss = console.rss_mb()
        finally:
            console.stop()
    finally:
        cleanup(cluster, operator)
    print(
        f"\n{args.models} TrainedModels; {args.requests} requests per page after one cold request, one client"
    )
    print(f"{'page':<34} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'KiB':>7}")
    for name, r in rows:
        figures = " ".join(f"{r[k]:>8.1f}" for k in ("cold_ms", "p50_ms", "p99_ms", "max_ms"))
        print(f"{name:<34} {figures} {r['kib']:>7.1f}")
    lists = sum(int(count) for (_, verb), count in delta.items() if verb == "LIST")
    watches = sum(int(count) for (_, verb), count in delta.items() if verb == "WATCH")
    print(
        f"\nconsole RSS {rss:.0f} MB; while the pages were fetched the API server answered {lists} LIST "
        f"requests and ended {watches} WATCH requests (from every client of the cluster)"
    )
    print(f"(machine load average {os.getloadavg()[0]:.1f}; logs in {LOGS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
