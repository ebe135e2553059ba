"""Batch scoring against the right limit.

The I/O-inclusive limit: the same bytes as the batch job's input, read from local disk with the fastest
reader we have (pyarrow's CSV / Parquet readers), predicted (predict_proba, labels from its argmax), and the
same scored columns written back with pyarrow's writers (Parquet with the scorer's writer settings);
one process pinned to one core, no HTTP, no object store. The batch job: `POST /jobs` on a
`kstudio serve` pinned to the same core, MinIO in and MinIO out, timed from submission to `Succeeded`.
Raw in-memory predict_proba is printed for reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import servers

from kstudio_scorer.bes.file_scoring import parquet_write_options

N_FEATURES = 10


@dataclass
class BatchFigures:
    model: str
    fmt: str
    rows: int
    input_mib: float
    job_rows_s: float
    limit_rows_s: float
    raw_rows_s: float

    @property
    def ratio(self) -> float:
        return self.job_rows_s / self.limit_rows_s


def _scored(est: Any, table: pa.Table) -> pa.Table:
    x = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])
    proba = est.predict_proba(x)
    labels = est.classes_[np.argmax(proba, axis=1)]
    names = ["Scored Labels", *[f'Scored Probabilities for Class "{c}"' for c in est.classes_]]
    return pa.Table.from_arrays(
        [pa.array(labels), *[pa.array(proba[:, k]) for k in range(proba.shape[1])]], names
    )


def io_limit(est: Any, source: Path, fmt: str, work: Path) -> float:
    """Rows/s of read + predict + write of `source` on this (pinned) process; best of two runs."""
    best = 0.0
    for attempt in range(2):
        target = work / f"limit-{attempt}.{fmt}"
        t0 = time.perf_counter()
        table = pacsv.read_csv(source) if fmt == "csv" else pq.read_table(source)
        out = _scored(est, table)
        if fmt == "csv":
            pacsv.write_csv(out, target)
        else:
            pq.write_table(out, target, **parquet_write_options(out.schema))  # the scorer's settings
        best = max(best, table.num_rows / (time.perf_counter() - t0))
        target.unlink()
    return best


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def run_job(base: str, source: str, target: str) -> float:
    """Seconds from submission to Succeeded (SystemExit if the job fails)."""
    t0 = time.perf_counter()
    job = _post(f"{base}/jobs", {"input": source, "output": target})
    while job["state"] not in ("Succeeded", "Failed"):
        time.sleep(0.05)
        with urllib.request.urlopen(f"{base}/jobs/{job['id']}") as r:
            job = json.loads(r.read())
    if job["state"] != "Succeeded":
        raise SystemExit(f"batch job failed: {job}")
    return time.perf_counter() - t0


def batch_vs_limit(models: dict[str, dict[str, Any]], work: Path, rows: int) -> list[BatchFigures]:
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
    figures: list[BatchFigures] = []
    try:
        store = ObjectStore(minio.settings)
        store.ensure_bucket("bench")
        x = np.random.default_rng(9).normal(size=(rows, N_FEATURES)).round(4)
        names = [f"f{i}" for i in range(N_FEATURES)]
        files = {"csv": work / "batch.csv", "parquet": work / "batch.parquet"}
        np.savetxt(files["csv"], x, delimiter=",", fmt="%.4f", header=",".join(names), comments="")
        pq.write_table(
            pa.Table.from_arrays([pa.array(x[:, j]) for j in range(N_FEATURES)], names), files["parquet"]
        )
        for fmt, path in files.items():
            store.upload(path, f"s3://bench/in/batch.{fmt}")
        os.sched_setaffinity(0, {int(servers.SERVER_CPU)})
        for name, m in models.items():
            est = m["est"]
            est.predict_proba(x[:1000])
            t0 = time.perf_counter()
            est.predict_proba(x)
            raw = rows / (time.perf_counter() - t0)
            server = servers.start_ours(m["ilearner"], m["sha"], name, work, minio.settings.to_env())
            try:
                for fmt, path in files.items():
                    limit = io_limit(est, path, fmt, work)
                    seconds = run_job(
                        server.base, f"s3://bench/in/batch.{fmt}", f"s3://bench/out/{name}.{fmt}"
                    )
                    figures.append(
                        BatchFigures(name, fmt, rows, path.stat().st_size / 2**20, rows / seconds, limit, raw)
                    )
                    f = figures[-1]
                    print(
                        f"  {name:6s} {fmt:8s} job {f.job_rows_s:12,.0f} rows/s | I/O limit "
                        f"{f.limit_rows_s:12,.0f} rows/s | job/limit {f.ratio:6.1%} | raw predict_proba "
                        f"{raw:12,.0f} rows/s",
                        flush=True,
                    )
            finally:
                server.stop()
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        stop_minio(proc)
    return figures
