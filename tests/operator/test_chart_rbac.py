"""The chart's ClusterRole is enough: the operator runs a whole training run with only that role, as its
ServiceAccount; when that token is revoked and replaced, its client logs in again on the 401."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import REPO, Kubectl, OperatorProcess, experiment_manifest, operator_env, wait_until
from test_experiment_runs import run_done

from fixtures.operator_process import allowed_patterns, fail_on

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


def test_operator_works_with_only_the_charts_rbac_and_logs_in_again_when_its_token_is_rotated(
    kube: Kubectl, local_cluster: Any, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
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
    # A canary reads its scorer pods' /metrics through the API server: GET through pods/proxy, and no more
    # (POST through it would reach the scoring routes).
    account = f"system:serviceaccount:{namespace}:kstudio-operator"
    for verb, allowed in (("get", "yes"), ("create", "no")):
        can = kube.run("auth", "can-i", verb, "pods", "--subresource=proxy", f"--as={account}", check=False)
        assert can.stdout.strip() == allowed, (verb, can.stdout, can.stderr)
    proc = None
    kubeconfig = tmp_path / "operator.kubeconfig"
    admin = json.loads(local_cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)

    def issue_token(holder: str) -> str:
        """A token of the chart's ServiceAccount, valid while the Secret `holder` exists (so the test can
        revoke it), written into the operator's kubeconfig as a rotation would."""
        kube.run("create", "secret", "generic", holder)
        token = kube.run(
            "create",
            "token",
            "kstudio-operator",
            "--bound-object-kind=Secret",
            f"--bound-object-name={holder}",
        ).stdout.strip()
        admin["users"] = [{"name": "operator", "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = "operator"
        kubeconfig.write_text(json.dumps(admin))
        (tmp_path / f"{holder}.kubeconfig").write_text(json.dumps(admin))
        return token

    try:
        issue_token("token-holder-1")
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

        # The token is rotated: the old one is revoked, the kubeconfig holds a new one. The operator's
        # client gets 401 on its next request and logs in again (kopf's watches too, on theirs).
        issue_token("token-holder-2")
        kube.run("delete", "secret", "token-holder-1")
        old = f"--kubeconfig={tmp_path / 'token-holder-1.kubeconfig'}"
        wait_until(
            "the old token refused",
            lambda: "Unauthorized" in kube.run("get", "experiments", old, check=False).stderr,
            timeout=60,
        )
        typo = experiment_manifest(
            "typo", algorithm={"name": "RandomForestClassifier", "params": {"n_estimatorz": 5}}
        )
        assert kube.apply(typo).returncode == 0
        wait_until(
            "typo Invalid (written with the new token)",
            lambda: kube.status("experiment", "typo").get("phase") == "Invalid",
            60,
        )
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
    fail_on(proc.problems(allowed_patterns(request)), proc.log_tail(80))
