"""Operator cost at scale on the local cluster: N TrainedModels + N Endpoints in one namespace.

For each N (default 100, 300, 1000) it creates N TrainedModels sharing one real .ilearner and N Endpoint
objects referencing them (`replicas: 0`: no scorer pod), then prints:
  ready_s      seconds from the first create until every TrainedModel is Ready (and InUse);
  idle req/s   API requests per second over an idle window, from the API server's own
               apiserver_request_total: kstudio.io objects (only the operator touches them) by verb, and
               every group with the same window measured without the operator subtracted;
  cpu%, rss    the operator's CPU (% of one core) over the idle window, and its RSS;
  restart      after SIGKILL + restart: seconds until every object has been reconciled again (the
               operator's own kstudio_operator_reconciles_total) and the write requests to kstudio.io
               objects in that time (target 0: unchanged objects are not written).
Once: the delay from a training Job's Complete condition to the Experiment's status showing the run
Succeeded (the penguins example).

Usage: .venv/bin/python bench/operator_scale.py [--sizes 100,300,1000] [--idle 60]
Needs the local cluster (`make cluster-up`); uses namespace kstudio-scale-<N> and deletes it after.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kstudio_core.storage import ObjectStore, StorageSettings
from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"

GROUP = "kstudio.io"
WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE")
METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


class Cluster:
    def __init__(self) -> None:
        layout = ClusterLayout()
        if not layout.kubeconfig.exists():
            raise SystemExit("no local cluster: run `make cluster-up` first")
        out = subprocess.run(
            ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
        )
        self.kubectl_bin = Path(out.stdout.strip().splitlines()[-1]) / "kubectl"
        self.minio = json.loads(layout.minio_json.read_text())
        self.env = {**os.environ, "KUBECONFIG": str(layout.kubeconfig)}
        self.layout = layout

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(self.kubectl_bin), *args], env=self.env, input=input, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def requests(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total summed by (group, verb)."""
        totals: Counter[tuple[str, str]] = Counter()
        for line in self.kubectl("get", "--raw", "/metrics").splitlines():
            m = METRIC.match(line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
                totals[(labels.get("group", ""), labels.get("verb", ""))] += float(m["value"])
        return totals

    def store(self) -> ObjectStore:
        """The cluster's MinIO from the host, with a `models` bucket."""
        settings = StorageSettings(
            endpoint=self.minio["hostEndpoint"],
            access_key=self.minio["accessKey"],
            secret_key=self.minio["secretKey"],
        )
        store = ObjectStore(settings)
        store.ensure_bucket("models")
        return store

    def fresh_namespace(self, namespace: str) -> None:
        """`namespace`, emptied, with the storage Secret kstudio-s3 that training and scorer pods mount."""
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", check=False)
        self.kubectl("create", "namespace", namespace)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kstudio-s3"},
            "stringData": {"accessKey": self.minio["accessKey"], "secretKey": self.minio["secretKey"]},
        }
        self.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(secret))

    def storage_env(self) -> dict[str, str]:
        return {
            "KSTUDIO_S3_ENDPOINT": self.minio["hostEndpoint"],
            "KSTUDIO_S3_ACCESS_KEY": self.minio["accessKey"],
            "KSTUDIO_S3_SECRET_KEY": self.minio["secretKey"],
            "KSTUDIO_S3_POD_ENDPOINT": self.minio["podEndpoint"],
        }


class Operator:
    def __init__(self, cluster: Cluster, namespace: str, log: Path) -> None:
        self.cluster, self.namespace, self.log = cluster, namespace, log
        self.proc: subprocess.Popen[bytes] | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = int(sock.getsockname()[1])

    def start(self) -> None:
        env = {k: v for k, v in self.cluster.env.items() if not k.startswith("KSTUDIO_")}
        env |= self.cluster.storage_env() | {"KSTUDIO_IMAGE": "kstudio:dev"}
        env["KSTUDIO_METRICS_PORT"] = str(self.metrics_port)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(KSTUDIO), "operator", "--namespace", self.namespace], env=env, stdout=out, stderr=out
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> dict[str, float]:
        """The operator's own metrics, summed by name + kind label ({} while it is not serving yet)."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = Counter()
        for line in text.splitlines():
            if line.startswith("kstudio_operator_"):
                name_labels, _, value = line.rpartition(" ")
                kind = re.search(r'kind="(\w+)"', name_labels)
                out[name_labels.split("{")[0] + (f":{kind[1]}" if kind else "")] += float(value)
        return out

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def _manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def create_objects(cluster: Cluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Server-side apply in chunks, in parallel (what a GitOps controller does with a large repo)."""
    chunks = [docs[i : i + 100] for i in range(0, len(docs), 100)]

    def apply(chunk: list[dict[str, Any]]) -> None:
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk})
        cluster.kubectl("-n", namespace, "apply", "--server-side", "-f", "-", input=body)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(apply, chunks))


def ready_count(cluster: Cluster, namespace: str, n: int) -> tuple[int, int]:
    items = json.loads(cluster.kubectl("-n", namespace, "get", "trainedmodels", "-o", "json"))["items"]
    ready = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Ready")
    used = sum(1 for i in items if (i.get("status") or {}).get("usedBy"))
    return ready, used


def idle_window(cluster: Cluster, seconds: float, operator: Operator | None) -> dict[str, Any]:
    before = cluster.requests()
    cpu0 = operator.cpu_seconds() if operator else 0.0
    time.sleep(seconds)
    after = cluster.requests()
    cpu = (operator.cpu_seconds() - cpu0) / seconds * 100 if operator else 0.0
    delta = after - before
    return {
        "kstudio_by_verb": {
            verb: round(v / seconds, 3) for (g, verb), v in sorted(delta.items()) if g == GROUP
        },
        "all_per_s": sum(delta.values()) / seconds,
        "cpu_pct": cpu,
        "rss_mb": operator.rss_mb() if operator else 0.0,
    }


def writes(delta: Counter[tuple[str, str]]) -> int:
    return int(sum(v for (g, verb), v in delta.items() if g == GROUP and verb in WRITES))


def run_size(cluster: Cluster, n: int, artifact: dict[str, str], idle: float, work: Path) -> dict[str, Any]:
    ns = f"kstudio-scale-{n}"
    cluster.fresh_namespace(ns)
    op = Operator(cluster, ns, work / f"operator-{n}.log")
    op.start()
    out: dict[str, Any] = {"n": n}
    try:
        time.sleep(3)
        out["rss_empty_mb"] = op.rss_mb()
        docs = [_manifest("TrainedModel", f"m-{i}", {"artifact": artifact}) for i in range(n)]
        docs += [
            _manifest("Endpoint", f"ep-{i}", {"webService": "svc", "model": f"m-{i}", "replicas": 0})
            for i in range(n)
        ]
        t0 = time.monotonic()
        create_objects(cluster, ns, docs)
        out["create_s"] = time.monotonic() - t0
        while True:
            ready, used = ready_count(cluster, ns, n)
            if ready == n and used == n:
                break
            if time.monotonic() - t0 > 900:
                raise RuntimeError(f"N={n}: only {ready} Ready / {used} InUse after 900 s")
            time.sleep(1)
        out["ready_s"] = time.monotonic() - t0
        time.sleep(10)  # let the last status writes' watch events settle
        out["idle"] = idle_window(cluster, idle, op)
        op.kill()
        out["baseline"] = idle_window(cluster, idle, None)  # the same window without the operator
        before = cluster.requests()
        t1 = time.monotonic()
        op.start()
        # Converged: every TrainedModel's loop has finished its first reconcile and none is running.
        while time.monotonic() - t1 < 300:
            m = op.metrics()
            done = m.get("kstudio_operator_reconciles_total:TrainedModel", 0)
            if done >= n and m.get("kstudio_operator_reconciles_in_flight", 1) == 0:
                break
            time.sleep(0.2)
        out["restart_converged_s"] = time.monotonic() - t1
        time.sleep(5)  # writes that trail the first pass would still count
        out["restart_writes"] = writes(cluster.requests() - before)
        out["operator_metrics"] = op.metrics()
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return out


def job_to_status_delay(cluster: Cluster, work: Path) -> float | None:
    """Seconds from the penguins training Job's Complete condition to the Experiment's run Succeeded."""
    ns = "kstudio-scale-exp"
    cluster.fresh_namespace(ns)
    subprocess.run(
        [str(KSTUDIO), "upload-examples"],
        env=cluster.env | cluster.storage_env(),
        check=True,
        capture_output=True,
    )
    op = Operator(cluster, ns, work / "operator-exp.log")
    op.start()
    try:
        cluster.kubectl("-n", ns, "apply", "-f", str(REPO / "examples" / "penguins" / "experiment.yaml"))
        job_done = status_done = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and status_done is None:
            if job_done is None:
                job = cluster.kubectl("-n", ns, "get", "job", "penguins-run-1", "-o", "json", check=False)
                conds = (json.loads(job).get("status") or {}).get("conditions") or [] if job else []
                if any(c["type"] == "Complete" and c["status"] == "True" for c in conds):
                    job_done = time.monotonic()
            else:
                exp = json.loads(cluster.kubectl("-n", ns, "get", "experiment", "penguins", "-o", "json"))
                runs = (exp.get("status") or {}).get("runs") or []
                if runs and runs[-1].get("phase") == "Succeeded":
                    status_done = time.monotonic()
            time.sleep(0.05)
        return None if job_done is None or status_done is None else status_done - job_done
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def build_ilearner(path: Path) -> str:
    """One small real .ilearner (logistic regression on two columns); its sha256."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
    from kstudio_trainer.artifact_writer import write_ilearner

    x = np.random.default_rng(0).normal(size=(60, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name="x1", type="number"), ColumnSpec(name="x2", type="number")],
        classes=[0, 1],
    )
    return write_ilearner(path, model, manifest).sha256


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle window")
    args = parser.parse_args()
    cluster = Cluster()

    with tempfile.TemporaryDirectory(prefix="kstudio-scale-") as tmp:
        work = Path(tmp)
        sha = build_ilearner(work / "m.ilearner")
        uri = "s3://models/scale/shared.ilearner"
        cluster.store().upload(work / "m.ilearner", uri)
        rows = []
        for n in (int(s) for s in args.sizes.split(",")):
            row = run_size(cluster, n, {"uri": uri, "sha256": sha}, args.idle, work)
            rows.append(row)
            print(json.dumps(row), flush=True)
        delay = job_to_status_delay(cluster, work)
    print()
    print(
        "| N | all Ready s | idle kstudio.io req/s | idle all req/s (operator - baseline) | CPU % | RSS MB "
        "(empty) | restart converged s | restart writes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        idle, base = r["idle"], r["baseline"]
        kst = sum(idle["kstudio_by_verb"].values())
        print(
            f"| {r['n']} | {r['ready_s']:.1f} | {kst:.2f} {idle['kstudio_by_verb']} | "
            f"{idle['all_per_s'] - base['all_per_s']:.2f} | {idle['cpu_pct']:.1f} | {idle['rss_mb']:.0f} "
            f"({r['rss_empty_mb']:.0f}) | {r['restart_converged_s']:.1f} | {r['restart_writes']} |"
        )
    print(
        f"\nJob Complete -> Experiment run Succeeded: {delay:.2f} s"
        if delay is not None
        else "\nJob: no figure"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
