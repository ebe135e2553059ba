"""The Helm chart: least-privilege RBAC (no wildcards, no Secrets) and a restricted operator pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "kstudio"


def _docs(template: str) -> list[dict[str, Any]]:
    # Drop template-only lines ({{- include ... }}); the rest of our templates is plain YAML.
    text = "\n".join(
        line for line in (CHART / "templates" / template).read_text().splitlines() if "{{" not in line
    )
    return [d for d in yaml.safe_load_all(text) if d]


def _rules() -> list[dict[str, Any]]:
    role = next(d for d in _docs("rbac.yaml") if d["kind"] == "ClusterRole")
    return list(role["rules"])


def test_rbac_has_no_wildcards() -> None:
    for rule in _rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule


def test_operator_cannot_read_secrets() -> None:
    """It creates endpoint keys and patches one in on rotation, but never gets, lists or watches a Secret."""
    for rule in _rules():
        if any(r.startswith("secrets") for r in rule["resources"]):
            assert set(rule["verbs"]) <= {"create", "patch"}, rule


def test_operator_can_do_what_the_handlers_do() -> None:
    granted = {
        (g, r, v)
        for rule in _rules()
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    needed = [
        ("batch", "jobs", "create"),
        ("batch", "jobs", "list"),
        ("batch", "jobs", "delete"),
        ("", "configmaps", "create"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("", "pods/proxy", "get"),  # a canary reads its scorer pods' /metrics
        ("kstudio.io", "trainedmodels", "create"),
        ("kstudio.io", "experiments/status", "patch"),
        ("kstudio.io", "trainedmodels/status", "patch"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "patch"),
        ("", "services", "watch"),
        ("", "services", "create"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("kstudio.io", "endpoints", "create"),
        ("kstudio.io", "endpoints", "patch"),
        ("kstudio.io", "endpoints/status", "patch"),
        ("kstudio.io", "webservices/status", "patch"),
        ("kstudio.io", "batchjobs", "watch"),
        ("kstudio.io", "batchjobs/status", "patch"),
    ]
    assert [n for n in needed if n not in granted] == []


def test_chart_carries_the_crds() -> None:
    names = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert names == sorted(p.name for p in (CHART.parents[1] / "crds").glob("kstudio.io_*.yaml"))


def test_chart_metadata_and_values() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "kstudio"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "kstudio"
    text = (CHART / "templates" / "deployment.yaml").read_text()
    for needle in (
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "allowPrivilegeEscalation: false",
        "drop: [ALL]",
        "type: RollingUpdate",
        "KSTUDIO_S3_CREDENTIALS_DIR",
    ):
        assert needle in text


def test_two_replicas_by_default_one_reconciling_and_a_disruption_budget_keeping_one() -> None:
    """Leader election on the Lease kstudio-operator in the release namespace: the Deployment passes it, a
    namespaced Role grants that Lease alone (no cluster-wide lease access), the PDB keeps one replica."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["replicas"] == 2
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "replicas: {{ .Values.operator.replicas }}" in deployment
    assert "--leader-election=$(POD_NAMESPACE)/kstudio-operator" in deployment
    assert "maxUnavailable: 0" in deployment
    role = next(d for d in _docs("rbac.yaml") if d["kind"] == "Role")
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"], rule
        assert rule.get("resourceNames") == ["kstudio-operator"] or rule["verbs"] == ["create"], rule
    assert not any("leases" in rule["resources"] for rule in _rules())
    budget = (CHART / "templates" / "poddisruptionbudget.yaml").read_text()
    assert "{{- if gt (int .Values.operator.replicas) 1 }}" in budget and "minAvailable: 1" in budget


def test_the_chart_installs_the_image_of_its_own_release_by_default() -> None:
    """No development tag by default: the image is `kstudio:<appVersion>`, this checkout's version, which is
    also what the operator gives its pods when KSTUDIO_IMAGE is unset."""
    import tomllib

    from kstudio_operator.settings import OperatorConfig

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    release = tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == release
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == ""
    helper = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}" in helper
    assert OperatorConfig().image == f"{values['image']['repository']}:{release}"


def test_the_operator_only_reads_through_the_pods_proxy() -> None:
    """pods/proxy reaches any port of any pod: granted for GET only (a canary's /metrics reads), never
    create/update (POST/PUT through it would reach the scorers' scoring routes)."""
    rules = [rule for rule in _rules() if "pods/proxy" in rule["resources"]]
    assert [(rule["resources"], rule["verbs"]) for rule in rules] == [(["pods/proxy"], ["get"])]
