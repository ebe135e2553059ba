"""Operator cost at scale on the local cluster, in one namespace per N (default 100, 300, 1000).

--mode models (issue 9): N TrainedModels sharing one real .ilearner + N Endpoints referencing them with
`replicas: 0` (no scorer pod). Ready = every TrainedModel Ready and InUse.
--mode endpoints (issue 13): two TrainedModels and N WebServices, each serving through its default Endpoint
one scorer pod that tolerates the local cluster's kwok fake nodes (`make cluster-up FAKE_NODES=10`, i.e.
`kstudio-dev cluster up --fake-nodes 10`): real API server, controller-manager, scheduler and operator,
simulated kubelets. Ready = every Endpoint Ready (a ready pod serves its model).

For each N and each start order (--orders: warm, the operator runs before the objects are created; cold,
it starts once they all exist, as after an upgrade or a drain) it prints:
  ready_s       seconds from the first create until all are Ready (cold: and from the operator's start);
  requests/obj  the requests its client sent until Ready, per object created (its metric by verb and
                resource is in the row's JSON; kopf's finalizer patches are not in it);
  idle req/s    API requests per second over an idle window, from the API server's own
                apiserver_request_total: kstudio.io objects (only the operator touches them) by verb, and
                every group minus the same window measured without the operator (baseline);
  cpu%, rss     the operator's CPU (% of one core) over the idle window, and its RSS (and with no objects);
  restart       after SIGKILL + restart: seconds until its own reconciles_total covers every object with none
                in flight or queued, the write requests its client sent meanwhile (its metric by verb) and
                the kstudio.io writes the API server saw (kopf's own included); target 0 for both;
  failover      two replicas with --leader-election; the leader SIGKILLed once converged: seconds until
                the other holds the Lease and until it converged (target <= 15 s); in the row's JSON also
                both replicas' RSS before the kill (the standby is hot: it holds the same caches) and the
                kstudio.io writes the API server saw from the kill until 5 s after it converged (target 0);
  patch_s       (endpoints) seconds from patching one WebService's model until its default Endpoint's
                status shows the new digest, the other N-1 idle;
  delete_s      seconds from deleting every kstudio object (operator running) until none and no child is
                left;
  metrics       the operator's own /metrics after the restart (reconciles by kind/outcome, mean reconcile
                ms, loops, in flight, wake-ups pending, API requests by verb, rollouts);
  heap          with --heap: where the memory goes after the idle window (bench/operator_heap.py);
  creation      where the time from the last create to all Ready goes: the operator's CPU and work queue
                and the control plane's CPU, sampled every 2 s (CreationProfile), the operator's requests
                by verb and resource per object, and (endpoints) each Endpoint's creation to its Ready.
--creation-only stops each row after the creation figures (no idle windows, restart or failover).
Once (models mode): the delay from a training Job's Complete condition to the Experiment's status showing
the run Succeeded (the penguins example).

With --failover-only, each row is only: create the objects with one operator running, all Ready, stop it,
then the failover figure (a few minutes instead of the whole row).

Usage: .venv/bin/python bench/operator_scale.py [--mode models|endpoints] [--sizes 100,300,1000] [--idle 60]
       [--orders warm,cold] [--heap FRAMES] [--creation-only] [--failover-only]
       [--operator-env NAME=VALUE] [--cluster-root DIR]
Needs the local cluster (`make cluster-up`); uses namespace kstudio-scale-<mode>-<N> and deletes it after.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from scale_kit import GROUP, KSTUDIO_DEV, OPERATOR_ENV, REPO, WRITES, Cluster, Operator

# The operator's logs stay after the run (the reconcile errors a row counts are explained there).
LOGS = Path(tempfile.gettempdir()) / "kstudio-scale-logs"
KINDS = "webservices.kstudio.io,endpoints.kstudio.io,trainedmodels.kstudio.io"
CHILDREN = "deployments,replicasets,pods,services,secrets"
SCORER_PODS = "kstudio.io/endpoint"  # the label every scorer child carries
# What a WebService's scorer pods need to land on the kwok nodes (and only there).
ON_FAKE_NODES = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


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


def wait_for(what: str, check: Any, started: float, timeout: float = 900) -> float:
    while not (last := check()):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s (last seen: {last})")
        time.sleep(0.5)
    return time.monotonic() - started


@dataclasses.dataclass(frozen=True)
class Readiness:
    """How many of `n` objects are Ready (true when all are), and the phases of the others."""

    ready: int
    n: int
    others: dict[str, int]

    def __bool__(self) -> bool:
        return self.ready == self.n

    def __str__(self) -> str:
        return f"{self.ready}/{self.n} Ready, others by phase {self.others}"


def _readiness(statuses: list[Any], n: int, ready: Callable[[dict[str, Any]], bool]) -> Readiness:
    done = [s for s in statuses if isinstance(s, dict) and ready(s)]
    others = Counter(str(s.get("phase")) for s in statuses if isinstance(s, dict) and not ready(s))
    return Readiness(len(done), n, dict(others))


def models_ready(cluster: Cluster, namespace: str, n: int) -> Readiness:
    statuses = [i.get("status") or {} for i in cluster.items(namespace, "trainedmodels")]
    return _readiness(statuses, n, lambda s: s.get("phase") == "Ready" and bool(s.get("usedBy")))


def endpoints_ready(cluster: Cluster, namespace: str, n: int, model: str) -> Readiness:
    statuses = [i.get("status") or {} for i in cluster.items(namespace, "endpoints.kstudio.io")]
    return _readiness(statuses, n, lambda s: s.get("phase") == "Ready" and s.get("model") == model)


def idle_window(cluster: Cluster, seconds: float, operator: Operator | None) -> dict[str, Any]:
    before = cluster.requests()
    cpu0 = operator.cpu_seconds() if operator else 0.0
    time.sleep(seconds)
    after = cluster.requests()
    cpu = (operator.cpu_seconds() - cpu0) / seconds * 100 if operator else 0.0
    delta = after - before
    return {
        "kstudio_by_verb": {
            verb: round(v / seconds, 3) for (g, verb), v in sorted(delta.items()) if g == GROUP and v
        },
        "all_per_s": sum(delta.values()) / seconds,
        "cpu_pct": cpu,
        "rss_mb": operator.rss_mb() if operator else 0.0,
    }


class CreationProfile:
    """Where the time from the last create to all Ready goes, sampled every `every` seconds while the
    benchmark waits: the operator's CPU (% of one core) and its work queue (keys waiting, reconciles in
    flight), and the CPU of the cluster's control-plane processes (kube-apiserver, etcd, ...). A queue that
    stays deep with the operator at 100 % is the operator's bound; an empty queue with a busy API server
    is not."""

    def __init__(self, cluster: Cluster, op: Operator, every: float = 2.0) -> None:
        self.cluster, self.op, self.every = cluster, op, every
        self.rows: list[dict[str, Any]] = []
        self.last = 0.0
        self.start = time.monotonic()
        self.first = self._cpu()

    def _cpu(self) -> dict[str, float]:
        return {
            "operator": self.op.cpu_seconds() if self.op.running() else 0.0,
            **self.cluster.control_plane_cpu(),
        }

    def sample(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rows = self.op.samples()
            self.rows.append(
                {
                    "t": round(now - self.start, 1),
                    "cpu": self._cpu(),
                    "queued": self.op.metric("kstudio_operator_wakeups_pending", rows),
                    "in_flight": self.op.metric("kstudio_operator_reconciles_in_flight", rows),
                }
            )
        return True

    def summary(self) -> dict[str, Any]:
        """CPU % of one core of each process over the whole wait, the queue's largest depth and mean, and
        the series (every sample: seconds, operator CPU % since the previous one, queued, in flight)."""
        if not self.rows:
            return {}
        seconds = max(self.rows[-1]["t"], 1e-9)
        last = self.rows[-1]["cpu"]
        series = []
        before: dict[str, Any] = self.rows[0]
        for row in self.rows[1:]:
            dt = max(row["t"] - before["t"], 1e-9)
            op_pct = 100 * (row["cpu"]["operator"] - before["cpu"].get("operator", 0.0)) / dt
            series.append((row["t"], round(op_pct), row["queued"], row["in_flight"]))
            before = row
        return {
            "seconds": seconds,
            "cpu_pct": {k: round(100 * (v - self.first.get(k, 0.0)) / seconds, 1) for k, v in last.items()},
            "queued_max": max(r["queued"] for r in self.rows),
            "queued_mean": round(sum(r["queued"] for r in self.rows) / len(self.rows), 1),
            "series": series,
        }


def error_reasons(log: Path) -> dict[str, int]:
    """Failed reconciles by reason, from the operator's log ("<key>: reconcile failed (<reason>)")."""
    reasons: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if "reconcile failed (" in line:
            reason = line.split("reconcile failed (", 1)[1].rsplit(");", 1)[0]
            reasons[re.sub(r"/namespaces/[^/]+/.*?:", "/…:", reason)[:160]] += 1
    return dict(reasons.most_common(5))


def kstudio_writes(delta: Counter[tuple[str, str]]) -> int:
    return int(sum(v for (g, verb), v in delta.items() if g == GROUP and verb in WRITES))


def measure(
    cluster: Cluster,
    op: Operator,
    ns: str,
    n: int,
    docs: list[dict[str, Any]],
    ready: Any,
    idle: float,
    converge: dict[str, int],
    out: dict[str, Any],
    creation_only: bool = False,
) -> None:
    """Create `docs` (the operator running, or started once they all exist: out["order"] warm or cold),
    wait for `ready`, then (unless `creation_only`) the idle window, the baseline and the restart."""
    t0 = time.monotonic()
    create_objects(cluster, ns, docs)
    out["create_s"] = time.monotonic() - t0
    if out["order"] == "cold":
        op.start()
    started = time.monotonic()
    profile = CreationProfile(cluster, op)
    out["ready_s"] = wait_for(f"N={n} all Ready", lambda: profile.sample() and ready(), t0)
    out["ready_after_create_s"] = time.monotonic() - started
    out["creation_profile"] = profile.summary()
    out["errors"] = error_reasons(op.log)
    time.sleep(10)  # let the last status writes' watch events settle
    out["metrics_ready"] = op.summary()
    out["requests_per_object"] = round(op.metric("kstudio_operator_api_requests_total") / n, 2)
    if creation_only:
        return
    out["idle"] = idle_window(cluster, idle, op)
    if op.heap is not None:
        out["heap"] = op.heap_report()
    op.kill()
    out["baseline"] = idle_window(cluster, idle, None)  # the same window without the operator
    before = cluster.requests()
    op.start()
    out["restart_converged_s"] = op.wait_converged(converge)
    time.sleep(5)  # writes that trail the first pass would still count
    out["restart_client_writes"] = op.client_writes()
    out["restart_kstudio_writes"] = kstudio_writes(cluster.requests() - before)
    out["metrics_restart"] = op.summary()
    op.stop()
    out["failover"] = failover(cluster, ns, converge)
    op.start()
    op.wait_converged(converge)


def failover(cluster: Cluster, ns: str, converge: dict[str, int]) -> dict[str, float]:
    """Two replicas with leader election; once the leader converged, SIGKILL it: seconds until the other
    holds the Lease (takeover_s) and until its reconciles cover every object with none in flight or
    queued (converged_s)."""
    lease = f"{ns}/kstudio-operator"
    pair = [
        Operator(cluster, ns, LOGS / f"operator-{ns}-replica-{i}.log", None, "--leader-election", lease)
        for i in (1, 2)
    ]
    for replica in pair:
        replica.start()
    try:

        def leader() -> Operator | None:
            holder = cluster.kubectl("-n", ns, "get", "lease", "kstudio-operator", "-o",
                                     "jsonpath={.spec.holderIdentity}", check=False)  # fmt: skip
            return next((r for r in pair if r.proc and f"_{r.proc.pid}_" in holder), None)

        wait_for("a leader", leader, time.monotonic(), 120)
        first = leader()
        assert first is not None
        first.wait_converged(converge)
        other = next(r for r in pair if r is not first)
        time.sleep(5)  # the standby's watches deliver the leader's last writes
        rss = {"leader_rss_mb": round(first.rss_mb()), "standby_rss_mb": round(other.rss_mb())}
        before = cluster.requests()
        killed = time.monotonic()
        first.kill()
        takeover = wait_for("the other replica leads", lambda: leader() is other, killed, 120)
        converged = takeover + other.wait_converged(converge)
        time.sleep(5)  # writes that trail the first pass would still count
        writes = kstudio_writes(cluster.requests() - before)
        return {"takeover_s": round(takeover, 1), "converged_s": round(converged, 1), **rss, "writes": writes}
    finally:
        for replica in pair:
            replica.stop()


def cleanup(cluster: Cluster, op: Operator, ns: str) -> None:
    """Delete what is left with the operator running (it releases its finalizers: a namespace deleted
    without it stays Terminating and its controller's retries would pollute the next idle window)."""
    if not op.running():
        op.start()
    kinds = "experiments.kstudio.io," + KINDS
    cluster.kubectl("-n", ns, "delete", kinds, "--all", "--timeout=300s", check=False)
    op.stop()
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def run_size(
    cluster: Cluster,
    mode: str,
    n: int,
    docs: list[dict[str, Any]],
    ready: Callable[[str], Any],
    converge: dict[str, int],
    options: argparse.Namespace,
    order: str,
    then: Callable[[str, Operator, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One row: a fresh namespace and operator (started before the objects are created, `order` warm, or
    after, cold), `measure`, then `then` (mode-specific figures), then delete all; whatever happens,
    `cleanup`. `ready(namespace)` says when every object is Ready."""
    ns = f"kstudio-scale-{mode}-{n}"
    cluster.fresh_namespace(ns)
    op = Operator(cluster, ns, LOGS / f"operator-{mode}-{n}-{order}.log", heap=options.heap)
    out: dict[str, Any] = {"mode": mode, "n": n, "order": order, "load_average": os.getloadavg()}
    try:
        if options.failover_only:
            op.start()
            create_objects(cluster, ns, docs)
            wait_for(f"N={n} all Ready", lambda: ready(ns), time.monotonic())
            op.stop()
            out["failover"] = failover(cluster, ns, converge)
            out["load_average_end"] = os.getloadavg()
            return out
        if order == "warm":
            op.start()
            time.sleep(3)
            out["rss_empty_mb"] = op.rss_mb()
        measure(
            cluster, op, ns, n, docs, lambda: ready(ns), options.idle, converge, out, options.creation_only
        )
        if then is not None:
            then(ns, op, out)
        out["delete_s"] = cluster.delete_all(ns, KINDS, CHILDREN, SCORER_PODS)
        out["load_average_end"] = os.getloadavg()
    finally:
        cleanup(cluster, op, ns)
    return out


def run_models(
    cluster: Cluster, n: int, artifact: dict[str, str], options: argparse.Namespace, order: str
) -> dict[str, Any]:
    docs = [_manifest("TrainedModel", f"m-{i}", {"artifact": artifact}) for i in range(n)]
    docs += [
        _manifest("Endpoint", f"ep-{i}", {"webService": "svc", "model": f"m-{i}", "replicas": 0})
        for i in range(n)
    ]
    converge = {"TrainedModel": n, "Endpoint": n}
    ready = lambda ns: models_ready(cluster, ns, n)  # noqa: E731
    return run_size(cluster, "models", n, docs, ready, converge, options, order)


def run_endpoints(
    cluster: Cluster, n: int, artifacts: dict[str, dict[str, str]], options: argparse.Namespace, order: str
) -> dict[str, Any]:
    docs = [_manifest("TrainedModel", name, {"artifact": a}) for name, a in artifacts.items()]
    scorer = {"replicas": 1, "resources": {"cpu": "50m", "memory": "64Mi"}, "scheduling": ON_FAKE_NODES}
    docs += [_manifest("WebService", f"ws-{i}", {"model": "m-a", "scorer": scorer}) for i in range(n)]
    converge = {"TrainedModel": 2, "WebService": n, "Endpoint": n}

    def placement_and_patch(ns: str, op: Operator, out: dict[str, Any]) -> None:
        placed = Counter(
            str((p.get("spec") or {}).get("nodeName", "")).startswith("kwok-")  # type: ignore[union-attr]
            for p in cluster.items(ns, "pods")
        )
        out["pods_on_fake_nodes"] = f"{placed[True]}/{placed[True] + placed[False]}"
        out["endpoint_ready_after_create_s"] = ready_after_create(cluster.items(ns, "endpoints.kstudio.io"))
        # One endpoint's model patched while the other N-1 sit idle.
        wanted = artifacts["m-b"]["sha256"]
        t = time.monotonic()
        cluster.kubectl(
            "-n", ns, "patch", "webservice", "ws-0", "--type=merge", "-p", '{"spec":{"model":"m-b"}}'
        )

        def switched() -> bool:
            ep = json.loads(
                cluster.kubectl("-n", ns, "get", "endpoints.kstudio.io", "ws-0-default", "-o", "json")
            )
            return bool((ep.get("status") or {}).get("modelDigest") == wanted)

        out["patch_s"] = wait_for("ws-0 on m-b", switched, t, 300)
        out["metrics_patch"] = op.summary()

    def ready(ns: str) -> Readiness:
        return endpoints_ready(cluster, ns, n, "m-a")

    return run_size(cluster, "endpoints", n, docs, ready, converge, options, order, placement_and_patch)


def ready_after_create(items: list[Any]) -> dict[str, float]:
    """Seconds from each object's creation to its Ready condition turning True (both to the second, as
    the API server and the status write them): median, 90th percentile and max. How long a new object
    is on its way, i.e. what a settle time (KSTUDIO_SETTLE_SECONDS) would have to cover."""

    def at(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    waits = []
    for item in items:
        created = (item.get("metadata") or {}).get("creationTimestamp")
        ready = next(
            (c for c in (item.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        if created and ready.get("status") == "True" and ready.get("lastTransitionTime"):
            waits.append(at(ready["lastTransitionTime"]) - at(created))
    if not waits:
        return {}
    waits.sort()
    return {
        "median": waits[len(waits) // 2],
        "p90": waits[int(len(waits) * 0.9)],
        "max": waits[-1],
    }


def job_to_status_delay(cluster: Cluster, work: Path) -> float | None:
    """Seconds from the penguins training Job's Complete condition to the Experiment's run Succeeded."""
    ns = "kstudio-scale-exp"
    cluster.fresh_namespace(ns)
    subprocess.run(
        [str(KSTUDIO_DEV), "upload-examples"],
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
        cleanup(cluster, op, ns)


def build_ilearner(path: Path, seed: int = 0) -> str:
    """One small real .ilearner (logistic regression on two columns); its sha256."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
    from kstudio_trainer.artifact_writer import write_ilearner

    x = np.random.default_rng(seed).normal(size=(60, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name="x1", type="number"), ColumnSpec(name="x2", type="number")],
        classes=[0, 1],
    )
    return write_ilearner(path, model, manifest).sha256


def _requests_by_verb(row: dict[str, Any]) -> dict[str, float]:
    """The operator's API requests until Ready, by verb and resource, per object created."""
    metrics = row.get("metrics_ready") or {}
    return {
        key.removeprefix("api_requests_total"): round(value / row["n"], 2)
        for key, value in sorted(metrics.items())
        if key.startswith("api_requests_total[") and value
    }


def print_failover_table(rows: list[dict[str, Any]]) -> None:
    print("| N | takeover s | converged s | writes | RSS MB leader / standby | load average |")
    print("|---" * 6 + "|")
    for r in rows:
        f, loads = r["failover"], (r["load_average"][0], r["load_average_end"][0])
        print(
            f"| {r['n']} | {f['takeover_s']} | {f['converged_s']} | {f['writes']} | "
            f"{f['leader_rss_mb']} / {f['standby_rss_mb']} | {loads[0]:.1f}-{loads[1]:.1f} |"
        )


def print_table(rows: list[dict[str, Any]]) -> None:
    if "idle" not in rows[0]:  # --creation-only
        print("| N | order | all Ready s (after the last create) | operator requests per object |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['n']} | {r['order']} | {r['ready_s']:.1f} ({r['ready_after_create_s']:.1f}) | "
                  f"{r['requests_per_object']:.2f} |")  # fmt: skip
        print_creation(rows)
        return
    endpoints = rows[0]["mode"] == "endpoints"
    extra = " patch s | pods on fake nodes |" if endpoints else ""
    print(
        "| N | order | all Ready s (after the last create; cold: after the operator's start) | operator "
        "requests per object while creating | idle kstudio.io req/s | idle all req/s (operator - baseline) | "
        "CPU % | RSS MB (empty) | restart converged s | restart writes (client / kstudio.io at API server) | "
        f"failover s (takeover / converged) |{extra} delete all s | load average |"
    )
    print("|---" * (15 if endpoints else 13) + "|")
    for r in rows:
        idle, base = r["idle"], r["baseline"]
        kst = sum(idle["kstudio_by_verb"].values())
        more = f" {r['patch_s']:.1f} | {r['pods_on_fake_nodes']} |" if endpoints else ""
        empty = f" ({r['rss_empty_mb']:.0f})" if "rss_empty_mb" in r else ""
        since = f" ({r['ready_after_create_s']:.1f})"
        loads = r["load_average"][0], r.get("load_average_end", r["load_average"])[0]
        print(
            f"| {r['n']} | {r['order']} | {r['ready_s']:.1f}{since} | {r['requests_per_object']:.1f} | "
            f"{kst:.2f} {idle['kstudio_by_verb']} | {idle['all_per_s'] - base['all_per_s']:.2f} | "
            f"{idle['cpu_pct']:.1f} | {idle['rss_mb']:.0f}{empty} | {r['restart_converged_s']:.1f} | "
            f"{r['restart_client_writes']} / {r['restart_kstudio_writes']} | {r['failover']['takeover_s']} / "
            f"{r['failover']['converged_s']} |{more} {r['delete_s']:.1f} | "
            f"{loads[0]:.1f}-{loads[1]:.1f} |"
        )
    print_creation(rows)
    print_heaps(rows)


def print_creation(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if p := r.get("creation_profile"):
            busiest = ", ".join(
                f"{k} {v}" for k, v in sorted(p["cpu_pct"].items(), key=lambda kv: -kv[1])[:6]
            )
            print(
                f"\ncreation N={r['n']} {r['order']}: {p['seconds']:.0f} s from the last create to Ready; "
                f"CPU % of one core: {busiest}; operator queue max {p['queued_max']:.0f}, mean "
                f"{p['queued_mean']}; requests by verb {_requests_by_verb(r)}"
            )
            print("  (s, operator CPU %, queued, in flight): " + " ".join(map(str, p["series"])))
        if waits := r.get("endpoint_ready_after_create_s"):
            print(f"  an Endpoint's creation to its Ready, s: {waits}")


def print_heaps(rows: list[dict[str, Any]]) -> None:
    heaps = [r for r in rows if "heap" in r]
    for r in heaps:
        h = r["heap"]
        print(
            f"\nheap N={r['n']} {r['order']}: RSS {h['rss_mb']} MB, after malloc_trim "
            f"{h.get('rss_after_trim_mb')} MB, traced {h.get('traced_mb')} MB (peak "
            f"{h.get('traced_peak_mb')}), gc objects {h['gc_objects']}, tasks {h['tasks']}"
        )
        for module, kb in list((h.get("traced_by_module_kb") or {}).items())[:12]:
            print(f"  {kb / 1024:7.1f} MB  {module}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("models", "endpoints"), default="models")
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument(
        "--orders",
        default="warm,cold",
        help="warm: the operator runs before the objects are created; cold: it starts once they exist",
    )
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle window")
    parser.add_argument("--no-job-delay", action="store_true", help="skip the Job -> Experiment figure")
    parser.add_argument(
        "--heap",
        type=int,
        default=None,
        metavar="FRAMES",
        help="run the operator under bench/operator_heap.py (tracemalloc with FRAMES frames, 0: none) and "
        "print where its memory goes after the idle window",
    )
    parser.add_argument(
        "--creation-only",
        action="store_true",
        help="measure the creation (requests per object, Ready time and where it goes) and skip the idle "
        "windows, restart and failover",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of every operator started (e.g. KSTUDIO_WORKERS=16); repeatable",
    )
    parser.add_argument(
        "--failover-only", action="store_true", help="per size only the failover figure (module docstring)"
    )
    parser.add_argument("--cluster-root", type=Path, default=None, help="a private cluster instance's root")
    args = parser.parse_args()
    OPERATOR_ENV.update({name: value for name, _, value in (i.partition("=") for i in args.operator_env)})
    cluster = Cluster(args.cluster_root)
    LOGS.mkdir(exist_ok=True)
    print(f"operator logs: {LOGS}", flush=True)
    if args.mode == "endpoints" and not cluster.names("default", "nodes", "type=kwok"):
        raise SystemExit("no fake nodes: start the cluster with `kstudio-dev cluster up --fake-nodes 10`")

    with tempfile.TemporaryDirectory(prefix="kstudio-scale-") as tmp:
        work = Path(tmp)
        artifacts = {}
        for seed, name in enumerate(("m-a", "m-b")):
            sha = build_ilearner(work / f"{name}.ilearner", seed)
            uri = f"s3://models/scale/{name}.ilearner"
            cluster.store().upload(work / f"{name}.ilearner", uri)
            artifacts[name] = {"uri": uri, "sha256": sha}
        rows = []
        for n in (int(s) for s in args.sizes.split(",")):
            for order in ["cold"] if args.failover_only else args.orders.split(","):
                if args.mode == "models":
                    row = run_models(cluster, n, artifacts["m-a"], args, order)
                else:
                    row = run_endpoints(cluster, n, artifacts, args, order)
                rows.append(row)
                print(json.dumps(row), flush=True)
        delay = None
        if args.failover_only:
            print()
            print_failover_table(rows)
            return 0
        if args.mode == "models" and not args.no_job_delay:
            delay = job_to_status_delay(cluster, work)
    print()
    print_table(rows)
    if delay is not None:
        print(f"\nJob Complete -> Experiment run Succeeded: {delay:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
