"""`make bench`: our scorer vs MLServer 1.7.1 (mlserver-sklearn, parallel_workers=0) on the same models
and payloads, one server at a time pinned to the same core, wrk on the other core; then batch scoring
rows/s vs raw predict. Prints req/s, p50, p99 and ours/MLServer ratios per cell.

Models: LogisticRegression and RandomForestClassifier(100) fitted once here; MLServer loads the joblib
dump, we load an .ilearner written from the very same estimator object (joblib.hash printed for both).
Payload: OIP V2 JSON, one FP64 tensor [N, 10], output "predict" requested, identical bytes for both.
Environment: BENCH_SECONDS (default 5) per cell.
"""

from __future__ import annotations

import os
import sys

# Same BLAS conditions for every process of the run: one thread, OpenBLAS' own kernel selection
# (the machine sets OPENBLAS_CORETYPE for old OpenBLAS builds; it slows current numpy).
if os.environ.get("KSTUDIO_BENCH_CHILD") != "1":
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    env.update({"KSTUDIO_BENCH_CHILD": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen
import servers

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_scorer.artifact import load_ilearner
from kstudio_trainer.artifact_writer import write_ilearner

N_FEATURES = 10
ROWS = (1, 100, 10_000)
CONCURRENCY = (1, 8, 32)
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
BATCH_ROWS = int(os.environ.get("BENCH_BATCH_ROWS", "1000000"))
MLSERVER_BATCH = {"max_batch_size": 32, "max_batch_time": 0.01}


def build_models(work: Path) -> dict[str, dict[str, Any]]:
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=6, random_state=0)
    out: dict[str, dict[str, Any]] = {}
    for name, est in (
        ("lr", LogisticRegression(max_iter=1000)),
        ("rf100", RandomForestClassifier(n_estimators=100, random_state=0)),
    ):
        est.fit(x, y)
        joblib_path = work / f"{name}.joblib"
        joblib.dump(est, joblib_path)
        manifest = IlearnerManifest(
            task="classification",
            label="y",
            classes=[0, 1],
            inputSchema=[ColumnSpec(name=f"f{i}", type="number") for i in range(N_FEATURES)],
        )
        digest = write_ilearner(work / f"{name}.ilearner", est, manifest)
        ours = load_ilearner(work / f"{name}.ilearner", digest.sha256).pipeline
        theirs = joblib.load(joblib_path)
        probe = np.random.default_rng(1).normal(size=(2000, N_FEATURES))
        same = np.array_equal(ours.predict_proba(probe), theirs.predict_proba(probe))
        print(
            f"model {name}: joblib.hash ours={joblib.hash(ours)[:12]} mlserver={joblib.hash(theirs)[:12]}; "
            f"bit-identical predict_proba on 2000 probe rows: {same}"
        )
        if not same:
            raise SystemExit("the two servers would not serve the same model")
        out[name] = {
            "est": est,
            "joblib": joblib_path,
            "ilearner": work / f"{name}.ilearner",
            "sha": digest.sha256,
        }
    return out


def payloads(work: Path) -> dict[int, Path]:
    rng = np.random.default_rng(42)
    files = {}
    for n in ROWS:
        x = rng.normal(size=(n, N_FEATURES)).round(6)
        body = {
            "inputs": [
                {"name": "input-0", "shape": [n, N_FEATURES], "datatype": "FP64", "data": x.ravel().tolist()}
            ],
            "outputs": [{"name": "predict"}],
        }
        path = work / f"payload-{n}.json"
        path.write_text(json.dumps(body))
        files[n] = path
    return files


def post(url: str, body: bytes) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def run_cells(
    server: servers.Server,
    model: str,
    bodies: dict[int, Path],
    wrk: str,
    work: Path,
    rows: tuple[int, ...] = ROWS,
) -> dict[tuple[int, int], loadgen.Result]:
    url = f"{server.base}/v2/models/{model}/infer"
    labels = {n: post(url, bodies[n].read_bytes())["outputs"][0]["data"] for n in rows}
    loadgen.run(wrk, url, bodies[1], 8, 1, work)  # warm-up
    results = {}
    for n in rows:
        for c in CONCURRENCY:
            r = loadgen.run(wrk, url, bodies[n], c, SECONDS, work)
            results[(n, c)] = r
            print(
                f"  {server.name:24s} rows={n:<6d} c={c:<3d} {r.rps:9.1f} req/s  p50 {r.p50_ms:8.2f} ms  "
                f"p99 {r.p99_ms:8.2f} ms  errors {r.errors}",
                flush=True,
            )
    server.labels = labels  # type: ignore[attr-defined]
    return results


def batch_vs_raw(models: dict[str, dict[str, Any]], work: Path) -> list[str]:
    """1M rows through POST /jobs (MinIO in, MinIO out) vs raw predict_proba in memory, same core."""
    sys.path.insert(0, str(servers.REPO / "tests"))
    from fixtures.minio_server import start_minio, stop_minio
    from kstudio_core.storage import ObjectStore

    bin_dir = (
        subprocess.run(
            ["bash", str(servers.REPO / "hack" / "build-binaries.sh")],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    proc, minio = start_minio(Path(bin_dir) / "minio", work / "minio")
    lines = []
    try:
        store = ObjectStore(minio.settings)
        store.ensure_bucket("bench")
        rng = np.random.default_rng(9)
        x = rng.normal(size=(BATCH_ROWS, N_FEATURES)).round(4)
        csv_path = work / "batch.csv"
        header = ",".join(f"f{i}" for i in range(N_FEATURES))
        np.savetxt(csv_path, x, delimiter=",", fmt="%.4f", header=header, comments="")
        store.upload(csv_path, "s3://bench/in/batch.csv")
        os.sched_setaffinity(0, {int(servers.SERVER_CPU)})
        for name, m in models.items():
            est = m["est"]
            est.predict_proba(x[:1000])
            t0 = time.perf_counter()
            est.predict_proba(x)
            raw = BATCH_ROWS / (time.perf_counter() - t0)
            server = servers.start_ours(m["ilearner"], m["sha"], name, work, minio.settings.to_env())
            try:
                t0 = time.perf_counter()
                job = post(
                    f"{server.base}/jobs",
                    json.dumps(
                        {"input": "s3://bench/in/batch.csv", "output": f"s3://bench/out/{name}.csv"}
                    ).encode(),
                )
                while job["state"] not in ("Succeeded", "Failed"):
                    time.sleep(0.05)
                    with urllib.request.urlopen(f"{server.base}/jobs/{job['id']}") as r:
                        job = json.loads(r.read())
                seconds = time.perf_counter() - t0
            finally:
                server.stop()
            if job["state"] != "Succeeded":
                raise SystemExit(f"batch job failed: {job}")
            rate = BATCH_ROWS / seconds
            lines.append(
                f"  {name:6s} batch job {BATCH_ROWS} rows (CSV {csv_path.stat().st_size / 2**20:.0f} MiB, "
                f"MinIO->MinIO): {rate:12,.0f} rows/s | raw sklearn predict_proba in memory: "
                f"{raw:12,.0f} rows/s | batch/raw = {rate / raw:6.1%}"
            )
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        stop_minio(proc)
    return lines


def start(label: str, m: dict[str, Any], name: str, work: Path) -> servers.Server:
    if label == "ours":
        return servers.start_ours(m["ilearner"], m["sha"], name, work)
    if label == "mlserver":
        return servers.start_mlserver(m["joblib"], name, work)
    return servers.start_mlserver(m["joblib"], name, work, **MLSERVER_BATCH)  # type: ignore[arg-type]


def fmt(r: loadgen.Result | None) -> str:
    if r is None:
        return f"{'-':>9s} {'-':>8s} {'-':>8s}"
    flag = "!" if r.errors else " "
    return f"{r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}{flag}"


def main() -> int:
    wrk = loadgen.ensure_wrk()
    servers.ensure_mlserver_venv(sklearn.__version__)
    work = Path(tempfile.mkdtemp(prefix="kstudio-bench-"))
    print(
        f"bench: {os.cpu_count()} cores; servers pinned to core {servers.SERVER_CPU}, wrk -t1 on core "
        f"{loadgen.LOADGEN_CPU}; {SECONDS}s per cell; "
        f"MLServer {servers.MLSERVER_VERSION} parallel_workers=0; sklearn {sklearn.__version__}; "
        "load generator: wrk"
    )
    models = build_models(work)
    bodies = payloads(work)
    table: dict[str, dict[str, dict[tuple[int, int], loadgen.Result]]] = {}
    for name, m in models.items():
        table[name] = {}
        variants = ["ours", "mlserver"] + (["mlserver+batch"] if name == "rf100" else [])
        for label in variants:
            server = start(label, m, name, work)
            try:
                rows = ROWS if label != "mlserver+batch" else (1, 100)
                table[name][label] = run_cells(server, name, bodies, wrk, work, rows)
                table[name][label + ":labels"] = server.labels  # type: ignore[attr-defined]
            finally:
                server.stop()
        agree = all(table[name]["ours:labels"][n] == table[name]["mlserver:labels"][n] for n in ROWS)
        print(f"model {name}: ours and MLServer return identical labels on every payload: {agree}")

    print("\nreq/s, p50 ms, p99 ms per cell ('!' = the cell had errors); ratio = ours / MLServer")
    head = (
        f"{'model':6s} {'rows':>6s} {'c':>3s} | {'ours req/s':>10s} {'p50':>7s} {'p99':>7s} | "
        f"{'MLS req/s':>9s} {'p50':>8s} {'p99':>8s} | {'x req/s':>7s} {'x p99':>6s} | "
        f"{'MLS+batch':>9s} {'p50':>8s} {'p99':>8s} | {'x req/s':>7s}"
    )
    print(head)
    print("-" * len(head))
    for name in models:
        for n in ROWS:
            for c in CONCURRENCY:
                ours, mls = table[name]["ours"][(n, c)], table[name]["mlserver"][(n, c)]
                mb = table[name].get("mlserver+batch", {}).get((n, c))
                print(
                    f"{name:6s} {n:6d} {c:3d} | {fmt(ours)} | {fmt(mls)} | {ours.rps / mls.rps:7.2f} "
                    f"{ours.p99_ms / mls.p99_ms:6.2f} | {fmt(mb)} | "
                    f"{(ours.rps / mb.rps) if mb else float('nan'):7.2f}"
                )
    lr, rf = table["lr"], table["rf100"]
    o, m = lr["ours"][(1, 8)], lr["mlserver"][(1, 8)]
    print("\ntargets:")
    print(
        f"  LR 1 row c=8: {o.rps / m.rps:.2f}x MLServer req/s (target >= 3x), p99 {o.p99_ms:.2f} ms vs "
        f"{m.p99_ms:.2f} ms = {o.p99_ms / m.p99_ms:.2f} (target <= 0.33)"
    )
    o, mb = rf["ours"][(1, 32)], rf["mlserver+batch"][(1, 32)]
    print(
        f"  RF100 1 row c=32: {o.rps / mb.rps:.2f}x MLServer-with-batching req/s (target >= 3x), "
        f"p99 {o.p99_ms:.2f} ms (target <= 50 ms)"
    )
    print("\nbatch scoring vs raw predict (target >= 70%):")
    for line in batch_vs_raw(models, work):
        print(line, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
