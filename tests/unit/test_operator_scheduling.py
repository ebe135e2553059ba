"""Scorer pod placement: Endpoint spec.scheduling and WebService spec.scorer.scheduling (nodeSelector,
tolerations) reach the scorer pod template; the schema refuses what core/v1 would refuse."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError
from test_operator_serving_decisions import CONFIG, EP_OWNER, T0, WS_OWNER

from kstudio_operator import crdgen
from kstudio_operator.constants import ANNOTATION_SPEC_HASH
from kstudio_operator.decisions.endpoint import (
    CreateChild,
    EndpointObserved,
    ReplaceDeployment,
    decide_endpoint,
    spec_hash,
)
from kstudio_operator.decisions.webservice import PatchEndpointSpec, WebServiceObserved, decide_web_service
from kstudio_operator.resources import ENDPOINT, WEB_SERVICE
from kstudio_operator.resources.endpoint import EndpointSpec
from kstudio_operator.resources.scheduling import Scheduling, Toleration

WS = {"spec": {"output": {"columns": ["Scored Labels"]}}, "status": {"model": "m-1"}}
KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


MODEL = {
    "spec": {"artifact": {"uri": "s3://models/m-1.ilearner", "sha256": "1" * 64}},
    "status": {"phase": "Ready", "inputSchema": [{"name": "x1", "type": "number"}]},
}


def _observe(**kw: Any) -> EndpointObserved:
    base: dict[str, Any] = {
        "namespace": "ns",
        "name": "ep2",
        "generation": 1,
        "web_service": WS,
        "models": {"m-1": MODEL},
        "deployment": None,
        "pods": [],
        "has_service": True,
    }
    return EndpointObserved(**(base | kw))


def _deployment(spec: dict[str, Any]) -> dict[str, Any]:
    decision = decide_endpoint(spec, {}, _observe(), T0, CONFIG, EP_OWNER)
    [manifest] = [a.manifest for a in decision.actions if a.manifest["kind"] == "Deployment"]
    return manifest


def test_endpoint_scheduling_puts_node_selector_and_tolerations_on_the_scorer_pods() -> None:
    pod = _deployment({"webService": "svc", "scheduling": KWOK})["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"] == [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]


def test_an_endpoint_without_scheduling_keeps_the_pod_template_it_had() -> None:
    """No nodeSelector/tolerations keys at all: Deployments made before the field existed keep their
    spec hash, so upgrading the operator rolls no scorer pods."""
    plain = _deployment({"webService": "svc"})
    empty = _deployment({"webService": "svc", "scheduling": {"nodeSelector": {}, "tolerations": []}})
    assert not {"nodeSelector", "tolerations"} & set(plain["spec"]["template"]["spec"])
    assert spec_hash(plain) == spec_hash(empty)
    assert spec_hash(plain) != spec_hash(_deployment({"webService": "svc", "scheduling": KWOK}))


def _ws(**kw: Any) -> WebServiceObserved:
    base: dict[str, Any] = {"namespace": "ns", "name": "svc", "generation": 1, "models": {"m-1": MODEL}}
    return WebServiceObserved(**(base | kw))


def test_the_web_services_scorer_scheduling_reaches_its_default_endpoint() -> None:
    spec = {"model": "m-1", "scorer": {"replicas": 2, "scheduling": KWOK}}
    created = decide_web_service(spec, {}, _ws(), T0, WS_OWNER)
    [action] = created.actions
    assert isinstance(action, CreateChild)
    assert action.manifest["spec"]["scheduling"] == KWOK
    assert EndpointSpec.model_validate(action.manifest["spec"]).scheduling == Scheduling.model_validate(KWOK)


def test_a_changed_scorer_scheduling_patches_the_default_endpoint_removing_dropped_selector_keys() -> None:
    their = {
        "webService": "svc",
        "replicas": 1,
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "scheduling": {"nodeSelector": {"type": "kwok", "zone": "a"}, "tolerations": []},
    }
    spec = {"model": "m-1", "scorer": {"scheduling": KWOK}}
    decision = decide_web_service(spec, {}, _ws(endpoints={"svc-default": {"spec": their}}), T0, WS_OWNER)
    expected = {"nodeSelector": {"type": "kwok", "zone": None}, "tolerations": KWOK["tolerations"]}
    assert decision.actions == [PatchEndpointSpec("svc-default", {"scheduling": expected})]


def test_a_default_endpoint_without_the_field_is_not_written_when_the_service_sets_none() -> None:
    """Absent and empty mean the same: an operator restart over old objects writes nothing."""
    their = {"webService": "svc", "replicas": 1, "resources": {"cpu": "500m", "memory": "512Mi"}}
    decision = decide_web_service(
        {"model": "m-1"}, {}, _ws(endpoints={"svc-default": {"spec": their}}), T0, WS_OWNER
    )
    assert decision.actions == []
    created = decide_web_service({"model": "m-1"}, {}, _ws(), T0, WS_OWNER)
    assert "scheduling" not in created.actions[0].manifest["spec"]


def test_unsetting_the_scorer_scheduling_clears_it_on_the_default_endpoint() -> None:
    their = {
        "webService": "svc",
        "replicas": 1,
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "scheduling": KWOK,
    }
    decision = decide_web_service(
        {"model": "m-1"}, {}, _ws(endpoints={"svc-default": {"spec": their}}), T0, WS_OWNER
    )
    patch = {"scheduling": {"nodeSelector": {"type": None}, "tolerations": []}}
    assert decision.actions == [PatchEndpointSpec("svc-default", patch)]


@pytest.mark.parametrize(
    ("toleration", "message"),
    [
        ({"key": "k", "operator": "Exists", "value": "v"}, "value must be empty when operator is Exists"),
        ({"value": "v", "effect": "NoSchedule"}, "a toleration without key needs operator Exists"),
        ({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}, "tolerationSeconds applies to"),
        ({"key": "k", "operator": "In"}, "'Exists' or 'Equal'"),
        ({"key": "k", "effect": "NoRun"}, "'NoSchedule', 'PreferNoSchedule' or 'NoExecute'"),
        ({"key": "bad key"}, "should match pattern"),
    ],
)
def test_tolerations_are_refused_where_core_v1_refuses_them(toleration: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Toleration.model_validate(toleration)


def test_tolerations_core_v1_accepts_are_accepted() -> None:
    for ok in (
        {"operator": "Exists"},
        {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 30},
    ):  # fmt: skip
        assert Toleration.model_validate(ok).to_wire() == ok


def test_node_selector_keys_and_values_must_be_labels() -> None:
    Scheduling.model_validate({"nodeSelector": {"kubernetes.io/hostname": "kwok-node-0", "type": ""}})
    with pytest.raises(ValidationError):
        Scheduling.model_validate({"nodeSelector": {"type": "no spaces"}})
    with pytest.raises(ValidationError):
        Scheduling.model_validate({"nodeSelector": {"-bad/key": "x"}})


@pytest.mark.parametrize("path", [("spec", "scheduling"), ("spec", "scorer", "scheduling")])
def test_the_crds_check_scheduling_as_the_api_server_checks_a_pod(path: tuple[str, ...]) -> None:
    kind = ENDPOINT if path[1] == "scheduling" else WEB_SERVICE
    node = crdgen.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in path:
        node = node["properties"][part]
    selector = node["properties"]["nodeSelector"]
    assert selector["additionalProperties"]["maxLength"] == 63
    [key_rule] = selector["x-kubernetes-validations"]
    assert key_rule["rule"].startswith("self.all(k, k.matches('^(") and "\\" not in key_rule["rule"]
    toleration = node["properties"]["tolerations"]["items"]
    assert set(toleration["properties"]) == {"key", "operator", "value", "effect", "tolerationSeconds"}
    assert len(toleration["x-kubernetes-validations"]) == 3


def _apply(target: Any, patch: Any) -> Any:
    """RFC 7386's reference algorithm: what the API server makes of `target` merge-patched with `patch`."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply(out.get(key), value)
    return out


def _patch_to(spec: dict[str, Any], placed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(desired Deployment, the decision's patch) for an Endpoint `spec` whose Deployment's pods are
    `placed` (their nodeSelector/tolerations as the index sees them) and whose spec hash is outdated."""
    observed = {"annotations": {ANNOTATION_SPEC_HASH: "outdated"}, **placed}
    decision = decide_endpoint(spec, {}, _observe(deployment=observed), T0, CONFIG, EP_OWNER)
    [action] = decision.actions
    assert isinstance(action, ReplaceDeployment)
    return action.manifest, action.patch


def _placed(manifest: dict[str, Any], placement: dict[str, Any]) -> dict[str, Any]:
    """`manifest` as a Deployment whose pods are placed by `placement` instead."""
    out = copy.deepcopy(manifest)
    pod = out["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations"):
        pod.pop(key, None)
    pod.update(copy.deepcopy(placement))
    return out


def test_the_deployment_patch_removes_the_placement_a_new_spec_drops() -> None:
    """The Deployment is merge-patched: dropped node selector keys and tolerations must be sent as null,
    or the pods would stay pinned to the old nodes. The decision computes the whole patch."""
    kwok_zone_b = {"nodeSelector": {"type": "kwok", "zone": "b"}, "tolerations": KWOK["tolerations"]}
    moved, patch = _patch_to(
        {"webService": "svc", "scheduling": {"nodeSelector": {"zone": "a"}}}, kwok_zone_b
    )
    pod = patch["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"type": None, "zone": "a"} and pod["tolerations"] is None
    assert patch["metadata"]["annotations"] == moved["metadata"]["annotations"]
    assert moved["spec"]["template"]["spec"]["nodeSelector"] == {"zone": "a"}  # the manifest is left as built
    unpinned, unpin = _patch_to({"webService": "svc"}, {"nodeSelector": {"type": "kwok"}})
    assert unpin["spec"]["template"]["spec"]["nodeSelector"] is None
    assert unpin["spec"]["template"]["spec"]["tolerations"] is None
    kept, keep = _patch_to({"webService": "svc", "scheduling": KWOK}, {"nodeSelector": {"type": "kwok"}})
    assert keep["spec"]["template"]["spec"]["tolerations"] == KWOK["tolerations"]
    # Applied to the Deployment as it was, each patch gives exactly the desired spec.
    for desired, sent, before in (
        (moved, patch, kwok_zone_b),
        (unpinned, unpin, {"nodeSelector": {"type": "kwok"}}),
        (kept, keep, {"nodeSelector": {"type": "kwok"}}),
    ):
        assert _apply(_placed(desired, before), sent)["spec"] == desired["spec"]


def test_the_deployment_patch_writes_only_its_own_annotation() -> None:
    """Only the spec-hash annotation is ours: others (the Deployment controller's revision) stay."""
    _, patch = _patch_to({"webService": "svc"}, {})
    assert set(patch["metadata"]["annotations"]) == {ANNOTATION_SPEC_HASH}
