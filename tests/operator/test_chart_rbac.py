"""The chart's ClusterRole is enough: the operator runs a whole training run with only that role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import REPO, Kubectl, OperatorProcess, experiment_manifest, operator_env, wait_until
from test_experiment_runs import run_done

pytestmark = pytest.mark.cluster


def render_rbac(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """charts/kstudio/templates/{serviceaccount,rbac}.yaml, rendered for the few expressions they use.
    Cluster-scoped names get a per-test suffix so concurrent sessions never share a role."""
    docs: list[dict[str, Any]] = []
    for name in ("serviceaccount.yaml", "rbac.yaml"):
        text = (REPO / "charts" / "kstudio" / "templates" / name).read_text()
        text = "\n".join(line for line in text.splitlines() if "include" not in line)
        text = text.replace("{{ .Release.Namespace }}", namespace)
        text = text.replace("{{ .Values.serviceAccount.name }}", "kstudio-operator")
        docs += [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        doc["metadata"].pop("labels", None)
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            doc["metadata"]["name"] = f"kstudio-operator-{suffix}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"kstudio-operator-{suffix}"
    return docs


def test_operator_works_with_only_the_charts_rbac(
    kube: Kubectl, local_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    suffix = namespace[-6:]
    docs = render_rbac(namespace, suffix)
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert {d["kind"] for d in docs} == kinds  # the Role: the leader-election Lease
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == f"kstudio-operator-{suffix}"
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "kstudio-operator",
        "namespace": namespace,
    }
    manifest = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    local_cluster.kubectl("apply", "-f", "-", input=manifest)
    proc = None
    try:
        token = local_cluster.kubectl("-n", namespace, "create", "token", "kstudio-operator").stdout.strip()
        admin = json.loads(local_cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        admin["users"] = [{"name": "operator", "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = "operator"
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(json.dumps(admin))
        env = operator_env(local_cluster) | {"KUBECONFIG": str(kubeconfig)}
        proc = OperatorProcess(env, namespace, tmp_path / "operator.log")
        proc.start()

        assert kube.apply(experiment_manifest()).returncode == 0
        run = wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
        assert run["phase"] == "Succeeded", run
        kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=60s")
        assert any(e["reason"] == "RunSucceeded" for e in kube.events("penguins"))

        # An Endpoint whose keys Secret exists already (an operator created it and died before its status
        # said so): taken as it is, without reading it (the role cannot).
        keys = {"primaryKey": "k1" * 16, "secondaryKey": "k2" * 16}
        kube.run(
            "create",
            "secret",
            "generic",
            "svc-default-keys",
            *(f"--from-literal={k}={v}" for k, v in keys.items()),
        )
        service = {"apiVersion": "kstudio.io/v1alpha1", "kind": "WebService", "metadata": {"name": "svc"}}
        assert kube.apply(json.dumps(service | {"spec": {"model": "penguins-1"}})).returncode == 0
        wait_until(
            "svc-default's status names its keys Secret",
            lambda: kube.status("endpoint", "svc-default").get("keysSecret") == "svc-default-keys",
            timeout=60,
        )
        kube.run("delete", "webservice", "svc", "--timeout=60s")
        kube.run("delete", "experiment,trainedmodel", "--all", "--timeout=60s")
        assert "Forbidden" not in proc.log_tail(400), proc.log_tail(60)
    finally:
        if proc is not None:
            proc.stop()
        kube.release_finalizers("experiments", "trainedmodels", "webservices", "endpoints")
        local_cluster.kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            f"kstudio-operator-{suffix}",
            "--ignore-not-found",
            check=False,
        )
