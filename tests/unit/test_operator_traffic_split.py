"""An Endpoint's traffic split in the operator: the spec's rules, what the pods are told, what the status
says they serve, and a split that cannot be served yet leaving the previous one serving."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kstudio_operator.builders.traffic import ServedModel, Split, parse_label
from kstudio_operator.constants import ANNOTATION_MODEL, ANNOTATION_SPEC_HASH, ANNOTATION_TRAFFIC
from kstudio_operator.decisions.endpoint import (
    EndpointObserved,
    ReplaceDeployment,
    decide_endpoint,
    spec_hash,
)
from kstudio_operator.decisions.webservice import PatchEndpointSpec, WebServiceObserved, decide_web_service
from kstudio_operator.indexes import model_references
from kstudio_operator.resources.endpoint import EndpointSpec
from kstudio_operator.settings import OperatorConfig

CONFIG = OperatorConfig(pod_s3_endpoint="10.244.0.1:9000")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SCHEMA = [{"name": "x1", "type": "number"}, {"name": "x2", "type": "number"}]
OWNER = {"apiVersion": "kstudio.io/v1alpha1", "kind": "Endpoint", "metadata": {"name": "ep2", "uid": "u"}}
SPLIT_90_10 = {
    "webService": "svc",
    "replicas": 2,
    "traffic": [{"model": "m-1", "weight": 90}, {"model": "m-2", "weight": 10}],
}


def sha(n: int) -> str:
    return f"{n:x}" * 64


def model(
    n: int, phase: str = "Ready", task: str = "classification", size: int = 1000, **kw: Any
) -> dict[str, Any]:
    status = {"phase": phase, "inputSchema": SCHEMA, "task": task, "sizeBytes": size} | kw
    return {"spec": {"artifact": {"uri": f"s3://models/m-{n}.ilearner", "sha256": sha(n)}}, "status": status}


def pod(name: str, annotation: str, ready: bool = True) -> dict[str, Any]:
    return {"name": name, "traffic": annotation, "ready": ready, "deleting": False}


def annotation(*models: tuple[int, int]) -> str:
    return ",".join(f"m-{n}@{sha(n)}:{w}" for n, w in models)


def observe(
    pods: list[dict[str, Any]], deployment: dict[str, Any] | None = None, **kw: Any
) -> EndpointObserved:
    base: dict[str, Any] = {
        "namespace": "ns",
        "name": "ep2",
        "generation": 1,
        "web_service": {"spec": {}, "status": {"model": "m-1"}},
        "models": {"m-1": model(1), "m-2": model(2), "m-3": model(3)},
        "deployment": deployment,
        "pods": pods,
        "has_service": True,
    }
    return EndpointObserved(**(base | kw))


def template(decision: Any) -> dict[str, Any]:
    manifest = next(a.manifest for a in decision.actions if a.manifest["kind"] == "Deployment")
    return dict(manifest["spec"]["template"])


def serving_90_10() -> tuple[dict[str, Any], dict[str, Any]]:
    """Status and Deployment index entry of a 2-pod endpoint serving m-1:90,m-2:10."""
    created = decide_endpoint(SPLIT_90_10, {}, observe([]), T0, CONFIG, OWNER)
    manifest = next(a.manifest for a in created.actions if a.manifest["kind"] == "Deployment")
    dep = {"annotations": manifest["metadata"]["annotations"]}
    pods = [pod("a", annotation((1, 90), (2, 10))), pod("b", annotation((1, 90), (2, 10)))]
    ready = decide_endpoint(SPLIT_90_10, created.status, observe(pods, dep), T0, CONFIG, OWNER)
    return ready.status, dep


def test_a_split_tells_every_pod_all_of_its_models_with_their_weights() -> None:
    decision = decide_endpoint(SPLIT_90_10, {}, observe([]), T0, CONFIG, OWNER)
    tpl = template(decision)
    env = {e["name"]: e.get("value") for e in tpl["spec"]["containers"][0]["env"]}
    assert json.loads(env["KSTUDIO_TRAFFIC"]) == [
        {"name": "m-1", "uri": "s3://models/m-1.ilearner", "sha256": sha(1), "weight": 90},
        {"name": "m-2", "uri": "s3://models/m-2.ilearner", "sha256": sha(2), "weight": 10},
    ]
    assert tpl["metadata"]["annotations"][ANNOTATION_TRAFFIC] == annotation((1, 90), (2, 10))
    assert tpl["metadata"]["annotations"][ANNOTATION_MODEL] == "m-1"  # the one answering most


def test_the_status_shows_each_model_its_weight_and_the_digest_the_ready_pods_load() -> None:
    status, _ = serving_90_10()
    assert status["phase"] == "Ready" and status["split"] == "m-1:90,m-2:10"
    assert status["traffic"] == [
        {"model": "m-1", "weight": 90, "digest": sha(1)},
        {"model": "m-2", "weight": 10, "digest": sha(2)},
    ]
    assert (status["model"], status["modelDigest"]) == ("m-1", sha(1))


def test_a_weight_change_is_a_rollout_recorded_from_split_to_split() -> None:
    status, dep = serving_90_10()
    spec = SPLIT_90_10 | {"traffic": [{"model": "m-1", "weight": 50}, {"model": "m-2", "weight": 50}]}
    old = [pod("a", annotation((1, 90), (2, 10))), pod("b", annotation((1, 90), (2, 10)))]
    rolling = decide_endpoint(spec, status, observe(old, dep), T0, CONFIG, OWNER)
    [action] = rolling.actions
    assert isinstance(action, ReplaceDeployment)
    assert rolling.status["phase"] == "RollingOut" and rolling.status["split"] == "m-1:90,m-2:10"
    assert (rolling.status["rollout"]["from"], rolling.status["rollout"]["to"]) == (
        "m-1:90,m-2:10",
        "m-1:50,m-2:50",
    )
    new_dep = {"annotations": {ANNOTATION_SPEC_HASH: spec_hash(action.manifest)}}
    new = [pod("c", annotation((1, 50), (2, 50))), pod("d", annotation((1, 50), (2, 50)))]
    done = decide_endpoint(
        spec, rolling.status, observe(new, new_dep), T0 + timedelta(seconds=3), CONFIG, OWNER
    )
    assert done.status["phase"] == "Ready" and done.status["split"] == "m-1:50,m-2:50"
    assert done.status["history"][-1]["seconds"] == 3.0


def test_a_model_of_the_split_that_is_not_ready_leaves_the_previous_split_serving_and_is_named() -> None:
    status, dep = serving_90_10()
    spec = SPLIT_90_10 | {"traffic": [{"model": "m-1", "weight": 80}, {"model": "m-3", "weight": 20}]}
    pods = [pod("a", annotation((1, 90), (2, 10))), pod("b", annotation((1, 90), (2, 10)))]
    models = {"m-1": model(1), "m-2": model(2), "m-3": model(3, phase="Pending", message="downloading")}
    waiting = decide_endpoint(spec, status, observe(pods, dep, models=models), T0, CONFIG, OWNER)
    assert waiting.actions == [] and waiting.status["split"] == "m-1:90,m-2:10"
    assert waiting.status["phase"] == "Ready"
    accepted = next(c for c in waiting.status["conditions"] if c["type"] == "ModelAccepted")
    assert accepted["status"] == "False" and accepted["reason"] == "ModelNotReady"
    assert "TrainedModel m-3 is Pending: downloading" in accepted["message"]
    assert "keep serving m-1:90,m-2:10" in accepted["message"]


@pytest.mark.parametrize(
    ("m3", "reason", "words"),
    [
        (
            model(3) | {"status": model(3)["status"] | {"inputSchema": SCHEMA[:1]}},
            "SchemaChanged",
            "removed x2",
        ),
        (model(3, task="regression"), "TaskMismatch", "m-3 (regression)"),
        (model(3, size=400 * 2**20), "ModelsTooLarge", "raise spec.resources.memory"),
    ],
)
def test_the_gate_applies_to_every_model_of_the_split(m3: dict[str, Any], reason: str, words: str) -> None:
    status, dep = serving_90_10()
    spec = SPLIT_90_10 | {"traffic": [{"model": "m-1", "weight": 80}, {"model": "m-3", "weight": 20}]}
    pods = [pod("a", annotation((1, 90), (2, 10))), pod("b", annotation((1, 90), (2, 10)))]
    refused = decide_endpoint(
        spec,
        status,
        observe(pods, dep, models={"m-1": model(1), "m-2": model(2), "m-3": m3}),
        T0,
        CONFIG,
        OWNER,
    )
    assert refused.actions == [] and refused.status["split"] == "m-1:90,m-2:10"
    accepted = next(c for c in refused.status["conditions"] if c["type"] == "ModelAccepted")
    assert accepted["reason"] == reason and words in accepted["message"], accepted


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"traffic": [{"model": "a", "weight": 90}, {"model": "b", "weight": 20}]}, "sum to 110, not 100"),
        ({"traffic": [{"model": "a", "weight": 50}, {"model": "a", "weight": 50}]}, "lists a more than once"),
        ({"model": "a", "traffic": [{"model": "a", "weight": 100}]}, "mutually exclusive"),
    ],
)
def test_a_split_the_crd_would_refuse_is_refused_by_the_operator_too(
    spec: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        EndpointSpec.model_validate({"webService": "svc"} | spec)
    failed = decide_endpoint({"webService": "svc"} | spec, {}, observe([]), T0, CONFIG, OWNER)
    assert failed.status["phase"] == "Failed" and failed.actions == []


def test_a_split_reads_back_from_its_annotation_and_its_label() -> None:
    split = Split.of([ServedModel("m-1", "s3://b/1", sha(1), 90), ServedModel("m-2", "s3://b/2", sha(2), 10)])
    parsed = Split.parse(split.annotation())
    assert parsed is not None and parsed.annotation() == split.annotation()
    assert split.label() == "m-1:90,m-2:10" and parse_label(split.rollout_name()) == [
        ("m-1", 90),
        ("m-2", 10),
    ]
    alone = Split.of([ServedModel("m-1", "s3://b/1", sha(1))])
    assert alone.rollout_name() == "m-1" and parse_label("m-1") == [("m-1", 100)]
    assert Split.parse("garbage") is None and Split.parse("m-1@abc:x") is None


def test_the_default_endpoint_has_its_split_reverted_it_follows_the_service() -> None:
    edited = {
        "svc-default": {
            "spec": {
                "webService": "svc",
                "traffic": [{"model": "m-9", "weight": 100}],
                "replicas": 1,
                "resources": {"cpu": "500m", "memory": "512Mi"},
            }
        }
    }
    observed = WebServiceObserved(namespace="ns", name="svc", generation=1, models={}, endpoints=edited)
    owner = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "svc", "uid": "w"},
    }
    reverted = decide_web_service({"model": "m-1"}, {}, observed, T0, owner)
    assert reverted.actions == [PatchEndpointSpec("svc-default", {"traffic": None})]
    assert "spec.traffic m-9:100 was removed" in reverted.events[0].message


def test_every_model_of_a_split_is_in_use() -> None:
    body = {
        "kind": "Endpoint",
        "metadata": {},
        "spec": SPLIT_90_10,
        "status": {"traffic": [{"model": "m-0", "weight": 100}]},
    }
    assert model_references(body) == {"m-0", "m-1", "m-2"}


def test_a_mirror_is_loaded_by_every_pod_and_the_status_says_which_one_they_load() -> None:
    spec = {"webService": "svc", "replicas": 1, "model": "m-1", "mirror": {"model": "m-3", "percent": 25}}
    created = decide_endpoint(spec, {}, observe([]), T0, CONFIG, OWNER)
    tpl = template(created)
    env = {e["name"]: e.get("value") for e in tpl["spec"]["containers"][0]["env"]}
    assert json.loads(env["KSTUDIO_MIRROR"]) == {
        "name": "m-3",
        "uri": "s3://models/m-3.ilearner",
        "sha256": sha(3),
        "percent": 25,
    }
    loaded = annotation((1, 100)) + f";mirror=m-3@{sha(3)}:25"
    assert tpl["metadata"]["annotations"][ANNOTATION_TRAFFIC] == loaded
    manifest = next(a.manifest for a in created.actions if a.manifest["kind"] == "Deployment")
    dep = {"annotations": manifest["metadata"]["annotations"]}
    ready = decide_endpoint(spec, created.status, observe([pod("a", loaded)], dep), T0, CONFIG, OWNER)
    assert ready.status["phase"] == "Ready" and ready.status["split"] == "m-1:100"
    assert ready.status["mirror"] == {"model": "m-3", "percent": 25, "digest": sha(3)}
    # Dropping the mirror rolls the pods (they unload it) but changes nobody's answers: no rollout record.
    dropped = decide_endpoint(
        {k: v for k, v in spec.items() if k != "mirror"},
        ready.status,
        observe([pod("a", loaded)], dep),
        T0,
        CONFIG,
        OWNER,
    )
    assert isinstance(dropped.actions[0], ReplaceDeployment) and dropped.events == []
    assert dropped.status["phase"] == "RollingOut" and dropped.status["mirror"]["model"] == "m-3"


def test_a_mirror_that_would_answer_or_cannot_compare_is_refused_and_named() -> None:
    follows = decide_endpoint(
        {"webService": "svc", "mirror": {"model": "m-1"}}, {}, observe([]), T0, CONFIG, OWNER
    )
    accepted = next(c for c in follows.status["conditions"] if c["type"] == "ModelAccepted")
    assert accepted["reason"] == "MirrorAnswers" and "the mirror m-1 also answers" in accepted["message"]
    with pytest.raises(ValidationError, match=r"spec\.mirror\.model m-2 also answers requests"):
        EndpointSpec.model_validate(SPLIT_90_10 | {"mirror": {"model": "m-2"}})
    models = {"m-1": model(1), "m-3": model(3, task="regression")}
    other_task = decide_endpoint(
        {"webService": "svc", "model": "m-1", "mirror": {"model": "m-3"}},
        {},
        observe([], models=models),
        T0,
        CONFIG,
        OWNER,
    )
    accepted = next(c for c in other_task.status["conditions"] if c["type"] == "ModelAccepted")
    assert accepted["reason"] == "TaskMismatch" and "m-3 (regression)" in accepted["message"]


def test_a_mirror_is_in_use_like_the_models_that_answer() -> None:
    body = {
        "kind": "Endpoint",
        "metadata": {},
        "spec": {"model": "m-1", "mirror": {"model": "m-3"}},
        "status": {},
    }
    assert model_references(body) == {"m-1", "m-3"}
