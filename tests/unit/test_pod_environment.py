"""The environment the operator's builders give scorer and trainer pods, read back the way each pod reads it:
`kstudio serve` through ScorerSettings and StorageSettings.from_env, `kstudio train` through
StorageSettings.from_env. No cluster: the rendered container is the pod."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from kstudio_core.environment import (
    ENV_PREFIX,
    ScorerEnv,
    StorageEnv,
    StoreAddress,
    TrafficModel,
    env_name,
    parse_endpoint,
    parse_flag,
)
from kstudio_core.storage import StorageError, StorageSettings
from kstudio_operator.builders.scorer import ServedModel, deployment
from kstudio_operator.builders.traffic import Split
from kstudio_operator.builders.training import RunRequest, training_job
from kstudio_operator.resources import EndpointSpec, ExperimentSpec
from kstudio_operator.settings import OperatorConfig
from kstudio_scorer.settings import ScorerSettings

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = ExperimentSpec.model_validate(
    yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())["spec"]
)
CONFIG = OperatorConfig(pod_s3_endpoint="10.244.0.1:9000")
REQUEST = RunRequest(run=3, generation=1, triggers=("spec",))
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


def _scorer_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ScorerSettings:
    """ScorerSettings as `kstudio serve` builds them in a process whose environment is exactly `env`."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ScorerSettings()  # type: ignore[call-arg]  # read from the environment


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

    scorer = _scorer_settings(env, monkeypatch)
    assert (scorer.traffic, scorer.model_name) == (
        [TrafficModel(name=MODEL.name, uri=MODEL.uri, sha256=MODEL.sha256, weight=100)],
        "ep2",
    )
    assert (scorer.keys_dir, scorer.pod_name, scorer.output_columns) == (keys, "ep2-1", ["Scored Labels"])


def test_training_pods_reach_the_https_store_the_operator_uses_over_https(tmp_path: Path) -> None:
    config = OperatorConfig.from_env(OPERATOR_ENV)
    request = RunRequest(run=3, generation=1, triggers=("spec",))
    job = training_job("ns", "penguins", EXPERIMENT, request, config)
    env = _process_env(_container(job), {"s3-credentials": _secret_volume(tmp_path)}, "penguins-run-3-x")

    storage = StorageSettings.from_env(env)  # what kstudio train builds its ObjectStore from
    assert (storage.endpoint, storage.secure) == ("s3.example.com:9443", True)
    assert (storage.access_key, storage.secret_key) == ("pod-access", "pod-secret")


def _as_written(value: object) -> str:
    """A settings value spelled as the operator writes it (the inverse of reading it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(
            [v.model_dump(mode="json") if isinstance(v, pydantic.BaseModel) else v for v in value]
        )
    if isinstance(value, pydantic.BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_variable_the_operator_gives_a_scorer_pod_reaches_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ScorerEnv is the one list of names: each of its variables is in the rendered Deployment and arrives
    # in ScorerSettings (storage: in StorageSettings) with the value the operator wrote.
    spec = EndpointSpec.model_validate(
        {
            "webService": "penguins",
            "maxConcurrentCalls": 7,
            "logging": {"level": "Error", "sampleData": True},
            "resources": {"cpu": "1", "memory": "1Gi"},
        }
    )
    output = {"columns": ["Scored Labels"], "includeInputs": True}
    mirror = ServedModel(
        name="penguins-4", uri="s3://models/ns/penguins/penguins-4.ilearner", sha256="cd" * 32
    )
    served = Split((MODEL,), mirror=mirror)
    container = _container(deployment("ns", "ep2", "penguins", spec, served, output, CONFIG))
    keys = tmp_path / "keys"
    keys.mkdir()
    env = _process_env(
        container, {"s3-credentials": _secret_volume(tmp_path), "keys": keys}, pod_name="ep2-1"
    )
    scorer_fields = [field for field in ScorerEnv.model_fields if field != "storage"]
    storage_written = [env_name(f) for f in StorageEnv.model_fields if f != "s3_region"]
    assert {env_name(f) for f in scorer_fields} | set(storage_written) <= set(env)

    left_alone = {"KSTUDIO_MAX_ROWS": "1000", "KSTUDIO_MAX_BODY_BYTES": "1048576"}
    settings = _scorer_settings(env | left_alone, monkeypatch)
    for field in scorer_fields:
        assert field in ScorerSettings.model_fields, f"the scorer does not read {env_name(field)}"
        assert _as_written(getattr(settings, field)) == env[env_name(field)], env_name(field)
    assert (settings.max_concurrent_calls, settings.logging_level, settings.sample_data) == (7, "Error", True)
    assert (settings.max_model_bytes, settings.output_include_inputs) == (512 * 2**20, True)
    assert (settings.auth_enabled, settings.keys_dir, settings.pod_name) == (True, keys, "ep2-1")
    # What the operator leaves alone is read by the same rule.
    assert (settings.max_rows, settings.max_body_bytes) == (1000, 1048576)
    storage = StorageSettings.from_env(env)
    assert (storage.endpoint, storage.secure, storage.access_key) == ("10.244.0.1:9000", False, "pod-access")


def test_a_written_https_wins_over_the_secure_flag_the_chart_leaves_at_false(tmp_path: Path) -> None:
    env = OPERATOR_ENV | {"KSTUDIO_S3_SECURE": "false"}  # charts/kstudio: storage.secure defaults to false
    assert StorageSettings.from_env(env).secure
    job = training_job("ns", "penguins", EXPERIMENT, REQUEST, OperatorConfig.from_env(env))
    pod_env = _process_env(_container(job), {"s3-credentials": _secret_volume(tmp_path)}, pod_name="p")
    assert pod_env["KSTUDIO_S3_ENDPOINT"] == "s3.example.com:9443" and pod_env["KSTUDIO_S3_SECURE"] == "true"
    storage = StorageSettings.from_env(pod_env)
    assert (storage.endpoint, storage.secure) == ("s3.example.com:9443", True)


def test_pods_reach_the_store_at_the_pod_endpoint_as_the_operator_does_unless_told_otherwise() -> None:
    own = {"KSTUDIO_S3_ENDPOINT": "https://s3.example.com", "KSTUDIO_S3_POD_ENDPOINT": "s3.svc:9000"}
    assert (OperatorConfig.from_env(own).pod_s3_endpoint, OperatorConfig.from_env(own).pod_s3_secure) == (
        "s3.svc:9000",
        True,
    )
    plain = OperatorConfig.from_env(own | {"KSTUDIO_S3_POD_SECURE": "no"})
    assert (plain.pod_s3_endpoint, plain.pod_s3_secure) == ("s3.svc:9000", False)
    local = OperatorConfig.from_env(
        {"KSTUDIO_S3_ENDPOINT": "127.0.0.1:9000", "KSTUDIO_S3_POD_ENDPOINT": "10.244.0.1:9000"}
    )
    assert (local.pod_s3_endpoint, local.pod_s3_secure) == ("10.244.0.1:9000", False)


@pytest.mark.parametrize(
    ("text", "secure", "address"),
    [
        ("https://s3.example.com:9443", False, StoreAddress("s3.example.com:9443", True)),
        ("HTTPS://s3.example.com/", False, StoreAddress("s3.example.com", True)),
        ("http://10.244.0.1:9000/", True, StoreAddress("10.244.0.1:9000", False)),
        (" minio.svc:9000 ", True, StoreAddress("minio.svc:9000", True)),
        ("minio.svc:9000", False, StoreAddress("minio.svc:9000", False)),
    ],
)
def test_one_endpoint_parser_a_written_scheme_decides(text: str, secure: bool, address: StoreAddress) -> None:
    assert parse_endpoint(text, secure) == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "has no host"),
        ("https://", "has no host"),
        ("s3://bucket", "use host:port"),
        ("h:1/bucket", "path"),
    ],
)
def test_an_endpoint_that_cannot_be_an_s3_address_is_refused_naming_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_endpoint(text)
    if text:
        with pytest.raises(StorageError, match=f"KSTUDIO_S3_ENDPOINT: .*{reason}"):
            StorageSettings.from_env(
                {"KSTUDIO_S3_ENDPOINT": text, "KSTUDIO_S3_ACCESS_KEY": "a", "KSTUDIO_S3_SECRET_KEY": "b"}
            )


@pytest.mark.parametrize(
    ("word", "meaning"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_operator_storage_and_scorer_read_yes_no_alike(
    word: str, meaning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_flag(word) is meaning
    storage = {
        "KSTUDIO_S3_ENDPOINT": "h:1",
        "KSTUDIO_S3_SECURE": word,
        "KSTUDIO_S3_ACCESS_KEY": "a",
        "KSTUDIO_S3_SECRET_KEY": "b",
    }
    assert OperatorConfig.from_env(storage).pod_s3_secure is meaning
    assert StorageSettings.from_env(storage).secure is meaning
    scorer = _scorer_settings(
        {
            "KSTUDIO_MODEL_URI": "m.ilearner",
            "KSTUDIO_MODEL_SHA256": "ab" * 32,
            "KSTUDIO_KEYS_DIR": "/k",
            "KSTUDIO_AUTH_ENABLED": word,
            "KSTUDIO_SAMPLE_DATA": word,
        },
        monkeypatch,
    )
    assert scorer.auth_enabled is meaning and scorer.sample_data is meaning


def test_a_yes_no_typo_is_an_error_naming_the_variable_never_a_silent_no(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = {
        "KSTUDIO_S3_ENDPOINT": "h:1",
        "KSTUDIO_S3_SECURE": "ture",
        "KSTUDIO_S3_ACCESS_KEY": "a",
        "KSTUDIO_S3_SECRET_KEY": "b",
    }
    with pytest.raises(ValueError, match="KSTUDIO_S3_SECURE: 'ture' is not a yes/no value"):
        OperatorConfig.from_env(storage)
    with pytest.raises(StorageError, match="KSTUDIO_S3_SECURE: 'ture' is not a yes/no value"):
        StorageSettings.from_env(storage)
    with pytest.raises(pydantic.ValidationError, match="'ture' is not a yes/no value"):
        _scorer_settings(
            {"KSTUDIO_MODEL_URI": "m", "KSTUDIO_MODEL_SHA256": "ab" * 32, "KSTUDIO_AUTH_ENABLED": "ture"},
            monkeypatch,
        )
