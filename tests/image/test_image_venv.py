"""What the Docker image would run is what runs here: the product wheel, installed into a clean venv the
way the Dockerfile installs it, serves, trains and operates against the local cluster. The operator runs
from that venv as a process; the node agent runs that venv for the training Job and the scorer Pod (their
containers report it as their imageID)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fixtures.local_cluster import wait_until
from fixtures.operator_process import OperatorProcess, allowed_patterns, fail_on
from kstudio_core.storage import ObjectStore
from kstudio_devtools.examples import upload_examples
from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS_MOUNT = "/var/run/secrets/kstudio/s3"


def _kubectl_json(cluster: Any, namespace: str, *args: str) -> Any:
    return json.loads(cluster.kubectl("-n", namespace, *args, "-o", "json").stdout)


def _image_ids(cluster: Any, namespace: str, selector: str) -> set[str]:
    pods = _kubectl_json(cluster, namespace, "get", "pods", "-l", selector)["items"]
    return {s.get("imageID", "") for p in pods for s in p.get("status", {}).get("containerStatuses") or []}


def _storage_env(cluster: Any) -> dict[str, str]:
    minio = cluster.minio
    return {
        "KSTUDIO_S3_ENDPOINT": minio.host_endpoint,
        "KSTUDIO_S3_ACCESS_KEY": minio.access_key,
        "KSTUDIO_S3_SECRET_KEY": minio.secret_key,
        "KSTUDIO_S3_SECURE": "false",
    }


def _scorer_pod(name: str, model: dict[str, Any], pod_endpoint: str) -> str:
    artifact = model["spec"]["artifact"]
    container = {
        "name": "scorer",
        "image": "kstudio:dev",
        "args": ["serve", "--no-auth", "--port", "8080", "--model-name", "penguins"],
        "env": [
            {"name": "KSTUDIO_MODEL_URI", "value": artifact["uri"]},
            {"name": "KSTUDIO_MODEL_SHA256", "value": artifact["sha256"]},
            {"name": "KSTUDIO_S3_ENDPOINT", "value": pod_endpoint},
            {"name": "KSTUDIO_S3_SECURE", "value": "false"},
            {"name": "KSTUDIO_S3_CREDENTIALS_DIR", "value": CREDENTIALS_MOUNT},
        ],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}, "periodSeconds": 1},
        "resources": {"limits": {"memory": "1Gi", "cpu": "1"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "s3", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [container],
            "volumes": [{"name": "s3", "secret": {"secretName": "kstudio-s3"}}],
        },
    }
    return json.dumps(pod)


def _post_in_netns(netns_name: str, host: str, port: int, path: str, body: bytes) -> tuple[int, str]:
    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = netns.connect_in_netns(netns_name, host, port, 10.0)

    conn = Conn(host, port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_image_venv_serves_trains_and_operates_on_the_local_cluster(
    image_cluster: Any, image_venv: Path, kube_namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cluster, ns = image_cluster, kube_namespace
    kstudio = image_venv / "bin" / "kstudio"
    usage = subprocess.run([kstudio, "--help"], capture_output=True, text=True, check=True).stdout
    assert {"serve", "train", "operator"} <= set(usage.split())
    assert not {"cluster", "upload-examples", "vocabulary"} & set(usage.split())  # dev tools: kstudio-dev

    cluster.install_crds(REPO / "crds")
    minio = cluster.minio
    cluster.kubectl("-n", ns, "create", "secret", "generic", "kstudio-s3",
                    f"--from-literal=accessKey={minio.access_key}",
                    f"--from-literal=secretKey={minio.secret_key}")  # fmt: skip
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KSTUDIO_", "VIRTUAL_ENV"))}
    env = base_env | cluster.env() | _storage_env(cluster)
    # The example datasets are test data, uploaded by the dev tools of the checkout, not by the image.
    upload_examples(ObjectStore(cluster.storage_settings()))

    operator_env = env | {"KSTUDIO_S3_POD_ENDPOINT": minio.pod_endpoint, "KSTUDIO_IMAGE": "kstudio:dev"}
    # Checked like every operator of the suite (fixtures/operator_process.py): no error, no traceback.
    operator = OperatorProcess(
        operator_env, ns, tmp_path / "operator.log", [str(kstudio), "operator"], tmp_path
    )
    operator.start()
    try:
        experiment = {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "penguins"},
            "spec": {
                "dataset": {"uri": "s3://datasets/penguins.csv", "format": "csv"},
                "label": "species",
                "features": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
                "task": "classification",
                "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 10}},
                "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy"]},
                "resources": {"cpu": "500m", "memory": "1Gi"},
            },
        }
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(experiment))

        def ready_model() -> dict[str, Any] | None:
            proc = cluster.kubectl("-n", ns, "get", "trainedmodel", "penguins-1", "-o", "json", check=False)
            if proc.returncode != 0:
                return None
            model: dict[str, Any] = json.loads(proc.stdout)
            conditions = model.get("status", {}).get("conditions") or []
            return model if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

        try:
            model = wait_until("TrainedModel penguins-1 Ready", ready_model, timeout=300)
        except AssertionError:
            raise AssertionError(f"no Ready model; operator log tail:\n{operator.log_tail(40)}") from None
        # The training Job's pod ran `kstudio train` from the image venv, not from the checkout.
        assert _image_ids(cluster, ns, "job-name") == {f"local://{image_venv}"}
        cluster.kubectl("-n", ns, "delete", "experiment,trainedmodel", "--all", "--timeout=60s")
    finally:
        operator.stop()
    fail_on(operator.problems(allowed_patterns(request)), operator.log_tail(80))

    cluster.kubectl("-n", ns, "apply", "-f", "-", input=_scorer_pod("scorer", model, minio.pod_endpoint))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/scorer", "--timeout=180s")
    pod = _kubectl_json(cluster, ns, "get", "pod", "scorer")
    assert _image_ids(cluster, ns, "app=scorer") == {f"local://{image_venv}"}
    row = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0, "body_mass_g": 3750.0}
    body = json.dumps({"Inputs": {"input1": [row]}, "GlobalParameters": {}}).encode()
    status, text = _post_in_netns(cluster.info.layout.netns, pod["status"]["podIP"], 8080, "/score", body)
    assert status == 200, text
    assert "Adelie" in text
