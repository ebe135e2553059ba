"""Batch jobs (BES) on a real `kstudio serve` with real MinIO: CSV and Parquet, errors, and a 1M-row job
whose peak RSS is printed and compared with a 100k-row job in the same process (memory stays flat)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from kstudio_core.storage import ObjectStore

BUCKET = "batch-tests"


@pytest.fixture(scope="module")
def batch_scorer(
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    object_store.ensure_bucket(BUCKET)
    m = models["forest"]
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_AUTH_ENABLED": "false",
        "KSTUDIO_OUTPUT_INCLUDE_INPUTS": "true",
        "KSTUDIO_JOBS_CSV_BLOCK_BYTES": str(1024 * 1024),
        "KSTUDIO_JOBS_CHUNK_ROWS": "20000",
        **minio_server.settings.to_env(),
    }
    sp = start_scorer(env, tmp_path_factory.mktemp("batch"))
    yield sp
    sp.stop()


def run_job(sp: ScorerProcess, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    with httpx.Client(base_url=sp.url, timeout=30) as c:
        r = c.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "Queued" and r.headers["location"] == f"/jobs/{job['id']}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = c.get(f"/jobs/{job['id']}").json()
            if job["state"] in ("Succeeded", "Failed"):
                return job
            time.sleep(0.1)
    raise AssertionError(f"job did not finish: {job}")


def csv_bytes(df: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), out)
    return out.getvalue()


def test_csv_job_scores_every_row_with_inputs_projected(
    batch_scorer: ScorerProcess, models: dict[str, BuiltModel], object_store: ObjectStore
) -> None:
    m = models["forest"]
    df = m.frame.head(500)
    object_store.put_bytes(csv_bytes(df), f"s3://{BUCKET}/in/small.csv")
    job = run_job(
        batch_scorer, {"input": f"s3://{BUCKET}/in/small.csv", "output": f"s3://{BUCKET}/out/small.csv"}
    )
    assert job["state"] == "Succeeded", job
    assert job["rowsDone"] == 500 and job["error"] is None
    out = pd.read_csv(io.BytesIO(object_store.get_bytes(f"s3://{BUCKET}/out/small.csv")))
    assert list(out.columns) == [
        *df.columns,
        "Scored Labels",
        'Scored Probabilities for Class "0"',
        'Scored Probabilities for Class "1"',
    ]
    assert out["Scored Labels"].tolist() == m.pipeline.predict(df.to_numpy()).tolist()
    assert np.allclose(
        out['Scored Probabilities for Class "1"'], m.pipeline.predict_proba(df.to_numpy())[:, 1]
    )


def test_parquet_to_parquet_job(
    batch_scorer: ScorerProcess, models: dict[str, BuiltModel], object_store: ObjectStore
) -> None:
    m = models["forest"]
    df = m.frame
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, row_group_size=100)
    object_store.put_bytes(buf.getvalue(), f"s3://{BUCKET}/in/data.parquet")
    job = run_job(
        batch_scorer, {"input": f"s3://{BUCKET}/in/data.parquet", "output": f"s3://{BUCKET}/out/data.pq"}
    )
    assert job["state"] == "Succeeded", job
    out = pq.read_table(io.BytesIO(object_store.get_bytes(f"s3://{BUCKET}/out/data.pq"))).to_pandas()
    assert len(out) == len(df) == job["rowsDone"]
    assert out["Scored Labels"].tolist() == m.pipeline.predict(df.to_numpy()).tolist()


def test_failed_jobs_say_why(
    batch_scorer: ScorerProcess, models: dict[str, BuiltModel], object_store: ObjectStore
) -> None:
    job = run_job(
        batch_scorer, {"input": f"s3://{BUCKET}/in/absent.csv", "output": f"s3://{BUCKET}/out/x.csv"}
    )
    assert job["state"] == "Failed" and "absent.csv" in job["error"]
    df = models["forest"].frame.head(20).drop(columns=["f3"])
    object_store.put_bytes(csv_bytes(df), f"s3://{BUCKET}/in/no-f3.csv")
    job = run_job(
        batch_scorer, {"input": f"s3://{BUCKET}/in/no-f3.csv", "output": f"s3://{BUCKET}/out/x.csv"}
    )
    assert job["state"] == "Failed" and "f3" in job["error"], job
    object_store.put_bytes(b"f0,f1,f2,f3,f4,f5\n1,2,3,4,5,6\n1,2,x,4,5,6\n", f"s3://{BUCKET}/in/text.csv")
    job = run_job(batch_scorer, {"input": f"s3://{BUCKET}/in/text.csv", "output": f"s3://{BUCKET}/out/x.csv"})
    assert job["state"] == "Failed" and "f2" in job["error"] and "'x'" in job["error"], job
    assert not object_store.exists(f"s3://{BUCKET}/out/x.csv")


def _write_rows(path: Path, n: int, n_features: int) -> None:
    """A CSV of n random rows, written in slices so the test itself stays small."""
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(n_features)]
    with pacsv.CSVWriter(path, pa.schema([(c, pa.float64()) for c in names])) as w:
        for start in range(0, n, 200_000):
            k = min(200_000, n - start)
            block = np.round(rng.normal(size=(k, n_features)), 3)
            w.write_table(
                pa.Table.from_arrays([pa.array(block[:, j]) for j in range(n_features)], names=names)
            )


def test_million_row_job_keeps_memory_flat(
    batch_scorer: ScorerProcess, object_store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {"100k": 100_000, "1M": 1_000_000}
    peaks: dict[str, float] = {}
    for label, n in sizes.items():
        path = tmp_path / f"{label}.csv"
        _write_rows(path, n, 6)
        object_store.upload(path, f"s3://{BUCKET}/in/{label}.csv")
        started = time.monotonic()
        job = run_job(
            batch_scorer,
            {"input": f"s3://{BUCKET}/in/{label}.csv", "output": f"s3://{BUCKET}/out/{label}.csv"},
            timeout=240,
        )
        seconds = time.monotonic() - started
        assert job["state"] == "Succeeded", job
        assert job["rowsDone"] == n
        peaks[label] = batch_scorer.peak_rss_mib()
        size_mib = path.stat().st_size / 2**20
        with capsys.disabled():  # reported on the terminal even when output is captured
            print(
                f"\nbatch job {label}: {n} rows, input {size_mib:.0f} MiB CSV, {seconds:.1f} s, "
                f"{n / seconds:,.0f} rows/s, scorer peak RSS {peaks[label]:.0f} MiB"
            )
        path.unlink()
    out = object_store.stat(f"s3://{BUCKET}/out/1M.csv")
    assert out.size_bytes > 0
    growth = peaks["1M"] - peaks["100k"]
    with capsys.disabled():
        print(f"\nscorer peak RSS growth from the 100k-row to the 1M-row job: {growth:.0f} MiB")
    assert growth < 64, f"memory grew by {growth:.0f} MiB with 10x the rows: the job is not streaming"
