"""Pure builders: the training Job and its snapshot, TrainedModel manifests, model usage."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kstudio_core.runresult import RunResult, result_uri
from kstudio_operator import constants as c
from kstudio_operator.builders.names import artifact_uri, job_name, trained_model_name
from kstudio_operator.builders.trainedmodel import (
    trained_model_manifest,
)
from kstudio_operator.builders.training import RunRequest, snapshot_configmap, training_job
from kstudio_operator.indexes import model_users
from kstudio_operator.resources import ExperimentSpec
from kstudio_operator.settings import OperatorConfig

REPO = Path(__file__).resolve().parents[2]
SPEC = ExperimentSpec.model_validate(
    yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())["spec"]
)
RELEASE = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
CONFIG = OperatorConfig(image="kstudio:dev", pod_s3_endpoint="10.244.0.1:9000")
REQUEST = RunRequest(run=3, generation=2, triggers=("spec", "annotation"), token="tok-1")


def job() -> dict[str, Any]:
    return training_job("team-a", "penguins", SPEC, REQUEST, CONFIG)


def test_child_names_are_deterministic() -> None:
    assert job_name("penguins", 3) == "penguins-run-3"
    assert trained_model_name("penguins", 3) == "penguins-3"
    assert artifact_uri(SPEC, "team-a", "penguins", 3) == "s3://models/team-a/penguins/penguins-3.ilearner"
    assert result_uri(artifact_uri(SPEC, "team-a", "penguins", 3)) == (
        "s3://models/team-a/penguins/penguins-3.ilearner.result.json"
    )
    assert job() == job()


def test_job_fails_fast_on_bad_data_and_oom_and_retries_only_infra_errors() -> None:
    spec = job()["spec"]
    assert spec["backoffLimit"] == 2
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 137]},
    }
    assert rules[1]["action"] == "Ignore"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # required by podFailurePolicy
    assert spec["activeDeadlineSeconds"] == 3600


def test_job_runs_the_trainer_on_the_snapshot_with_the_run_and_output() -> None:
    container = job()["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "kstudio:dev"
    assert container["command"] == ["kstudio"]
    args = container["args"]
    assert args[0] == "train"
    assert args[args.index("--snapshot") + 1] == "/var/run/kstudio/snapshot/snapshot.json"
    assert args[args.index("--run") + 1] == "3"
    assert args[args.index("--output") + 1] == "s3://models/team-a/penguins/penguins-3.ilearner"
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


def test_job_is_restricted_and_non_root() -> None:
    pod = job()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert not any(v.get("hostPath") for v in pod["volumes"])


def test_job_gets_storage_keys_only_through_a_secret_volume() -> None:
    pod = job()["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KSTUDIO_S3_ENDPOINT"] == "10.244.0.1:9000"
    assert env["KSTUDIO_S3_CREDENTIALS_DIR"] == c.S3_CREDENTIALS_MOUNT
    assert not any("KEY" in name for name in env)
    secret = next(v for v in pod["volumes"] if "secret" in v)
    assert secret["secret"]["secretName"] == "kstudio-s3"


def test_image_comes_from_the_environment_and_defaults_to_this_release() -> None:
    """Never a development image by default: the tag is this version's, as the chart's default is."""
    assert OperatorConfig.from_env({}).image == OperatorConfig().image == f"kstudio:{RELEASE}"
    cfg = OperatorConfig.from_env(
        {"KSTUDIO_IMAGE": "ghcr.io/org/kstudio:0.1.0", "KSTUDIO_S3_ENDPOINT": "h:1"}
    )
    assert cfg.image == "ghcr.io/org/kstudio:0.1.0" and cfg.pod_s3_endpoint == "h:1"
    custom = training_job("ns", "penguins", SPEC, REQUEST, cfg)
    assert custom["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/org/kstudio:0.1.0"


def test_job_records_what_started_the_run() -> None:
    meta = job()["metadata"]
    assert meta["labels"][c.LABEL_EXPERIMENT] == "penguins" and meta["labels"][c.LABEL_RUN] == "3"
    assert meta["annotations"][c.ANNOTATION_GENERATION] == "2"
    assert meta["annotations"][c.ANNOTATION_TRIGGER] == "spec,annotation"
    assert meta["annotations"][c.ANNOTATION_TOKEN] == "tok-1"
    scheduled = RunRequest(
        run=1, generation=1, triggers=("schedule",), scheduled_at=datetime(2026, 1, 1, 3, tzinfo=UTC)
    )
    annotations = training_job("ns", "p", SPEC, scheduled, CONFIG)["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_SCHEDULED_AT] == "2026-01-01T03:00:00Z"


def test_snapshot_configmap_holds_the_trainer_snapshot() -> None:
    cm = snapshot_configmap("team-a", "penguins", SPEC, REQUEST)
    assert cm["metadata"]["name"] == "penguins-run-3-snapshot"
    assert cm["immutable"] is True
    assert json.loads(cm["data"]["snapshot.json"]) == SPEC.snapshot()
    volume = next(v for v in job()["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == cm["metadata"]["name"]


def test_trained_model_manifest_from_result() -> None:
    result = RunResult.model_validate(
        {
            "artifact": {
                "uri": "s3://models/a/penguins/penguins-3.ilearner",
                "sha256": "ab" * 32,
                "sizeBytes": 9,
            },
            "metrics": {"accuracy": 0.97},
            "inputSchema": [{"name": "island", "type": "string"}],
        }
    )
    tm = trained_model_manifest("a", "penguins", 3, 2, result)
    assert tm["metadata"]["name"] == "penguins-3"
    assert "ownerReferences" not in tm["metadata"]  # survives its Experiment when in use
    assert tm["spec"] == {
        "artifact": {"uri": "s3://models/a/penguins/penguins-3.ilearner", "sha256": "ab" * 32},
        "source": {"experiment": "penguins", "run": 3, "generation": 2},
    }


def test_model_users_index_names_webservices_and_endpoints_that_use_a_model() -> None:
    def index(kind: str, body: dict[str, Any]) -> dict[Any, Any]:
        body = {"kind": kind, **body}
        return model_users(namespace="ns", name=body["metadata"]["name"], body=body)  # type: ignore[arg-type]

    assert index("WebService", {"metadata": {"name": "svc"}, "spec": {"model": "m-1"}}) == {
        ("ns", "m-1"): "WebService/svc"
    }
    assert index("WebService", {"metadata": {"name": "other"}, "spec": {}}) == {}
    # an Endpoint uses both the model it is pinned to and the one its pods still serve
    served = {"metadata": {"name": "ep2"}, "spec": {"model": "m-2"}, "status": {"model": "m-1"}}
    assert index("Endpoint", served) == {("ns", "m-1"): "Endpoint/ep2", ("ns", "m-2"): "Endpoint/ep2"}
    # one being deleted no longer holds its model
    gone = {"metadata": {"name": "gone", "deletionTimestamp": "x"}, "spec": {"model": "m-1"}}
    assert index("Endpoint", gone) == {}


def test_ready_status_from_an_artifact_manifest_round_trips_through_the_status_model() -> None:
    import warnings

    from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
    from kstudio_operator.builders.trainedmodel import status_from_manifest
    from kstudio_operator.resources import TrainedModelStatus

    manifest = IlearnerManifest(
        task="classification",
        label="species",
        inputSchema=[
            ColumnSpec(name="island", type="string"),
            ColumnSpec(name="bill_length_mm", type="number"),
        ],
        classes=["Adelie", "Gentoo"],
        metrics={"accuracy": 0.97, "f1_macro": 0.96},
        experiment={"evaluation": {"metrics": ["f1_macro", "accuracy"]}},
    )
    fields = status_from_manifest(manifest, 1234, datetime(2026, 11, 25, tzinfo=UTC))
    assert fields["headlineMetric"] == "f1_macro=0.9600"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wire = TrainedModelStatus.model_validate({"phase": "Ready", **fields}).to_wire()
    assert wire["inputSchema"] == [
        {"name": "island", "type": "string"},
        {"name": "bill_length_mm", "type": "number"},
    ]
    assert (wire["sizeBytes"], wire["classes"], wire["verifiedAt"]) == (
        1234,
        ["Adelie", "Gentoo"],
        "2026-11-25T00:00:00Z",
    )
