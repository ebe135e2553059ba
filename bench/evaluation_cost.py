"""What the evaluation report costs a training run: `kstudio train` on penguins with and without it.

    .venv/bin/python bench/evaluation_cost.py [--runs 7] [--example penguins|diabetes] [--storage minio|local]

Runs the real console script as a training Job does (one process per run), alternating with and without
`--no-evaluation`, each run with a fresh empty HOME and MPLCONFIGDIR as a training pod has (its HOME is a
new emptyDir: matplotlib builds its font cache in every run). `--storage minio` (default): the dataset
from and the artifact, result and report to a MinIO started for the bench (the Go binaries of
`hack/build-binaries.sh`), as in a Job; `--storage local`: local files, the smallest denominator. Prints
wall and CPU seconds per run, the medians, their ratio, and the trainer's own log lines that time the
report.

Nothing is asserted: a figure for bench/README.md. The machine is shared; quote medians and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = Path(sys.executable).with_name("kstudio")
PENGUIN_FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


def dataset(example: str, work: Path, store: Any) -> dict[str, object]:
    """Writes the example's CSV (to MinIO when `store`); returns the experiment snapshot that trains on it."""
    csv = work / f"{example}.csv"
    uri = f"s3://datasets/{example}.csv" if store is not None else str(csv)
    evaluation = {"testFraction": 0.2, "seed": 42}
    if example == "penguins":
        from palmerpenguins import load_penguins

        load_penguins().to_csv(csv, index=False)
        upload(store, csv, uri)
        return {
            "dataset": {"uri": uri},
            "label": "species",
            "features": PENGUIN_FEATURES,
            "task": "classification",
            "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 100}},
            "evaluation": evaluation | {"metrics": ["accuracy", "f1_macro", "roc_auc"]},
        }
    from sklearn.datasets import load_diabetes

    load_diabetes(as_frame=True).frame.to_csv(csv, index=False)
    upload(store, csv, uri)
    return {
        "dataset": {"uri": uri},
        "label": "target",
        "task": "regression",
        "algorithm": {"name": "Ridge", "params": {"alpha": 1.0}},
        "evaluation": evaluation | {"metrics": ["rmse", "mae", "r2"]},
    }


def upload(store: Any, path: Path, uri: str) -> None:
    if store is not None:
        store.ensure_bucket("datasets")
        store.put_bytes(path.read_bytes(), uri)


def one_run(
    snapshot: Path, work: Path, index: int, report: bool, storage_env: dict[str, str] | None
) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stderr) of one `kstudio train` process."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    env = {**os.environ, **(storage_env or {})}
    env |= {"HOME": str(home), "MPLCONFIGDIR": str(home / ".config" / "matplotlib")}
    output = f"s3://models/bench/out-{index}.ilearner" if storage_env else str(work / f"out-{index}.ilearner")
    args = [str(KSTUDIO), "train", "--snapshot", str(snapshot), "--run", str(index)]
    args += ["--output", output] + ([] if report else ["--no-evaluation"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"kstudio train failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


@contextlib.contextmanager
def minio(storage: str, work: Path) -> Iterator[Any]:
    """An ObjectStore on a MinIO of our own (stopped afterwards), or None for local files."""
    if storage != "minio":
        yield None
        return
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.minio_server import start_minio, stop_minio
    from kstudio_core.storage import ObjectStore

    build = ["bash", str(REPO / "hack" / "build-binaries.sh")]
    bin_dir = (
        subprocess.run(build, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    )
    proc, server = start_minio(Path(bin_dir) / "minio", work / "minio")
    try:
        store = ObjectStore(server.settings)
        store.ensure_bucket("models")
        yield store
    finally:
        stop_minio(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each, alternating (default 7)")
    parser.add_argument("--example", choices=["penguins", "diabetes"], default="penguins")
    parser.add_argument("--storage", choices=["minio", "local"], default="minio")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="kstudio-bench-eval-") as tmp,
        minio(args.storage, Path(tmp)) as store,
    ):
        work = Path(tmp)
        storage_env = store.settings.to_env() if store is not None else None
        snapshot = work / "snapshot.json"
        snapshot.write_text(json.dumps(dataset(args.example, work, store)))
        one_run(snapshot, work, 0, True, storage_env)  # warm-up: page cache, .pyc files
        walls: dict[bool, list[float]] = {True: [], False: []}
        cpus: dict[bool, list[float]] = {True: [], False: []}
        computed: list[float] = []
        drawn: list[float] = []
        print(
            f"kstudio train, {args.example}, {args.runs} runs each (alternating), fresh HOME per run, "
            f"storage: {args.storage}"
        )
        for i in range(1, args.runs + 1):
            for report in (False, True):
                wall, cpu, err = one_run(snapshot, work, i * 2 + report, report, storage_env)
                walls[report].append(wall)
                cpus[report].append(cpu)
                computed += [float(x) for x in re.findall(r"evaluation report computed in ([0-9.]+)s", err)]
                drawn += [float(x) for x in re.findall(r"figures drawn in ([0-9.]+)s", err)]
                which = "with   " if report else "without"
                print(f"  run {i} {which} report: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
        for name, figures in (("wall", walls), ("CPU", cpus)):
            without, with_ = statistics.median(figures[False]), statistics.median(figures[True])
            print(
                f"median {name}: without {without:.2f} s, with {with_:.2f} s: the report adds "
                f"{with_ - without:+.2f} s = {100 * (with_ / without - 1):+.1f}% (target <= +20%)"
            )
        if computed and drawn:
            print(
                "inside the runs (trainer log, medians): computing the report "
                f"{statistics.median(computed):.2f} s, drawing its figures {statistics.median(drawn):.2f} s"
            )


if __name__ == "__main__":
    main()
