"""BatchJob at scale: N rows x 10 float columns (default 10M), CSV and Parquet, LR and RF100, sharded.

For each model and format, shards 1, 2 and 4 at parallelism 1 and 2 (shards=1 needs no second
parallelism), each run printed as it ends:

  rows/s        rows over the run's wall time: from the first shard's start to the last shard's end, each
                shard a fresh `kstudio score-shard` process (Python start, model download, sha256 check,
                load included), as in a pod;
  speed-up      rows/s over the same model and format's 1-shard run;
  shard/limit   the slowest shard's own rows/s (its result document: reading, scoring and writing, after
                the model is loaded) over the single-core I/O-inclusive limit of bench/batch.py (pyarrow
                read + predict_proba + write of a local file, one process pinned to one core; measured on
                the first 1M rows: the limit's rows/s does not depend on the size, its memory does);
  peak RSS      the largest shard's peak resident memory (ru_maxrss, from its result document);
  load          the 1-minute load average when the run ended (the machine is shared).

`--via processes` (default) runs the shards as processes next to a MinIO started for the run (the pods'
command and environment, without Kubernetes). `--via cluster` runs real BatchJobs on the local cluster
(`make cluster-up`; this process registers as a cluster user, so other checkouts' test sessions wait for
it): wall time from creating the BatchJob to Succeeded, pod scheduling and start and the operator's
publication included.

Targets (printed, not asserted): 2 shards in parallel >= 1.7x one shard; each shard >= 70% of the
single-core limit; peak RSS <= 300 MB whatever the input's size.

Usage: .venv/bin/python bench/batch_scale.py [--rows 10000000] [--via processes|cluster]
       [--models lr,rf100] [--formats csv,parquet] [--configs 1x1,2x1,4x1,2x2,4x2] [--fit-on matrix|frame]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from batch import io_limit
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from kstudio_core.batch import BatchPlan, ErrorThreshold, InputObject, OutputLayout, PlannedModel, ShardResult
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_core.storage import ObjectStore
from kstudio_trainer.artifact_writer import write_ilearner

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"
N_FEATURES = 10
LIMIT_ROWS = 1_000_000
BUCKET = "bench-batch"
WRITE_SLICE = 500_000


@dataclass
class Run:
    model: str
    fmt: str
    shards: int
    parallelism: int
    rows: int
    seconds: float
    shard_rows_s: list[float]
    peak_rss_mb: float
    load: float

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds


def build_models(work: Path, fit_on: str = "matrix") -> dict[str, dict[str, Any]]:
    """LogisticRegression and RandomForestClassifier(100) as `make bench` fits them (bench/run.py); with
    fit_on="frame", fitted on a pandas DataFrame with the column names, as the trainer's pipelines are
    (their shards then import pandas at warm-up: what a trainer-built model costs in memory)."""
    x, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=6, random_state=0)
    if fit_on == "frame":
        import pandas as pd

        x = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    out = {}
    for name, est in (
        ("lr", LogisticRegression(max_iter=1000)),
        ("rf100", RandomForestClassifier(n_estimators=100, random_state=0)),
    ):
        est.fit(x, y)
        manifest = IlearnerManifest(
            task="classification",
            label="y",
            classes=[0, 1],
            inputSchema=[ColumnSpec(name=f"f{i}", type="number") for i in range(N_FEATURES)],
        )
        digest = write_ilearner(work / f"{name}.ilearner", est, manifest)
        out[name] = {"est": est, "path": work / f"{name}.ilearner", "sha": digest.sha256}
    return out


def write_inputs(work: Path, rows: int, formats: list[str]) -> dict[str, Path]:
    """rows x 10 columns as CSV and Parquet, written in slices of 500k rows (one Parquet row group each)."""
    names = [f"f{i}" for i in range(N_FEATURES)]
    schema = pa.schema([(n, pa.float64()) for n in names])
    paths = {fmt: work / f"input-{rows}.{fmt}" for fmt in formats}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(9)
    writers: dict[str, Any] = {}
    if "csv" in paths:
        writers["csv"] = pacsv.CSVWriter(paths["csv"], schema)
    if "parquet" in paths:
        writers["parquet"] = pq.ParquetWriter(paths["parquet"], schema)
    for start in range(0, rows, WRITE_SLICE):
        n = min(WRITE_SLICE, rows - start)
        block = rng.normal(size=(n, N_FEATURES)).round(4)
        table = pa.Table.from_arrays([pa.array(block[:, j]) for j in range(N_FEATURES)], names=names)
        for writer in writers.values():
            writer.write_table(table)
    for writer in writers.values():
        writer.close()
    return paths


def limit_sample(source: Path, fmt: str, work: Path) -> Path:
    """The first LIMIT_ROWS rows of `source`, in the same format: what the I/O limit is measured on."""
    target = work / f"limit-sample.{fmt}"
    if not target.exists():
        if fmt == "csv":
            with source.open("rb") as src, target.open("wb") as out:
                for _ in range(LIMIT_ROWS + 1):
                    out.write(src.readline())
        else:
            first = next(pq.ParquetFile(source).iter_batches(batch_size=LIMIT_ROWS))
            pq.write_table(pa.Table.from_batches([first]), target)
    return target


def single_core_limits(
    models: dict[str, dict[str, Any]], inputs: dict[str, Path], work: Path
) -> dict[tuple[str, str], float]:
    limits = {}
    os.sched_setaffinity(0, {1})
    try:
        for fmt, path in inputs.items():
            sample = limit_sample(path, fmt, work)
            for name, model in models.items():
                with warnings.catch_warnings():  # a DataFrame-fitted model given the limit's matrix
                    warnings.filterwarnings("ignore", message="X does not have valid feature names")
                    limits[(name, fmt)] = io_limit(model["est"], sample, fmt, work)
                print(
                    f"  single-core I/O limit {name:6s} {fmt:8s} {limits[(name, fmt)]:12,.0f} rows/s",
                    flush=True,
                )
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return limits


def read_results(store: ObjectStore, prefix: str, shards: int) -> list[ShardResult]:
    layout = OutputLayout(prefix)
    return [ShardResult.model_validate_json(store.get_bytes(layout.result(i))) for i in range(shards)]


def clear(store: ObjectStore, prefix: str) -> None:
    bucket, _, key = prefix.removeprefix("s3://").partition("/")
    for name in store.list_keys(bucket, key):
        store.remove(f"s3://{bucket}/{name}")


# --- the shards as processes ---------------------------------------------------------------------------
class Processes:
    """`kstudio score-shard` processes with the pods' environment, against a MinIO of their own."""

    def __init__(self, work: Path) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from fixtures.minio_server import start_minio

        bin_dir = (
            subprocess.run(
                ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        shutil.rmtree(work / "minio", ignore_errors=True)
        self.proc, self.minio = start_minio(Path(bin_dir) / "minio", work / "minio")
        self.store = ObjectStore(self.minio.settings)
        self.store.ensure_bucket(BUCKET)
        self.work = work

    def close(self) -> None:
        from fixtures.minio_server import stop_minio

        stop_minio(self.proc)

    def upload(self, path: Path, uri: str) -> None:
        self.store.upload(path, uri)

    def run(
        self,
        name: str,
        model: dict[str, Any],
        model_uri: str,
        source: str,
        fmt: str,
        size: int,
        shards: int,
        parallelism: int,
    ) -> tuple[float, list[ShardResult]]:
        prefix = f"s3://{BUCKET}/out/{name}/"
        plan = BatchPlan(
            batch_job=f"bench/{name}",
            uid=name,
            inputs=[InputObject(uri=source, size_bytes=size)],
            input_format=fmt,  # type: ignore[arg-type]
            output_prefix=prefix,
            output_format=fmt,  # type: ignore[arg-type]
            shards=shards,
            error_threshold=ErrorThreshold(),
            model=PlannedModel(name=name, uri=model_uri, sha256=model["sha"]),
        )
        self.store.put_bytes(plan.to_json(), plan.layout.plan)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("KSTUDIO_", "OMP_", "OPENBLAS_", "MKL_"))
        }
        env |= self.minio.settings.to_env() | {
            "KSTUDIO_BATCH_PLAN_URI": plan.layout.plan,
            "KSTUDIO_MODEL_URI": model_uri,
            "KSTUDIO_MODEL_SHA256": model["sha"],
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        pending, running = list(range(shards)), []
        started = time.monotonic()
        while pending or running:
            while pending and len(running) < parallelism:
                index = pending.pop(0)
                model_dir = self.work / "models" / f"{name}-{index}"  # each "pod" downloads its model
                shutil.rmtree(model_dir, ignore_errors=True)
                log = (self.work / f"{name}-{index}.log").open("wb")
                running.append(
                    subprocess.Popen(
                        [str(KSTUDIO), "score-shard", "--index", str(index)],
                        env=env | {"KSTUDIO_MODEL_DIR": str(model_dir)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(0.05)
            for proc in list(running):
                if proc.poll() is not None:
                    running.remove(proc)
                    if proc.returncode != 0:
                        raise SystemExit(
                            f"{name}: a shard exited {proc.returncode}; see {self.work}/{name}-*.log"
                        )
        seconds = time.monotonic() - started
        results = read_results(self.store, prefix, shards)
        clear(self.store, prefix)
        return seconds, results


# --- the shards as BatchJobs on the local cluster ---------------------------------------------------
class ClusterJobs:
    """Real BatchJobs: the operator, the Job controller, our node agent's pods."""

    NAMESPACE = "bench-batch"

    def __init__(self, work: Path) -> None:
        from scale_kit import Cluster, Operator

        from kstudio_localcluster import cluster as localcluster

        self._localcluster = localcluster
        self.info = localcluster.ensure_up(register_user=True, started_by="cli")
        self.cluster = Cluster()
        self.store = self.cluster.store()
        self.store.ensure_bucket(BUCKET)
        self.cluster.fresh_namespace(self.NAMESPACE)
        self.operator = Operator(self.cluster, self.NAMESPACE, work / "operator-batch.log")
        self.operator.start()
        self.models: set[str] = set()

    def close(self) -> None:
        self.operator.stop()
        self.cluster.kubectl("delete", "namespace", self.NAMESPACE, "--wait=false", check=False)
        self._localcluster.release(self.info.layout)

    def upload(self, path: Path, uri: str) -> None:
        self.store.upload(path, uri)

    def _trained_model(self, name: str, model: dict[str, Any], uri: str) -> None:
        if name in self.models:
            return
        doc = {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "TrainedModel",
            "metadata": {"name": name, "namespace": self.NAMESPACE},
            "spec": {"artifact": {"uri": uri, "sha256": model["sha"]}},
        }
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
        self.cluster.kubectl(
            "-n", self.NAMESPACE, "wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=120s"
        )
        self.models.add(name)

    def run(
        self,
        name: str,
        model: dict[str, Any],
        model_uri: str,
        source: str,
        fmt: str,
        size: int,
        shards: int,
        parallelism: int,
    ) -> tuple[float, list[ShardResult]]:
        model_name = model_uri.rsplit("/", 1)[-1].removesuffix(".ilearner")
        self._trained_model(model_name, model, model_uri)
        prefix = f"s3://{BUCKET}/out/{name}/"
        doc = {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "BatchJob",
            "metadata": {"name": name, "namespace": self.NAMESPACE},
            "spec": {
                "model": model_name,
                "input": {"uri": source},
                "output": {"uri": prefix, "format": fmt},
                "shards": shards,
                "parallelism": parallelism,
                "resources": {"cpu": "1", "memory": "1Gi"},
            },
        }
        started = time.monotonic()
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
        while True:
            status = (
                json.loads(
                    self.cluster.kubectl("-n", self.NAMESPACE, "get", "batchjob", name, "-o", "json")
                ).get("status")
                or {}
            )
            if status.get("phase") == "Succeeded":
                break
            if status.get("phase") == "Failed":
                raise SystemExit(f"{name} failed: {status.get('reason')}: {status.get('message')}")
            time.sleep(0.5)
        seconds = time.monotonic() - started
        results = read_results(self.store, prefix, shards)
        self.cluster.kubectl("-n", self.NAMESPACE, "delete", "batchjob", name, "--wait=true")
        clear(self.store, prefix)
        return seconds, results


# --- the table -----------------------------------------------------------------------------------------
def row(run: Run, base: Run | None, limit: float) -> str:
    speedup = run.rows_s / base.rows_s if base else 1.0
    share = min(run.shard_rows_s) / limit
    return (
        f"| {run.model} | {run.fmt} | {run.shards} | {run.parallelism} | {run.rows_s:,.0f} | "
        f"{speedup:.2f}x | "
        f"{min(run.shard_rows_s):,.0f} | {share:.0%} | {run.peak_rss_mb:.0f} | {run.load:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--via", choices=("processes", "cluster"), default="processes")
    parser.add_argument("--models", default="lr,rf100")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--configs", default="1x1,2x1,4x1,2x2,4x2", help="shards x parallelism")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "kstudio" / "bench-batch")
    parser.add_argument(
        "--fit-on",
        choices=("matrix", "frame"),
        default="matrix",
        help="fit the models on a numpy matrix, or on a DataFrame as the trainer does",
    )
    args = parser.parse_args()
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    formats = args.formats.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    t0 = time.monotonic()
    models = {k: v for k, v in build_models(args.work, args.fit_on).items() if k in args.models.split(",")}
    inputs = write_inputs(args.work, args.rows, formats)
    print(
        "inputs: "
        + ", ".join(f"{p.name} {p.stat().st_size / 2**20:,.0f} MiB" for p in inputs.values())
        + f" ({time.monotonic() - t0:.0f} s)",
        flush=True,
    )
    limits = single_core_limits(models, inputs, args.work)
    backend: Processes | ClusterJobs = (
        Processes(args.work) if args.via == "processes" else ClusterJobs(args.work)
    )
    runs: list[Run] = []
    try:
        sources = {}
        for fmt, path in inputs.items():
            sources[fmt] = (f"s3://{BUCKET}/in/{path.name}", path.stat().st_size)
            backend.upload(path, sources[fmt][0])
        for name, model in models.items():
            backend.upload(model["path"], f"s3://{BUCKET}/models/{name}.ilearner")
        header = (
            "| model | format | shards | parallelism | rows/s | speed-up | slowest shard rows/s "
            "| shard/limit | "
            "peak RSS MB | load |\n|---|---|---|---|---|---|---|---|---|---|"
        )
        fitted = f", models fitted on a {'DataFrame' if args.fit_on == 'frame' else 'matrix'}"
        print(f"\n{args.rows:,} rows x {N_FEATURES} columns, via {args.via}{fitted}\n{header}", flush=True)
        for fmt in formats:
            for name, model in models.items():
                base = None
                for shards, parallelism in configs:
                    run_name = f"{name}-{fmt}-{shards}x{parallelism}"
                    source, size = sources[fmt]
                    model_uri = f"s3://{BUCKET}/models/{name}.ilearner"
                    seconds, results = backend.run(
                        run_name, model, model_uri, source, fmt, size, shards, parallelism
                    )
                    rows = sum(r.rows_scored + r.rows_rejected for r in results)
                    run = Run(
                        name,
                        fmt,
                        shards,
                        parallelism,
                        rows,
                        seconds,
                        # Shards without rows (Parquet: as many busy shards as row groups) say nothing.
                        [r.rows_scored / r.seconds for r in results if r.seconds and r.rows_scored],
                        max((r.peak_rss_bytes or 0) for r in results) / 2**20,
                        os.getloadavg()[0],
                    )
                    if rows != args.rows:
                        raise SystemExit(f"{run_name}: {rows} rows scored, not {args.rows}")
                    if shards == 1:
                        base = run
                    runs.append(run)
                    print(row(run, base, limits[(name, fmt)]), flush=True)
    finally:
        backend.close()
    print(
        "\nTargets: 2 shards in parallel >= 1.7x one shard; each shard >= 70% of the single-core limit; "
        "peak RSS <= 300 MB"
    )
    for run in runs:
        if (run.shards, run.parallelism) == (2, 2):
            base = next(r for r in runs if (r.model, r.fmt, r.shards) == (run.model, run.fmt, 1))
            print(f"  {run.model} {run.fmt}: 2 shards in parallel {run.rows_s / base.rows_s:.2f}x one shard")
    worst = min(runs, key=lambda r: min(r.shard_rows_s) / limits[(r.model, r.fmt)])
    print(
        f"  lowest shard/limit: {min(worst.shard_rows_s) / limits[(worst.model, worst.fmt)]:.0%} "
        f"({worst.model} {worst.fmt} {worst.shards}x{worst.parallelism})"
    )
    print(f"  highest peak RSS: {max(r.peak_rss_mb for r in runs):.0f} MB")
    print(f"load average at end: {os.getloadavg()}; total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
