"""The environment the operator's builders give scorer and trainer pods, read back the way each pod reads it:
`kstudio serve` through ScorerSettings and StorageSettings.from_env, `kstudio train` through
StorageSettings.from_env. No cluster: the rendered container is the pod."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstudio_core.storage import StorageSettings
from kstudio_operator.builders.scorer import ServedModel, deployment
from kstudio_operator.builders.training import RunRequest, training_job
from kstudio_operator.resources import EndpointSpec, ExperimentSpec
from kstudio_operator.settings import OperatorConfig
from kstudio_scorer.settings import ScorerSettings

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = ExperimentSpec.model_validate(
    yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())["spec"]
)
MODEL = ServedModel(name="penguins-3", uri="s3://models/ns/penguins/penguins-3.ilearner", sha256="ab" * 32)
# The operator's own environment: a store behind TLS, addressed with its scheme as a user would write it.
OPERATOR_ENV = {
    "KSTUDIO_S3_ENDPOINT": "https://s3.example.com:9443",
    "KSTUDIO_S3_ACCESS_KEY": "operator-access",
    "KSTUDIO_S3_SECRET_KEY": "operator-secret",
}


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _process_env(container: dict[str, Any], volumes: dict[str, Path], pod_name: str) -> dict[str, str]:
    """What the process in `container` sees: its env, the downward-API pod name filled in, and each mount
    path replaced by the local directory standing in for that volume."""
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"] if m["name"] in volumes}
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "valueFrom" in entry:
            assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            env[entry["name"]] = pod_name
            continue
        value = entry["value"]
        env[entry["name"]] = str(mounts.get(value, value))
    return env


def _secret_volume(tmp_path: Path) -> Path:
    """The storage Secret as Kubernetes mounts it: one file per key."""
    directory = tmp_path / "s3-credentials"
    directory.mkdir()
    (directory / "accessKey").write_text("pod-access")
    (directory / "secretKey").write_text("pod-secret")
    return directory


def test_the_operator_itself_reaches_an_https_store_over_https() -> None:
    own = StorageSettings.from_env(OPERATOR_ENV)
    assert (own.endpoint, own.secure) == ("s3.example.com:9443", True)


def test_scorer_pods_reach_the_https_store_the_operator_uses_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = OperatorConfig.from_env(OPERATOR_ENV)
    spec = EndpointSpec.model_validate({"webService": "penguins", "auth": {"enabled": True}})
    manifest = deployment("ns", "ep2", "penguins", spec, MODEL, {"columns": ["Scored Labels"]}, config)
    keys = tmp_path / "keys"
    keys.mkdir()
    volumes = {"s3-credentials": _secret_volume(tmp_path), "keys": keys}
    env = _process_env(_container(manifest), volumes, pod_name="ep2-1")

    storage = StorageSettings.from_env(env)  # what kstudio serve builds its ObjectStore from
    assert (storage.endpoint, storage.secure) == ("s3.example.com:9443", True)
    assert (storage.access_key, storage.secret_key) == ("pod-access", "pod-secret")

    for name in [n for n in os.environ if n.startswith("KSTUDIO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    scorer = ScorerSettings()  # type: ignore[call-arg]  # read from the environment
    assert (scorer.model_uri, scorer.model_sha256, scorer.model_name) == (MODEL.uri, MODEL.sha256, "ep2")
    assert (scorer.keys_dir, scorer.pod_name, scorer.output_columns) == (keys, "ep2-1", ["Scored Labels"])


def test_training_pods_reach_the_https_store_the_operator_uses_over_https(tmp_path: Path) -> None:
    config = OperatorConfig.from_env(OPERATOR_ENV)
    request = RunRequest(run=3, generation=1, triggers=("spec",))
    job = training_job("ns", "penguins", EXPERIMENT, request, config)
    env = _process_env(_container(job), {"s3-credentials": _secret_volume(tmp_path)}, "penguins-run-3-x")

    storage = StorageSettings.from_env(env)  # what kstudio train builds its ObjectStore from
    assert (storage.endpoint, storage.secure) == ("s3.example.com:9443", True)
    assert (storage.access_key, storage.secret_key) == ("pod-access", "pod-secret")
