"""Helpers of the operator tier: kubectl JSON reads, polling, manifests; the operator as a real process is
fixtures/operator_process.py's."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixtures.local_cluster import wait_until as wait_until  # re-exported for the operator tests
from fixtures.operator_process import KSTUDIO as KSTUDIO
from fixtures.operator_process import OperatorProcess as OperatorProcess

REPO = Path(__file__).resolve().parents[2]


class Kubectl:
    """kubectl in one namespace, returning parsed JSON."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)  # type: ignore[no-any-return]

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", input=manifest, check=False)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.run("get", kind, name, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def items(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.run(*args).stdout)["items"])

    def status(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name) or {}
        return dict(obj.get("status") or {})

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.items("events") if e["involvedObject"].get("name") == name]

    def release_finalizers(self, *kinds: str) -> None:
        """Clean-up: drop the finalizers of every object of `kinds` left in the namespace (no operator
        may be running to honour them)."""
        for kind in kinds:
            for obj in self.items(kind):
                self.run(
                    "patch",
                    kind,
                    obj["metadata"]["name"],
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )


# For negative checks: the loops look again every 2 s instead of every 300 s, so "two more reconciles"
# (reconciled_again) comes quickly and proves at least one full reconcile saw the state under test.
QUICK_RESYNC = pytest.mark.operator_env(KSTUDIO_RESYNC_SECONDS="2")


def reconciled_again(operator: OperatorProcess, kind: str, times: int = 1) -> Callable[[], bool]:
    """A probe for wait_until: true once the operator has finished `times` more successful reconciles of
    `kind` than now (its metrics). A negative check ("nothing more happens") waits for this trigger (a
    resync, a restart's first reconcile, a touched object) rather than for a fixed sleep."""
    start = operator.outcomes()[(kind, "ok")]
    return lambda: operator.outcomes()[(kind, "ok")] >= start + times


def condition(obj_status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj_status.get("conditions") or [] if c.get("type") == type_), None)


def operator_env(cluster: Any) -> dict[str, str]:
    storage = cluster.storage_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    env.update(cluster.env())
    env.update(storage.to_env())
    env.update(
        {
            "KSTUDIO_S3_POD_ENDPOINT": cluster.minio.pod_endpoint,
            "KSTUDIO_IMAGE": "kstudio:dev",
        }
    )
    return env


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    """A kstudio.io object (TrainedModel, WebService, Endpoint, ...) as JSON for `kubectl apply -f -`."""
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def trained_model_manifest(name: str, spec: dict[str, Any]) -> str:
    """A TrainedModel made by hand (an import)."""
    return manifest("TrainedModel", name, spec)


def import_model(kube: Kubectl, store: Any, namespace: str, path: Path, sha: str, name: str) -> None:
    """Upload the artifact at `path` where imports go (`store`: the example_data fixture) and apply a
    TrainedModel `name` naming it, as a user importing a model would."""
    uri = f"s3://models/{namespace}/imports/{name}.ilearner"
    store.upload(path, uri)
    assert kube.apply(trained_model_manifest(name, {"artifact": {"uri": uri, "sha256": sha}})).returncode == 0


def experiment_manifest(name: str = "penguins", **spec_overrides: Any) -> str:
    spec: dict[str, Any] = {
        "dataset": {"uri": "s3://datasets/penguins.csv", "format": "csv"},
        "label": "species",
        "features": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"],
        "task": "classification",
        "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 20, "random_state": 0}},
        "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy", "f1_macro"]},
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "backoffLimit": 2,
    }
    spec.update(spec_overrides)
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec}
    )
