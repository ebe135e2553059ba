"""Scorer start: seconds from exec of `kstudio serve` to the first 200 of /readyz, for the penguins model.

A rollout can only be as fast as a new scorer pod gets Ready, so this is the number behind issue 10's
"patch to 100% in ≤ 5 s". The model is trained here by the trainer (`kstudio train` on the penguins
example: RandomForestClassifier(100) behind imputer/scaler/one-hot preprocessing). The scorer runs from
the image venv the node agent runs pods from (built by kstudio_localcluster.imagevenv like the
Dockerfile builds the image: byte-compiled), with the image's environment (PYTHONDONTWRITEBYTECODE=1),
so what is timed is a pod's start.

Each run: exec, poll /readyz every 10 ms on a fresh connection, record the wall time and the process's
CPU seconds at that moment, then SIGTERM. Prints every run and the medians, plus the scorer's own
account of the model phases (fetch, verify+load, warm-up) from its log.

    .venv/bin/python bench/scorer_start.py [--runs 5] [--minio] [--drain SECONDS]

--minio serves the model from a MinIO started here (s3:// URI: download + digest check, as in a pod);
it needs the Go binaries (hack/build-binaries.sh). Without it the artifact is a local file.
--drain also times each stop with KSTUDIO_DRAIN_SECONDS set: SIGTERM -> /readyz 503 (how soon a pod
leaves its Service's endpoints) and SIGTERM -> exit (the drain plus the shutdown). tests/scorer/
test_drain.py asserts the drain's behaviour, these are its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PHASES = re.compile(r"ready .* in ([\d.]+) s: fetch ([\d.]+) s, verify\+load ([\d.]+) s, warm-up ([\d.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def train_penguins(work: Path) -> tuple[Path, str]:
    from kstudio_devtools import examples

    csv = work / "penguins.csv"
    examples.penguins_frame().to_csv(csv, index=False)
    snapshot = work / "penguins.snapshot.json"
    snapshot.write_text(json.dumps(examples.penguins_snapshot(str(csv))))
    artifact = work / "penguins.ilearner"
    subprocess.run(
        [
            str(KSTUDIO),
            "train",
            "--snapshot",
            str(snapshot),
            "--run",
            "1",
            "--output",
            str(artifact),
            "--termination-log",
            str(work / "train-termination-log"),
        ],
        check=True,
        capture_output=True,
    )
    result = json.loads((work / "penguins.ilearner.result.json").read_text())
    return artifact, str(result["artifact"]["sha256"])


def status_of(port: int, path: str) -> int:
    """The HTTP status of GET `path` on a fresh connection (0 when nothing answers)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            return int(s.recv(64).split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def stop_timed(proc: subprocess.Popen[bytes], port: int) -> tuple[float, float]:
    """SIGTERM, then seconds until /readyz answers 503 (or stops answering) and until the process exits."""
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while status_of(port, "/readyz") == 200:
        time.sleep(0.002)
    not_ready = time.monotonic() - signalled
    proc.wait(timeout=120)
    return not_ready, time.monotonic() - signalled


def start_once(
    image: Path, env: dict[str, str], work: Path, run: int
) -> tuple[float, float, str, tuple[float, float] | None]:
    port = free_port()
    log_path = work / f"serve-{run}.log"
    run_env = {**env, "KSTUDIO_PORT": str(port)}
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(image / "bin" / "kstudio"), "serve"], env=run_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        while not ready(port):
            if proc.poll() is not None:
                raise SystemExit(f"kstudio serve exited with {proc.returncode}:\n{log_path.read_text()}")
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(proc.pid)
        stop = stop_timed(proc, port) if float(env.get("KSTUDIO_DRAIN_SECONDS", "0")) > 0 else None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return elapsed, cpu, log_path.read_text(errors="replace"), stop


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minio", action="store_true", help="serve from MinIO (s3://) instead of a file")
    parser.add_argument("--drain", type=float, default=0.0, help="KSTUDIO_DRAIN_SECONDS; time each stop")
    args = parser.parse_args()

    from kstudio_localcluster.imagevenv import ensure_image_venv

    # The scorer runs from the image venv, the one the node agent runs pods from (this checkout's wheel
    # in a clean venv, byte-compiled like the Dockerfile's), so what is timed is a pod's start.
    image = ensure_image_venv(REPO)
    print(f"image venv: {image}")
    with tempfile.TemporaryDirectory(prefix="kstudio-bench-start-") as tmp:
        work = Path(tmp)
        artifact, sha256 = train_penguins(work)
        print(f"penguins model: {artifact.stat().st_size} bytes, sha256 {sha256[:12]}…")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
        env.update(
            {
                "PYTHONDONTWRITEBYTECODE": "1",  # as in the image: pods cannot write bytecode
                "KSTUDIO_MODEL_URI": str(artifact),
                "KSTUDIO_MODEL_SHA256": sha256,
                "KSTUDIO_AUTH_ENABLED": "false",
                "KSTUDIO_HOST": "127.0.0.1",
                "KSTUDIO_DRAIN_SECONDS": str(args.drain),
                "KSTUDIO_TERMINATION_LOG": str(work / "termination-log"),
                "KSTUDIO_MODEL_DIR": str(work / "model-cache"),
            }
        )
        minio_proc = None
        if args.minio:
            minio_proc, uri, storage_env = upload_to_minio(artifact, work)
            env.update({"KSTUDIO_MODEL_URI": uri, **storage_env})
        try:
            walls, cpus, phases, stops = [], [], [], []
            for run in range(1, args.runs + 1):
                # A pod starts with an empty model directory: every run downloads again.
                for cached in (work / "model-cache").glob("*"):
                    cached.unlink()
                wall, cpu, log, stop = start_once(image, env, work, run)
                walls.append(wall)
                cpus.append(cpu)
                if stop is not None:
                    stops.append(stop)
                found = PHASES.search(log)
                if found:
                    phases.append(tuple(float(g) for g in found.groups()))
                print(
                    f"run {run}: exec -> Ready {wall:.2f} s (CPU {cpu:.2f} s)"
                    + (f"; model {found.group(1)} s" if found else "")
                    + (
                        f"; SIGTERM -> not ready {stop[0] * 1000:.0f} ms, exit {stop[1]:.2f} s"
                        if stop
                        else ""
                    )
                    + f"; load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        finally:
            if minio_proc is not None:
                minio_proc.terminate()
                minio_proc.wait(timeout=10)
    source = "MinIO (s3://)" if args.minio else "local file"
    print(
        f"\nexec -> Ready, penguins RF100, model from {source}: median {statistics.median(walls):.2f} s "
        f"of {len(walls)} runs (min {min(walls):.2f}, max {max(walls):.2f}); "
        f"CPU median {statistics.median(cpus):.2f} s"
    )
    if stops:
        not_ready, exits = [s[0] * 1000 for s in stops], [s[1] for s in stops]
        print(
            f"drain of {args.drain:g} s: SIGTERM -> /readyz 503 median {statistics.median(not_ready):.0f} ms "
            f"(max {max(not_ready):.0f}); SIGTERM -> exit median {statistics.median(exits):.2f} s"
        )
    if phases:
        med = [statistics.median(p[i] for p in phases) for i in range(4)]
        print(
            f"model phases (median): {med[0]:.2f} s = fetch {med[1]:.2f} + verify+load {med[2]:.2f} "
            f"+ warm-up {med[3]:.2f}; the rest is interpreter start, imports and uvicorn start"
        )
    return 0


def upload_to_minio(artifact: Path, work: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.minio_server import start_minio
    from kstudio_core.storage import ObjectStore

    bin_dir = (
        subprocess.run(
            ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    proc, minio = start_minio(Path(bin_dir) / "minio", work / "minio")
    store = ObjectStore(minio.settings)
    store.ensure_bucket("models")
    uri = "s3://models/bench/penguins.ilearner"
    store.upload(artifact, uri)
    return proc, uri, minio.settings.to_env()


if __name__ == "__main__":
    sys.exit(main())
