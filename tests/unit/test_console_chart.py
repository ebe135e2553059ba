"""The console's part of the Helm chart: off by default; read-only RBAC (get, list, watch; no Secrets, no
wildcards) that covers every kind the console watches. `helm template`/`install` run in tests/console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kstudio_console.cache import KINDS

CHART = Path(__file__).resolve().parents[2] / "charts" / "kstudio"


def _rules() -> list[dict[str, Any]]:
    # The rules are plain YAML; the lines around them are template directives, dropped here.
    text = "\n".join(
        line
        for line in (CHART / "templates" / "console-rbac.yaml").read_text().splitlines()
        if "{{" not in line
    )
    role = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "ClusterRole")
    return list(role["rules"])


def test_console_is_off_unless_enabled() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["console"]["enabled"] is False
    for template in CHART.glob("templates/console-*.yaml"):
        assert template.read_text().startswith("{{- if .Values.console.enabled }}"), template.name


def test_console_rbac_only_reads_and_never_secrets() -> None:
    for rule in _rules():
        assert sorted(rule["verbs"]) == ["get", "list", "watch"], rule
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not any(r.startswith("secrets") for r in rule["resources"]), rule


def test_console_rbac_covers_every_watched_kind() -> None:
    granted = {(g, r) for rule in _rules() for g in rule["apiGroups"] for r in rule["resources"]}
    watched = {("" if k.api_version == "v1" else k.api_version.split("/")[0], k.plural) for k in KINDS}
    assert watched <= granted and granted <= watched


def test_console_pod_is_restricted_and_non_root() -> None:
    text = (CHART / "templates" / "console-deployment.yaml").read_text()
    for line in (
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "seccompProfile: {type: RuntimeDefault}",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "capabilities: {drop: [ALL]}",
    ):
        assert line in text
