"""`make bench`: our scorer vs MLServer 1.7.1 (mlserver-sklearn, parallel_workers=0) and KServe 0.21's
Python model server (a scikit-learn model class like its sklearnserver) on the same models and payloads,
plus the floor (our HTTP stack answering a precomputed body, no model); one server at a time pinned to
the same core, wrk on the other core. Then batch jobs vs the I/O-inclusive limit (CSV and Parquet).
Prints req/s, p50, p99 and the ratios per cell, and the targets.

Models: LogisticRegression and RandomForestClassifier(100) fitted once here; the peers load the joblib
dump, we load an .ilearner written from the very same estimator object (joblib.hash printed for both).
Payload: OIP V2 JSON, one FP64 tensor [N, 10], output "predict" requested, identical bytes for us and
MLServer; KServe gets the same bytes without the `outputs` request (its sklearnserver names its output
"output-0" and refuses a request for "predict").
Environment: BENCH_SECONDS (default 5) per cell, BENCH_BATCH_ROWS (default 1,000,000).
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
import tempfile
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
import batch
import loadgen
import servers

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_scorer.model.artifact import load_ilearner
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


def payloads(work: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """(the payloads, the same without the `outputs` request, for KServe)."""
    rng = np.random.default_rng(42)
    files, plain = {}, {}
    for n in ROWS:
        x = rng.normal(size=(n, N_FEATURES)).round(6)
        inputs = [
            {"name": "input-0", "shape": [n, N_FEATURES], "datatype": "FP64", "data": x.ravel().tolist()}
        ]
        files[n] = work / f"payload-{n}.json"
        files[n].write_text(json.dumps({"inputs": inputs, "outputs": [{"name": "predict"}]}))
        plain[n] = work / f"payload-{n}-plain.json"
        plain[n].write_text(json.dumps({"inputs": inputs}))
    return files, plain


def post(url: str, body: bytes) -> bytes:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()  # type: ignore[no-any-return]


def run_cells(
    server: servers.Server,
    model: str,
    bodies: dict[int, Path],
    wrk: str,
    work: Path,
    rows: tuple[int, ...] = ROWS,
) -> dict[tuple[int, int], loadgen.Result]:
    url = f"{server.base}/v2/models/{model}/infer"
    answers = {n: post(url, bodies[n].read_bytes()) for n in rows}
    server.answers = answers  # type: ignore[attr-defined]
    labels = {n: json.loads(a)["outputs"][0]["data"] for n, a in answers.items()}
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


def start(label: str, m: dict[str, Any], name: str, work: Path, floor: dict[int, bytes]) -> servers.Server:
    if label == "ours":
        return servers.start_ours(m["ilearner"], m["sha"], name, work)
    if label == "mlserver":
        return servers.start_mlserver(m["joblib"], name, work)
    if label == "kserve":
        return servers.start_kserve(m["joblib"], name, work)
    if label == "floor":
        return servers.start_floor(floor, work)
    return servers.start_mlserver(m["joblib"], name, work, **MLSERVER_BATCH)  # type: ignore[arg-type]


def fmt(r: loadgen.Result | None) -> str:
    if r is None:
        return f"{'-':>9s} {'-':>8s} {'-':>8s}"
    flag = "!" if r.errors else " "
    return f"{r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}{flag}"


def ratio(a: loadgen.Result | None, b: loadgen.Result | None) -> str:
    """ours/peer req/s and p99 as 'x.xx x.xx', or dashes."""
    if a is None or b is None:
        return f"{'-':>6s} {'-':>5s}"
    return f"{a.rps / b.rps:6.2f} {a.p99_ms / b.p99_ms:5.2f}"


def print_table(models: list[str], table: dict[str, dict[str, Any]], peers: list[str]) -> None:
    print("\nreq/s, p50 ms, p99 ms per cell ('!' = the cell had errors); x = ours / peer (req/s, p99)")
    head = f"{'model':6s} {'rows':>6s} {'c':>3s} | {'ours req/s':>10s} {'p50':>7s} {'p99':>7s}"
    for peer in peers:
        head += f" | {peer + ' req/s':>14s} {'p50':>8s} {'p99':>8s} | {'x req/s':>6s} {'x p99':>5s}"
    print(head)
    print("-" * len(head))
    for name in models:
        for n in ROWS:
            for c in CONCURRENCY:
                ours = table[name]["ours"][(n, c)]
                line = f"{name:6s} {n:6d} {c:3d} | {fmt(ours)}"
                for peer in peers:
                    other = table[name].get(peer, {}).get((n, c))
                    line += f" | {'':5s}{fmt(other)} | {ratio(ours, other)}"
                print(line)


def print_targets(table: dict[str, dict[str, Any]], peers: list[str]) -> None:
    lr, rf = table["lr"], table["rf100"]
    print(
        "\ntargets (>= 3x every peer's req/s with p99 <= 1/3 of theirs; "
        ">= 75% of the floor for LR 1 row c=8):"
    )
    for peer in [p for p in peers if p != "floor"]:
        for name, cell in (("lr", (1, 8)), ("rf100", (1, 32))):
            o, t = table[name]["ours"][cell], table[name].get(peer, {}).get(cell)
            if t is None:
                continue
            print(
                f"  {name} {cell[0]} row c={cell[1]} vs {peer}: {o.rps / t.rps:.2f}x req/s, "
                f"p99 {o.p99_ms:.2f} ms vs {t.p99_ms:.2f} ms = {o.p99_ms / t.p99_ms:.2f}"
            )
    o, f = lr["ours"][(1, 8)], lr.get("floor", {}).get((1, 8))
    if f is not None:
        print(
            f"  lr 1 row c=8 vs floor: {o.rps / f.rps:.1%} of the floor's req/s ({o.rps:.0f} vs {f.rps:.0f})"
        )
    del rf


def main() -> int:
    wrk = loadgen.ensure_wrk()
    servers.ensure_mlserver_venv(sklearn.__version__)
    kserve_missing = servers.ensure_kserve_venv(sklearn.__version__)
    if kserve_missing:
        print(f"KServe left out of this run: {kserve_missing}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="kstudio-bench-"))
    print(
        f"bench: {os.cpu_count()} cores; servers pinned to core {servers.SERVER_CPU}, wrk -t1 on core "
        f"{loadgen.LOADGEN_CPU}; {SECONDS}s per cell; MLServer {servers.MLSERVER_VERSION} "
        f"parallel_workers=0; KServe {servers.KSERVE_VERSION if not kserve_missing else '(absent)'}; "
        f"sklearn {sklearn.__version__}; load generator: wrk"
    )
    models = build_models(work)
    bodies, plain = payloads(work)
    peers = ["mlserver", *([] if kserve_missing else ["kserve"]), "mlserver+batch", "floor"]
    table: dict[str, dict[str, Any]] = {}
    for name, m in models.items():
        table[name] = {}
        floor: dict[int, bytes] = {}
        variants = ["ours", "mlserver", *([] if kserve_missing else ["kserve"])]
        variants += ["mlserver+batch"] if name == "rf100" else ["floor"]
        for label in variants:
            server = start(label, m, name, work, floor)
            try:
                rows = (1, 100) if label == "mlserver+batch" else ROWS
                payload = plain if label == "kserve" else bodies
                table[name][label] = run_cells(server, name, payload, wrk, work, rows)
                table[name][label + ":labels"] = server.labels  # type: ignore[attr-defined]
                if label == "ours":  # the floor answers exactly what we answered
                    floor = {bodies[n].stat().st_size: a for n, a in server.answers.items()}  # type: ignore[attr-defined]
            finally:
                server.stop()
        for peer in ("mlserver", "kserve"):
            if peer + ":labels" in table[name]:
                agree = all(table[name]["ours:labels"][n] == table[name][peer + ":labels"][n] for n in ROWS)
                print(f"model {name}: ours and {peer} return identical labels on every payload: {agree}")
    print_table(list(models), table, peers)
    print_targets(table, peers)
    print(f"\nbatch jobs vs the I/O-inclusive limit, {BATCH_ROWS:,} rows (target >= 70%):")
    figures = batch.batch_vs_limit(models, work, BATCH_ROWS)
    print("\nbatch summary:")
    for f in figures:
        print(
            f"  {f.model:6s} {f.fmt:8s} {f.input_mib:5.0f} MiB: job {f.job_rows_s:12,.0f} rows/s = "
            f"{f.ratio:6.1%} of the I/O limit ({f.limit_rows_s:,.0f} rows/s); "
            f"raw predict_proba {f.raw_rows_s:,.0f} rows/s"
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
