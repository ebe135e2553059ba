"""Helpers of the operator tier: the operator as a real process, kubectl JSON reads, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from fixtures.local_cluster import wait_until as wait_until  # re-exported for the operator tests

REPO = Path(__file__).resolve().parents[2]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"


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


def condition(obj_status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj_status.get("conditions") or [] if c.get("type") == type_), None)


class OperatorProcess:
    """`kstudio operator -n <namespace>` as a child process, stoppable and killable like in production."""

    def __init__(self, env: dict[str, str], namespace: str, log_path: Path, *args: str) -> None:
        self.env = env
        self.namespace = namespace
        self.log_path = log_path
        self.args = args  # more `kstudio operator` arguments (e.g. --leader-election)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "operator already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(KSTUDIO), "operator", "--namespace", self.namespace, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), as a rolling update of the operator Deployment would do."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: the operator dies mid-whatever, as on a node failure or OOM."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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


def trained_model_manifest(name: str, spec: dict[str, Any]) -> str:
    """A TrainedModel made by hand (an import), as JSON for `kubectl apply -f -`."""
    return json.dumps(
        {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "TrainedModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


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
