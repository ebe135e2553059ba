"""Serving modes: a traffic split's observed shares and weights changed under load (local cluster), and
what a mirror costs the caller (one scorer process).

- `split`: a 2-replica Endpoint at 90/10 through its Service; N requests (default 10,000, a new connection
  every 50 so both pods answer) count the model each answer names. Target: each share within +-1.5
  points of its weight. Sessions: as many requests with 1,000 distinct `x-kstudio-session` values.
- `weights`: a client at a fixed rate (default 60 req/s) through the Service while the weights are patched
  90/10 -> 10/90 -> 90/10 ... (`--runs`); per run the seconds from the patch to the status showing the new
  split, the failed requests (target 0), and the share of the second model in the 5 s before the patch and
  after the status showed the new split.
- `shadow`: one `kstudio serve` (pinned to core 1) answering with RandomForestClassifier(100) on 10
  features, alone and with another RandomForestClassifier(100) as its mirror at 100 %, driven open-loop at
  a fixed rate (default 50 req/s, OIP V2, one row; client pinned to core 0) for `--seconds` per round,
  rounds alternating. Latency from each request's scheduled send time to its answer; p50 and p99 per
  configuration and their ratio. Target: with the mirror <= 1.10 x without, at p50 and p99.

Usage: .venv/bin/python bench/modes.py split [--requests 10000]
       .venv/bin/python bench/modes.py weights [--runs 3] [--rate 60]
       .venv/bin/python bench/modes.py shadow [--rate 50] [--seconds 60] [--rounds 3]
`split` and `weights` register as a user of the local cluster (started from this checkout if none runs;
another checkout's sessions are waited for) in namespace kstudio-bench-modes, deleted after.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_kit import Cluster, Operator  # noqa: E402
from serving_kit import LOADGEN, V2_BODY, build_model, doc  # noqa: E402

from kstudio_localcluster import cluster as local_cluster  # noqa: E402

NS = "kstudio-bench-modes"

# In the cluster's network namespace: `n` OIP V2 requests to the Service, one after the other, a new
# connection every 50; prints the model each answer named, counted, and the failures.
COUNTER = r"""
import http.client, json, sys, collections
host, key, name, body = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[6]
n, sessions = int(sys.argv[3]), int(sys.argv[5])
counts, per_session, failed, conn = collections.Counter(), {}, 0, None
for i in range(n):
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if sessions:
        headers["x-kstudio-session"] = f"s{i % sessions}"
    try:
        if conn is None or i % 50 == 0:
            conn = http.client.HTTPConnection(host, 80, timeout=10)
        conn.request("POST", f"/v2/models/{name}/infer", body=body, headers=headers)
        resp = conn.getresponse(); data = resp.read()
        if resp.status != 200:
            failed += 1; continue
        model = json.loads(data)["model_name"]
        counts[model] += 1
        if sessions:
            per_session.setdefault(i % sessions, set()).add(model)
    except Exception:
        failed += 1; conn = None
print(json.dumps({"counts": counts, "failed": failed,
                  "sessions_on_two_models": sum(1 for s in per_session.values() if len(s) > 1)}))
"""


def wait(what: str, probe: Callable[[], Any], timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


class Bench:
    """Two imported TrainedModels (m-a, m-b: one schema, opposite answers), a WebService without pods, and
    Endpoints made by the commands."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster, self.tmp = cluster, tmp
        self.shas: dict[str, str] = {}
        store = cluster.store()
        for name, flip in (("m-a", False), ("m-b", True)):
            path = tmp / f"{name}.ilearner"
            self.shas[name] = build_model(path, flip)
            uri = f"s3://models/{NS}/{name}.ilearner"
            store.upload(path, uri)
            self.apply(doc("TrainedModel", name, {"artifact": {"uri": uri, "sha256": self.shas[name]}}))
        self.apply(doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 0}}))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl("-n", NS, *args, input=input)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def status(self, endpoint: str) -> dict[str, Any]:
        return dict(
            json.loads(self.kubectl("get", "endpoints.kstudio.io", endpoint, "-o", "json")).get("status")
            or {}
        )

    def serving(self, endpoint: str, split: str, replicas: int = 2) -> bool:
        s = self.status(endpoint)
        return s.get("phase") == "Ready" and s.get("split") == split and s.get("readyReplicas") == replicas

    def endpoint(self, name: str, weights: tuple[int, int]) -> tuple[str, str]:
        """Endpoint `name` at m-a:weights[0],m-b:weights[1] on 2 pods, ready: (its ClusterIP, its key)."""
        spec = {"webService": "svc", "traffic": traffic(*weights), "replicas": 2}
        self.apply(doc("Endpoint", name, spec))
        wait(f"{name} serving", lambda: self.serving(name, label(*weights)), 300)
        ip = json.loads(self.kubectl("get", "service", name, "-o", "json"))["spec"]["clusterIP"]
        secret = json.loads(self.kubectl("get", "secret", f"{name}-keys", "-o", "json"))
        return ip, base64.b64decode(secret["data"]["primaryKey"]).decode()

    def in_cluster(self, script: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
        netns = self.cluster.layout.netns
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            text=True,
        )


def traffic(a: int, b: int) -> list[dict[str, Any]]:
    return [{"model": "m-a", "weight": a}, {"model": "m-b", "weight": b}]


def label(a: int, b: int) -> str:
    return f"m-a:{a},m-b:{b}"


def shares(bench: Bench, requests: int) -> int:
    ip, key = bench.endpoint("ep-shares", (90, 10))
    body = json.dumps(V2_BODY)
    rows = []
    for sessions in (0, 1000):
        started = time.monotonic()
        proc = bench.in_cluster(COUNTER, ip, key, str(requests), "ep-shares", str(sessions), body)
        out, _ = proc.communicate(timeout=3600)
        result = json.loads(out.strip().splitlines()[-1])
        counts = Counter(result["counts"])
        total = sum(counts.values())
        row = {
            "sessions": sessions or "none",
            "requests": total,
            "failed": result["failed"],
            "m-a %": 100 * counts["m-a"] / total,
            "m-b %": 100 * counts["m-b"] / total,
            "req/s": total / (time.monotonic() - started),
            "sessions on 2 models": result["sessions_on_two_models"],
        }
        row["off by (points)"] = max(abs(row["m-a %"] - 90), abs(row["m-b %"] - 10))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| sessions | requests | m-a % | m-b % | off by (points) | failed | sessions on 2 models | req/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['sessions']} | {r['requests']} | {r['m-a %']:.2f} | {r['m-b %']:.2f} | "
            f"{r['off by (points)']:.2f} | {r['failed']} | {r['sessions on 2 models']} | {r['req/s']:.0f} |"
        )
    return 0


def weights(bench: Bench, runs: int, rate: float) -> int:
    ip, key = bench.endpoint("ep-weights", (90, 10))
    b_sha = bench.shas["m-b"]
    current, other = (90, 10), (10, 90)
    rows = []
    for run in range(runs):
        gen = bench.in_cluster(LOADGEN, ip, key, str(rate), "ep-weights", stdin=True)
        assert gen.stdout is not None
        t0 = float(gen.stdout.readline().split()[1])
        time.sleep(5)
        patched = time.monotonic() - t0
        patch = {"spec": {"traffic": traffic(*other)}}
        bench.kubectl("patch", "endpoints.kstudio.io", "ep-weights", "--type=merge", "-p", json.dumps(patch))
        wait("the new split", lambda target=other: bench.serving("ep-weights", label(*target)), 300)
        shown = time.monotonic() - t0
        time.sleep(5)
        out, _ = gen.communicate(input="", timeout=120)
        result = json.loads(out.strip().splitlines()[-1])
        answers = result["answers"]

        def share_b(start: float, stop: float, answers: list[Any] = answers) -> float:
            window = [v for t, v in answers if start <= t < stop]
            return 100 * sum(1 for v in window if v == b_sha) / max(len(window), 1)

        row = {
            "run": run + 1,
            "to": label(*other),
            "req/s": (result["ok"] + result["failed"]) / result["seconds"],
            "status s": shown - patched,
            "failed": result["failed"],
            "m-b % before": share_b(patched - 5, patched),
            "m-b % after": share_b(shown, shown + 5),
            "errors": result["errors"][:3],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        current, other = other, current
    print("\n| run | to | req/s | seconds to the new split | failed | m-b % 5 s before | m-b % 5 s after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['to']} | {r['req/s']:.0f} | {r['status s']:.2f} | {r['failed']} | "
            f"{r['m-b % before']:.0f} | {r['m-b % after']:.0f} |"
        )
    return 0


def shadow(rate: float, seconds: float, rounds: int) -> int:
    import numpy as np
    from servers import start_ours
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
    from kstudio_trainer.artifact_writer import write_ilearner

    with tempfile.TemporaryDirectory(prefix="kstudio-shadow-") as tmp:
        work = Path(tmp)
        x, y = make_classification(n_samples=5000, n_features=10, n_informative=6, random_state=0)
        manifest = IlearnerManifest(
            task="classification",
            label="y",
            inputSchema=[ColumnSpec(name=f"f{i}", type="number") for i in range(10)],
            classes=[0, 1],
        )
        shas = {}
        for name, seed in (("answer", 0), ("mirror", 1)):
            forest = RandomForestClassifier(n_estimators=100, random_state=seed).fit(x, y)
            shas[name] = write_ilearner(work / f"{name}.ilearner", forest, manifest).sha256
        mirror = json.dumps(
            {"name": "mirror", "uri": str(work / "mirror.ilearner"), "sha256": shas["mirror"], "percent": 100}
        )
        row = np.random.default_rng(3).normal(size=10).tolist()
        body = json.dumps(
            {
                "inputs": [
                    {"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [v]}
                    for i, v in enumerate(row)
                ]
            }
        )
        configs = {"alone": {}, "mirror 100%": {"KSTUDIO_MIRROR": mirror}}
        latencies: dict[str, list[float]] = {name: [] for name in configs}
        mirrored = 0.0
        for round_ in range(rounds):
            for config, env in configs.items():
                server = start_ours(work / "answer.ilearner", shas["answer"], "ep", work, env)
                try:
                    out = subprocess.run(
                        [
                            "taskset",
                            "-c",
                            "0",
                            sys.executable,
                            "-c",
                            OPEN_LOOP,
                            str(server.port),
                            str(rate),
                            str(seconds),
                            body,
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    result = json.loads(out)
                    metrics = urllib_get(f"{server.base}/metrics")
                finally:
                    server.stop()
                latencies[config] += result["latencies"]
                if config != "alone":
                    mirrored += _sample(
                        metrics, 'kstudio_scorer_mirror_requests_total{mirror="mirror",outcome="ok"}'
                    )
                print(
                    json.dumps(
                        {
                            "round": round_ + 1,
                            "config": config,
                            "failed": result["failed"],
                            **_percentiles(result["latencies"]),
                        }
                    ),
                    flush=True,
                )
        rows = {name: _percentiles(values) for name, values in latencies.items()}
        per = f"{rounds} x {seconds:.0f} s per configuration"
        print(f"\n{rate:.0f} req/s, {per}; copies the mirror scored: {mirrored:.0f}")
        print("| configuration | requests | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | {r['requests']} | {r['p50 ms']:.2f} | {r['p99 ms']:.2f} |")
        base, with_mirror = rows["alone"], rows["mirror 100%"]
        p50, p99 = (with_mirror[k] / base[k] for k in ("p50 ms", "p99 ms"))
        print(f"| ratio | | {p50:.3f} | {p99:.3f} |")
    return 0


# Open loop at a fixed rate on one keep-alive connection: each request is due at t0 + i/rate; its latency
# runs from then (a late send counts against the server) to the answer.
OPEN_LOOP = r"""
import http.client, json, sys, time
port, rate, seconds, body = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
latencies, failed = [], 0
t0 = time.perf_counter() + 0.5
for i in range(int(rate * seconds)):
    due = t0 + i / rate
    while (now := time.perf_counter()) < due:
        time.sleep(min(due - now, 0.005))
    try:
        conn.request("POST", "/v2/models/ep/infer", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse(); resp.read()
        if resp.status != 200:
            failed += 1
            continue
    except Exception:
        failed += 1; conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10); continue
    latencies.append(time.perf_counter() - due)
print(json.dumps({"latencies": latencies, "failed": failed}))
"""


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def _sample(text: str, line_start: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))


def _percentiles(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    if not ordered:
        return {"requests": 0, "p50 ms": float("nan"), "p99 ms": float("nan")}

    def at(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests": len(ordered), "p50 ms": at(0.50), "p99 ms": at(0.99)}


@contextmanager
def cluster_session() -> Iterator[Cluster]:
    """The local cluster, this process registered as a user (as a pytest session is), and a fresh
    namespace with the operator of this checkout running; everything removed after."""
    bin_dir = (
        subprocess.run(
            ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    info = local_cluster.ensure_up(bin_dir=Path(bin_dir), started_by="fixture", register_user=True)
    try:
        cluster = Cluster()
        cluster.fresh_namespace(NS)
        yield cluster
    finally:
        local_cluster.release(info.layout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_split = sub.add_parser("split", help="observed shares of a 90/10 split")
    p_split.add_argument("--requests", type=int, default=10_000)
    p_weights = sub.add_parser("weights", help="weights changed under load")
    p_weights.add_argument("--runs", type=int, default=3)
    p_weights.add_argument("--rate", type=float, default=60.0)
    p_shadow = sub.add_parser("shadow", help="what a mirror at 100 %% costs the caller")
    p_shadow.add_argument("--rate", type=float, default=50.0)
    p_shadow.add_argument("--seconds", type=float, default=60.0)
    p_shadow.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "shadow":
        return shadow(args.rate, args.seconds, args.rounds)
    with cluster_session() as cluster, tempfile.TemporaryDirectory(prefix="kstudio-modes-") as tmp:
        operator = Operator(cluster, NS, Path(tmp) / "operator.log")
        operator.start()
        try:
            bench = Bench(cluster, Path(tmp))
            if args.command == "split":
                return shares(bench, args.requests)
            return weights(bench, args.runs, args.rate)
        finally:
            kinds = "webservices.kstudio.io,endpoints.kstudio.io,trainedmodels.kstudio.io"
            cluster.kubectl("-n", NS, "delete", kinds, "--all", "--wait=true", "--timeout=120s", check=False)
            operator.stop()
            cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


if __name__ == "__main__":
    raise SystemExit(main())
