"""The local cluster and an operator process, as the operator benchmarks drive them (bench/operator_scale.py).

`Cluster`: kubectl, the API server's own apiserver_request_total, MinIO, fresh namespaces. `Operator`: a
`kstudio operator` process on the host (SIGKILL/restart, CPU and RSS from /proc) and its own Prometheus
metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

from kstudio_core.storage import ObjectStore, StorageSettings
from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"
PYTHON = REPO / ".venv" / "bin" / "python"
KSTUDIO_DEV = REPO / ".venv" / "bin" / "kstudio-dev"  # dev tools: the example datasets
GROUP = "kstudio.io"
WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE")
METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
SAMPLE = re.compile(r"^(?P<name>[a-z_:]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[-0-9.e+naNIf]+)$")
Sample = tuple[str, dict[str, str], float]
# More environment for every operator the benchmark starts (operator_scale.py --operator-env NAME=VALUE).
OPERATOR_ENV: dict[str, str] = {}


class Cluster:
    def __init__(self, root: Path | None = None) -> None:
        """The local cluster, or the instance whose files are under `root` (`kstudio-dev cluster --root
        ROOT --name ... up`: a private instance that other sessions' tests neither share nor stop)."""
        layout = ClusterLayout(root=root) if root else ClusterLayout()
        if not layout.kubeconfig.exists():
            raise SystemExit(f"no local cluster at {layout.root}: run `make cluster-up` first")
        out = subprocess.run(
            ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
        )
        self.kubectl_bin = Path(out.stdout.strip().splitlines()[-1]) / "kubectl"
        self.minio = json.loads(layout.minio_json.read_text())
        self.env = {**os.environ, "KUBECONFIG": str(layout.kubeconfig)}
        self.layout = layout
        # This checkout's CRDs (a fresh cluster has none; an older one may have older schemas).
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(self.kubectl_bin), *args], env=self.env, input=input, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def control_plane_cpu(self) -> dict[str, float]:
        """CPU seconds so far of this instance's control-plane processes (its root in their command
        line), by program: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok, ..."""
        root = str(self.layout.root)
        out: dict[str, float] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
                if root.encode() not in b" ".join(args):
                    continue
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            program = Path(args[0].decode(errors="replace")).name
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            out[program] = out.get(program, 0.0) + seconds
        return out

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

    def names(self, namespace: str, kinds: str, selector: str | None = None) -> list[str]:
        args = ["-n", namespace, "get", kinds, "-o", "name"] + (["-l", selector] if selector else [])
        return self.kubectl(*args, check=False).split()

    def items(self, namespace: str, kind: str) -> list[dict[str, object]]:
        return list(json.loads(self.kubectl("-n", namespace, "get", kind, "-o", "json"))["items"])

    def delete_all(self, namespace: str, kinds: str, children: str, selector: str) -> float:
        """Delete every object of `kinds` (the operator running) and return the seconds until neither they
        nor their `children` carrying `selector` are left: finalizers released, garbage collected."""
        started = time.monotonic()
        self.kubectl("-n", namespace, "delete", kinds, "--all", "--wait=false")
        while self.names(namespace, kinds) or self.names(namespace, children, selector):
            if time.monotonic() - started > 900:
                raise RuntimeError(f"{namespace}: objects left 900 s after delete")
            time.sleep(0.5)
        return time.monotonic() - started

    def storage_env(self) -> dict[str, str]:
        return {
            "KSTUDIO_S3_ENDPOINT": self.minio["hostEndpoint"],
            "KSTUDIO_S3_ACCESS_KEY": self.minio["accessKey"],
            "KSTUDIO_S3_SECRET_KEY": self.minio["secretKey"],
            "KSTUDIO_S3_POD_ENDPOINT": self.minio["podEndpoint"],
        }


class Operator:
    def __init__(
        self, cluster: Cluster, namespace: str, log: Path, heap: int | None = None, *args: str
    ) -> None:
        """`heap` None: `kstudio operator`; else the same operator in bench/operator_heap.py, under
        tracemalloc with `heap` frames (0: not traced), whose `heap_report()` says where memory goes.
        `args`: more `kstudio operator` arguments (--leader-election)."""
        self.cluster, self.namespace, self.log, self.heap, self.args = cluster, namespace, log, heap, args
        log.unlink(missing_ok=True)  # restarts of this operator append; a new one starts afresh
        self.proc: subprocess.Popen[bytes] | None = None
        self.report = log.with_suffix(".heap.json")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = int(sock.getsockname()[1])

    def start(self) -> None:
        env = {k: v for k, v in self.cluster.env.items() if not k.startswith("KSTUDIO_")}
        env |= self.cluster.storage_env() | {"KSTUDIO_IMAGE": "kstudio:dev"}
        env["KSTUDIO_METRICS_PORT"] = str(self.metrics_port)
        env |= OPERATOR_ENV
        command = [str(KSTUDIO), "operator"]
        if self.heap is not None:
            command = [str(PYTHON), str(REPO / "bench" / "operator_heap.py"), "--report", str(self.report)]
            command += ["--trace", str(self.heap), "--trim", "--"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--namespace", self.namespace, *self.args], env=env, stdout=out, stderr=out
            )

    def heap_report(self, timeout: float = 300) -> dict[str, object]:
        """bench/operator_heap.py's report of the running operator (started with `heap`)."""
        assert self.proc is not None and self.heap is not None
        done = Path(f"{self.report}.done")
        done.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        started = time.monotonic()
        while not done.exists():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"no heap report in {self.report} after {timeout:.0f} s")
            time.sleep(0.5)
        return dict(json.loads(self.report.read_text()))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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

    def samples(self) -> list[Sample]:
        """The operator's own metrics as (name, labels, value) ([] while it is not serving yet)."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if m and m["name"].startswith("kstudio_operator_"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"] or ""))
                out.append((m["name"], labels, float(m["value"])))
        return out

    def metric(self, name: str, samples: list[Sample] | None = None, **match: str) -> float:
        """Sum of `name` over the samples whose labels include `match`."""
        rows = self.samples() if samples is None else samples
        return sum(v for n, labels, v in rows if n == name and match.items() <= labels.items())

    def client_writes(self, samples: list[Sample] | None = None) -> int:
        """Write requests our client sent since this process started (kopf's own are not in it)."""
        rows = self.samples() if samples is None else samples
        return int(
            sum(
                v
                for n, labels, v in rows
                if n == "kstudio_operator_api_requests_total" and labels.get("verb") in WRITES
            )
        )

    def summary(self) -> dict[str, float]:
        """What the benchmark prints of the operator's metrics: reconciles by kind/outcome, mean reconcile
        seconds by kind, loops, in flight, wake-ups pending, API requests by verb, rollouts by state."""
        rows = self.samples()
        out: dict[str, float] = {}
        for name, labels, value in rows:
            short = name.removeprefix("kstudio_operator_")
            if name.endswith(("_created", "_bucket")) or short.startswith("reconcile_seconds_"):
                continue
            tag = ",".join(labels[k] for k in sorted(labels))
            out[f"{short}[{tag}]" if tag else short] = value
        for kind in {
            labels["kind"] for n, labels, _ in rows if n == "kstudio_operator_reconcile_seconds_count"
        }:
            count = self.metric("kstudio_operator_reconcile_seconds_count", rows, kind=kind)
            total = self.metric("kstudio_operator_reconcile_seconds_sum", rows, kind=kind)
            out[f"reconcile_mean_ms[{kind}]"] = round(1000 * total / count, 1) if count else 0.0
        return out

    def wait_converged(self, counts: dict[str, int], timeout: float = 300) -> float:
        """Seconds until its reconciles cover `counts` (kind → objects) with none in flight or queued."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            rows = self.samples()
            done = all(
                self.metric("kstudio_operator_reconciles_total", rows, kind=kind) >= n
                for kind, n in counts.items()
            )
            idle = rows and self.metric("kstudio_operator_reconciles_in_flight", rows) == 0
            if done and idle and self.metric("kstudio_operator_wakeups_pending", rows) == 0:
                break
            time.sleep(0.2)
        return time.monotonic() - started

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
