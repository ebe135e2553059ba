"""Two operator replicas with leader election (`--leader-election`): one reconciles, the other stands by
hot (its watches fill its caches) and writes nothing; SIGKILL the leader during a training run or a model
rollout and the other takes over and finishes it once (one Job, one TrainedModel, one Deployment, one
rollout record), and reconciles what changed while nobody led."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_support import (
    Kubectl,
    OperatorProcess,
    experiment_manifest,
    import_model,
    manifest,
    operator_env,
    wait_until,
)
from serving_kit import build_model
from test_experiment_runs import run_done, runs
from test_operator_writes import operator_writes

from fixtures.operator_process import allowed_patterns, fail_on

pytestmark = pytest.mark.cluster

LEASE = "kstudio-operator"
# What kopf wrote on our objects while deletion was its on.delete handler (its diff-base and a progress
# record of the TrainedModel's `guard`).
KOPF_ANNOTATIONS = {
    "operator.kstudio.io/last-handled-configuration": '{"spec":{}}',
    "operator.kstudio.io/guard": '{"started":"2026-12-01T00:00:00.000000+00:00","retries":1}',
}
ON_KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


class Replica(OperatorProcess):
    """One replica: `kstudio operator --leader-election <ns>/kstudio-operator` with its own /metrics."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path) -> None:
        super().__init__(env, namespace, log_path, args=("--leader-election", f"{namespace}/{LEASE}"))

    def metrics(self) -> dict[str, float]:
        """Its /metrics samples, by name and labels (none while it starts)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        return {
            line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line[:1] != "#"
        }

    def requests_sent(self) -> dict[str, float]:
        """API requests its client sent, by resource (the Lease's own included)."""
        sent: dict[str, float] = {}
        for sample, value in self.metrics().items():
            if sample.startswith("kstudio_operator_api_requests_total{"):
                resource = sample.split('resource="', 1)[1].split('"', 1)[0]
                sent[resource] = sent.get(resource, 0.0) + value
        return sent

    def cached(self) -> dict[str, int]:
        """The kstudio objects its cache holds, by kind (kstudio_operator_loops; kinds with none left out)."""
        prefix = 'kstudio_operator_loops{kind="'
        return {
            sample[len(prefix) :].split('"', 1)[0]: int(value)
            for sample, value in self.metrics().items()
            if sample.startswith(prefix) and value
        }


def holder(kube: Kubectl) -> str:
    return str(((kube.get("lease", LEASE) or {}).get("spec") or {}).get("holderIdentity") or "")


def leading(kube: Kubectl, replicas: list[Replica]) -> Replica | None:
    """The replica whose identity (<host>_<pid>_<random>) holds the Lease."""
    who = holder(kube)
    return next((r for r in replicas if r.proc is not None and f"_{r.proc.pid}_" in who), None)


@pytest.fixture
def unstarted_replicas(
    local_cluster: Any,
    namespace: str,
    kube: Kubectl,
    tmp_path: Path,
    example_data: Any,
    request: pytest.FixtureRequest,
) -> Iterator[list[Replica]]:
    """Two replicas for the test to start, checked at teardown like the `operator` fixture's (the SIGKILL
    is the test's own)."""
    pair = [Replica(operator_env(local_cluster), namespace, tmp_path / f"replica-{i}.log") for i in (1, 2)]
    try:
        yield pair
    finally:
        # Deletion needs a running operator (finalizers): keep one, or start one again.
        if not any(r.running for r in pair):
            pair[0].start()
        marks = [r.cleanup_mark() for r in pair]
        for kind in ("webservices", "endpoints", "experiments", "trainedmodels"):
            kube.run("delete", kind, "--all", "--wait=false", check=False)
        for kind in ("experiments", "trainedmodels"):
            kube.run("wait", "--for=delete", kind, "--all", "--timeout=60s", check=False)
        for replica in pair:
            replica.stop()
        kube.release_finalizers("experiments", "trainedmodels", "webservices", "endpoints")
        allowed = allowed_patterns(request)
        problems = [
            f"{one.log_path.name}: {p}"
            for one, mark in zip(pair, marks, strict=True)
            for p in one.problems(allowed, mark)
        ]
        fail_on(problems, "\n".join(f"--- {r.log_path.name}\n{r.log_tail(40)}" for r in pair))


@pytest.fixture
def replicas(unstarted_replicas: list[Replica]) -> list[Replica]:
    for replica in unstarted_replicas:
        replica.start()
    return unstarted_replicas


def standing_by_hot(standby: Replica, leader: Replica) -> None:
    """The standby's cache holds what the leader's does, it says it does not lead, and its client has
    sent no request but for the Lease."""
    wait_until(
        "the standby's cache to hold what the leader's does",
        lambda: (held := standby.cached()) and held == leader.cached(),
        timeout=60,
    )
    assert standby.metrics()["kstudio_operator_leader"] == 0
    sent = standby.requests_sent()
    assert set(sent) == {"leases"}, sent


def kill_leader(kube: Kubectl, replicas: list[Replica]) -> Replica:
    """SIGKILL the leader while the other one stands by hot (standing_by_hot); returns the other, once it
    holds the Lease."""
    leader = wait_until("a leader", lambda: leading(kube, replicas), timeout=60)
    standby = next(r for r in replicas if r is not leader)
    standing_by_hot(standby, leader)
    leader.kill()
    wait_until("the standby takes over", lambda: leading(kube, replicas) is standby, timeout=60)
    return standby


def test_killing_the_leader_mid_run_lets_the_other_replica_finish_it_once(
    kube: Kubectl, replicas: list[Replica]
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    wait_until("Job penguins-run-1", lambda: kube.get("job", "penguins-run-1"), timeout=90, interval=0.2)
    kill_leader(kube, replicas)

    first = wait_until("run 1 recorded by the new leader", lambda: run_done(kube, 1), timeout=240)
    assert (first["phase"], first["trainedModel"]) == ("Succeeded", "penguins-1")
    kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=60s")
    jobs = kube.items("jobs", "kstudio.io/experiment=penguins")
    assert [j["metadata"]["name"] for j in jobs] == ["penguins-run-1"]
    assert [m["metadata"]["name"] for m in kube.items("trainedmodels")] == ["penguins-1"]
    assert [r["run"] for r in runs(kube)] == [1]


def test_killing_the_leader_mid_rollout_lets_the_other_replica_finish_it_once(
    kube: Kubectl,
    replicas: list[Replica],
    fake_nodes: list[str],
    example_data: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    digests = {}
    for name, flip in (("m-a", False), ("m-b", True)):
        digests[name] = build_model(tmp_path / f"{name}.ilearner", flip=flip)
        import_model(kube, example_data, namespace, tmp_path / f"{name}.ilearner", digests[name], name)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-a", "trainedmodel/m-b", "--timeout=60s")
    spec = {"model": "m-a", "scorer": {"replicas": 2, "scheduling": ON_KWOK}}
    assert kube.apply(manifest("WebService", "svc", spec)).returncode == 0

    def serving(model: str) -> dict[str, Any] | None:
        status = kube.status("endpoint", "svc-default")
        return status if status.get("phase") == "Ready" and status.get("model") == model else None

    wait_until("svc-default serving m-a", lambda: serving("m-a"), timeout=120)
    kube.run("patch", "webservice", "svc", "--type=merge", "-p", '{"spec":{"model":"m-b"}}')
    wait_until(
        "the rollout to m-b under way",
        lambda: (kube.status("endpoint", "svc-default").get("rollout") or {}).get("to") == "m-b",
        timeout=60,
        interval=0.1,
    )
    kill_leader(kube, replicas)

    done = wait_until("svc-default serving m-b after the failover", lambda: serving("m-b"), timeout=180)
    assert done["modelDigest"] == digests["m-b"]
    assert [d["metadata"]["name"] for d in kube.items("deployments")] == ["svc-default"]
    rollouts = [r for r in done.get("history") or [] if r.get("to") == "m-b"]
    assert len(rollouts) == 1 and rollouts[0]["from"] == "m-a", done.get("history")
    assert [e["metadata"]["name"] for e in kube.items("endpoints.kstudio.io")] == ["svc-default"]


def test_a_hot_standby_writes_nothing_and_reconciles_what_changed_while_nobody_led(
    kube: Kubectl,
    unstarted_replicas: list[Replica],
    example_data: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    first, second = unstarted_replicas
    # The Lease held by someone else who writes nothing (this test): any write is the standby's.
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600},
    }
    assert kube.apply(json.dumps(lease)).returncode == 0
    first.start()
    sha = build_model(tmp_path / "m.ilearner", flip=False)
    import_model(kube, example_data, namespace, tmp_path / "m.ilearner", sha, "m")
    # A model as an earlier version left it: our finalizer, and the annotations kopf kept when deletion
    # was its on.delete handler (a kopf that removed "its" finalizer from it would write).
    old = json.loads(manifest("TrainedModel", "old", (kube.get("trainedmodel", "m") or {})["spec"]))
    old["metadata"] |= {"finalizers": ["kstudio.io/finalizer"], "annotations": KOPF_ANNOTATIONS}
    assert kube.apply(json.dumps(old)).returncode == 0
    spec = {"model": "m", "scorer": {"replicas": 0}}
    assert kube.apply(manifest("WebService", "svc", spec)).returncode == 0
    before = operator_writes(local_cluster)
    cached = {"TrainedModel": 2, "WebService": 1}
    wait_until("the standby to cache them", lambda: first.cached() == cached, 60)
    time.sleep(3)  # it handles a watch event in milliseconds: what it would write, it would have by now
    assert operator_writes(local_cluster) - before == Counter()
    model = kube.get("trainedmodel", "m") or {}
    assert not model["metadata"].get("finalizers") and not model.get("status"), model  # not even those
    kept = (kube.get("trainedmodel", "old") or {})["metadata"]
    assert kept["finalizers"] == ["kstudio.io/finalizer"], kept
    assert KOPF_ANNOTATIONS.items() <= kept["annotations"].items(), kept
    assert kube.get("endpoint.kstudio.io", "svc-default") is None
    assert set(first.requests_sent()) == {"leases"}
    assert first.metrics()["kstudio_operator_leader"] == 0

    # Released: the standby takes the Lease and reconciles everything it holds.
    kube.run("patch", "lease", LEASE, "--type=merge", "-p", '{"spec":{"holderIdentity":null}}')
    wait_until("the first replica to lead", lambda: leading(kube, unstarted_replicas) is first, 30)

    def serving(name: str) -> bool:
        status = kube.status("endpoint.kstudio.io", name)
        return status.get("phase") == "Ready" and status.get("model") == "m"

    wait_until("svc-default serving m", lambda: serving("svc-default"), 120)
    model = kube.get("trainedmodel", "m") or {}
    assert model["metadata"].get("finalizers") == ["kstudio.io/finalizer"]

    # A second replica stands by hot; the leader dies; an Endpoint is made before anyone leads again.
    second.start()
    standing_by_hot(second, first)
    first.kill()
    assert kube.apply(manifest("Endpoint", "ep", {"webService": "svc", "model": "m"})).returncode == 0
    wait_until("the second replica to lead", lambda: leading(kube, unstarted_replicas) is second, 60)
    wait_until("ep serving m", lambda: serving("ep"), 60)
    assert (kube.get("trainedmodel", "old") or {})["metadata"]["finalizers"] == ["kstudio.io/finalizer"]
    users = ["Endpoint/ep", "Endpoint/svc-default", "WebService/svc"]
    wait_until("m used by all three", lambda: kube.status("trainedmodel", "m").get("usedBy") == users, 30)
