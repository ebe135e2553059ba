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
        "type: Recreate",
        "KSTUDIO_S3_CREDENTIALS_DIR",
    ):
        assert needle in text


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
