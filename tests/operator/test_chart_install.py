"""The Helm chart, for real: `helm lint`, `helm template`, then `helm install` into a restricted namespace of
the local cluster, where the operator runs as the chart's Deployment (two pods, one holding the leader
Lease, with the chart's ServiceAccount and RBAC) and trains the penguins Experiment to a Ready
TrainedModel; `helm uninstall` at the end removes the cluster-scoped objects too."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch_kit import PENGUIN_ROWS, score_penguins
from operator_support import REPO, Kubectl, experiment_manifest, wait_until
from test_experiment_runs import run_done

from fixtures.operator_process import allowed_patterns, fail_on, operator_problems, reconcile_outcomes
from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "kstudio"
RELEASE = "kstudio"


class Helm:
    """The helm binary built by hack/build-binaries.sh, against the local cluster, with its own homes."""

    def __init__(self, cluster: Any, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = cluster.env() | {
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, (
                f"helm {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def chart_values(namespace: str, pod_endpoint: str) -> list[str]:
    """What a user sets on this cluster: the local image, MinIO as pods reach it (no cluster DNS here),
    one watched namespace (other tests run their own operators on the same cluster)."""
    return [
        "--set",
        "image.repository=kstudio",
        "--set",
        "image.tag=dev",
        "--set",
        f"storage.endpoint={pod_endpoint}",
        "--set",
        f"operator.watchNamespaces={{{namespace}}}",
    ]


def test_chart_lints_renders_installs_and_trains_in_cluster(
    kube: Kubectl,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
    helm_binary: Path,
    request: pytest.FixtureRequest,
    example_data: Any,
) -> None:
    helm = Helm(local_cluster, helm_binary, tmp_path / "helm")
    assert helm("version", "--short").stdout.startswith("v4.3.1")
    values = chart_values(namespace, local_cluster.minio.pod_endpoint)

    lint = helm("lint", "--strict", str(CHART), "--namespace", namespace, *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout, lint.stdout

    rendered = helm("template", RELEASE, str(CHART), "--namespace", namespace, *values).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert by_kind["Deployment"]["spec"]["replicas"] == 2
    scoped = f"{RELEASE}-{namespace}-operator"
    assert by_kind["ClusterRole"]["metadata"]["name"] == scoped
    assert by_kind["ClusterRoleBinding"]["roleRef"]["name"] == scoped
    for rule in by_kind["ClusterRole"]["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        if "secrets" in rule["resources"]:  # endpoint keys: created, one patched in on rotation, never read
            assert sorted(rule["verbs"]) == ["create", "patch"], rule
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "kstudio:dev"
    assert f"--namespace={namespace}" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KSTUDIO_S3_ENDPOINT"] == env["KSTUDIO_S3_POD_ENDPOINT"] == local_cluster.minio.pod_endpoint

    labels = json.loads(local_cluster.kubectl("get", "namespace", namespace, "-o", "json").stdout)["metadata"]
    assert labels["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    installed = False
    try:
        # The Secret the chart's README asks for (accessKey, secretKey): the `namespace` fixture's kstudio-s3.
        helm("install", RELEASE, str(CHART), "--namespace", namespace, *values)
        installed = True
        kube.run("rollout", "status", "deployment/kstudio-operator", "--timeout=120s")
        pods = kube.items("pods", "app.kubernetes.io/component=operator")
        assert len(pods) == 2  # one leads, one waits; both are Ready (healthy)
        for pod in pods:
            ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", pod["status"]
            assert pod["spec"]["serviceAccountName"] == "kstudio-operator"
            assert pod["spec"]["securityContext"]["runAsUser"] == 65532
        leader = wait_until("a leader", lambda: leader_pod(kube, pods), timeout=60)
        standby = next(p for p in pods if p["metadata"]["name"] != leader["metadata"]["name"])

        assert kube.apply(experiment_manifest()).returncode == 0
        run = wait_until("run 1 of penguins (operator in-cluster)", lambda: run_done(kube, 1), timeout=150)
        assert run["phase"] == "Succeeded", (run, operator_log(kube, leader))
        kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=60s")
        model = kube.get("trainedmodel", "penguins-1")
        assert model is not None and model["status"]["phase"] == "Ready"
        assert model["status"]["metrics"]["accuracy"] > 0.8

        # The same operator serves it: WebService → default Endpoint → scorer Deployment, Service, keys.
        service = {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "WebService",
            "metadata": {"name": "svc"},
            "spec": {"model": "penguins-1"},
        }
        assert kube.apply(json.dumps(service)).returncode == 0

        def serving() -> dict[str, Any] | None:
            status = kube.status("endpoint", "svc-default")
            return status if status.get("phase") == "Ready" and status.get("model") == "penguins-1" else None

        served = wait_until("svc-default serving penguins-1 (operator in-cluster)", serving, timeout=180)
        assert served["modelDigest"] == model["spec"]["artifact"]["sha256"], (
            served,
            operator_log(kube, leader),
        )
        assert kube.get("secret", "svc-default-keys") is not None
        # And runs a BatchJob: its Indexed Job, one shard pod, the output published, under the chart's RBAC.
        created = time.monotonic()
        batch, _ = score_penguins(kube, example_data, namespace, "penguin-scores")
        print(
            f"BatchJob penguin-scores {batch['phase']} {time.monotonic() - created:.1f} s after its creation"
        )
        assert batch["phase"] == "Succeeded", (batch, operator_log(kube, leader))
        assert batch["rows"]["scored"] + batch["rows"]["rejected"] == PENGUIN_ROWS
        assert batch["modelDigest"] == model["spec"]["artifact"]["sha256"]
        # The in-cluster operator did it (it alone watches this fresh namespace): its pod's log shows our
        # handlers processing the Experiment, and it never lacked a permission.
        log = operator_log(kube, leader)
        assert "Handler 'experiment_changed' succeeded" in log, log
        for pod in (leader, standby):
            assert "Forbidden" not in operator_log(kube, pod), operator_log(kube, pod)
        # Its metrics, as Prometheus scrapes each pod behind the chart's Service; the standby's say it waits.
        service = kube.get("service", "kstudio-operator-metrics")
        assert service is not None and service["spec"]["ports"][0]["port"] == 9090
        scraped = metrics_of(local_cluster, leader)
        assert scraped["kstudio_operator_leader"] == 1
        assert metrics_of(local_cluster, standby)["kstudio_operator_leader"] == 0
        assert scraped['kstudio_operator_reconciles_total{kind="Experiment",outcome="ok"}'] >= 1
        requests = {k: v for k, v in scraped.items() if k.startswith("kstudio_operator_api_requests_total{")}
        assert sum(v for k, v in requests.items() if 'verb="POST"' in k) >= 1  # by resource: Job, Secret, ...
        assert scraped['kstudio_operator_loops{kind="Endpoint"}'] == 1
        assert 'kstudio_operator_endpoint_rollouts{state="stalled"}' in scraped
        # Checked like every operator of the suite (fixtures/operator_process.py), from what an admin sees
        # of each replica: its pod's restarts, its log, its metrics.
        problems = []
        for pod in kube.items("pods", "app.kubernetes.io/component=operator"):
            restarts = sum(int(s.get("restartCount") or 0) for s in pod["status"]["containerStatuses"])
            exits = [f"restarted {restarts} times in its pod"] if restarts else []
            outcomes = reconcile_outcomes(metrics_text(local_cluster, pod))
            found = operator_problems(operator_log(kube, pod, -1), outcomes, exits, allowed_patterns(request))
            problems += [f"{pod['metadata']['name']}: {p}" for p in found]
        fail_on(problems, operator_log(kube, leader, 80))
        # Foreground: the WebService is gone only once its default Endpoint is. In the background the
        # garbage collector may still hold that Endpoint when the Experiment goes, and the Experiment's
        # cleanup then keeps penguins-1 as in use (ModelKept), as documented.
        kube.run("delete", "batchjob", "penguin-scores", "--timeout=60s")
        kube.run("delete", "webservice", "svc", "--cascade=foreground", "--timeout=90s")
        kube.run("delete", "experiment", "penguins", "--timeout=60s")
        wait_until("TrainedModel penguins-1 deleted", lambda: kube.get("trainedmodel", "penguins-1") is None)

        helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "60s")
        installed = False
        gone = local_cluster.kubectl("get", "clusterrole,clusterrolebinding", scoped, check=False)
        assert "NotFound" in gone.stderr, gone
    finally:
        kube.release_finalizers(
            "batchjobs", "webservices", "endpoints.kstudio.io", "experiments", "trainedmodels"
        )
        if installed:
            helm("uninstall", RELEASE, "--namespace", namespace, "--timeout", "60s", check=False)
        local_cluster.kubectl(
            "delete", "clusterrole,clusterrolebinding", scoped, "--ignore-not-found", check=False
        )


def operator_log(kube: Kubectl, pod: dict[str, Any] | None = None, lines: int = 400) -> str:
    which = f"pod/{pod['metadata']['name']}" if pod else "deployment/kstudio-operator"
    return kube.run("logs", which, f"--tail={lines}", check=False).stdout


def leader_pod(kube: Kubectl, pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The operator pod holding the Lease (its identity starts with the pod's name, its hostname)."""
    holder = ((kube.get("lease", "kstudio-operator") or {}).get("spec") or {}).get("holderIdentity") or ""
    return next((p for p in pods if holder.startswith(p["metadata"]["name"] + "_")), None)


def metrics_text(cluster: Any, pod: dict[str, Any]) -> str:
    """The pod's /metrics page, as Prometheus scrapes it."""
    ip = pod["status"]["podIP"]
    code, text = netns.http_request(cluster.info.layout.netns, "GET", f"http://{ip}:9090/metrics")
    assert code == 200, text
    return text


def metrics_of(cluster: Any, pod: dict[str, Any]) -> dict[str, float]:
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in metrics_text(cluster, pod).splitlines()
        if line[:1] != "#"
    }
