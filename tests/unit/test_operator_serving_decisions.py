"""The serving decisions: what an Endpoint and a WebService reconcile do, given what they observed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kstudio_operator.constants import ANNOTATION_MODEL_SHA256, ANNOTATION_SPEC_HASH
from kstudio_operator.decisions.endpoint import (
    CreateChild,
    EndpointObserved,
    ReplaceDeployment,
    decide_endpoint,
    spec_hash,
)
from kstudio_operator.decisions.webservice import PatchEndpointSpec, WebServiceObserved, decide_web_service
from kstudio_operator.settings import OperatorConfig

CONFIG = OperatorConfig(pod_s3_endpoint="10.244.0.1:9000")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SCHEMA = [{"name": "x1", "type": "number"}, {"name": "x2", "type": "number"}]
EP_OWNER = {
    "apiVersion": "kstudio.io/v1alpha1",
    "kind": "Endpoint",
    "metadata": {"name": "ep2", "uid": "u-e"},
}
WS_OWNER = {
    "apiVersion": "kstudio.io/v1alpha1",
    "kind": "WebService",
    "metadata": {"name": "svc", "uid": "u-w"},
}


def model(
    n: int, schema: list[dict[str, Any]] = SCHEMA, phase: str = "Ready", **metrics: float
) -> dict[str, Any]:
    return {
        "spec": {"artifact": {"uri": f"s3://models/m-{n}.ilearner", "sha256": f"{n:x}" * 64}},
        "status": {"phase": phase, "inputSchema": schema, "metrics": metrics},
        "labels": {"kstudio.io/experiment": "exp"},
    }


def sha(n: int) -> str:
    return f"{n:x}" * 64


def pod(n: int, name: str, ready: bool = True, **kw: Any) -> dict[str, Any]:
    return {"name": name, "model": f"m-{n}", "sha256": sha(n), "ready": ready, "deleting": False} | kw


WS = {"spec": {"output": {"columns": ["Scored Labels"]}}, "status": {"model": "m-1"}}


def observe(
    pods: list[dict[str, Any]], deployment: dict[str, Any] | None = None, **kw: Any
) -> EndpointObserved:
    base: dict[str, Any] = {
        "namespace": "ns",
        "name": "ep2",
        "generation": 1,
        "web_service": WS,
        "models": {"m-1": model(1), "m-2": model(2)},
        "deployment": deployment,
        "pods": pods,
        "has_service": True,
    }
    return EndpointObserved(**(base | kw))


def deployment_for(decision: Any) -> dict[str, Any]:
    manifest = next(a.manifest for a in decision.actions if a.manifest["kind"] == "Deployment")
    return {"annotations": manifest["metadata"]["annotations"], "manifest": manifest}


def test_a_new_endpoint_creates_its_service_and_a_rolling_deployment_of_non_root_scorers() -> None:
    decision = decide_endpoint(
        {"webService": "svc", "replicas": 2}, {}, observe([], has_service=False), T0, CONFIG, EP_OWNER
    )
    kinds = [a.manifest["kind"] for a in decision.actions if isinstance(a, CreateChild)]
    assert kinds == ["Service", "Deployment"]
    dep = deployment_for(decision)["manifest"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": "100%"}
    template = dep["spec"]["template"]
    assert template["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == sha(1)
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value", "") for e in template["spec"]["containers"][0]["env"]}
    assert json.loads(env["KSTUDIO_TRAFFIC"]) == [
        {"name": "m-1", "uri": "s3://models/m-1.ilearner", "sha256": sha(1), "weight": 100}
    ]
    assert not any("Key" in v and len(v) > 30 for v in env.values())  # keys only through the Secret volume
    assert decision.status["phase"] == "Pending" and "model" not in decision.status


def test_status_names_the_model_the_ready_pods_serve() -> None:
    ready, _ = _ready_on_m1()
    assert ready.actions == []
    assert (ready.status["phase"], ready.status["model"], ready.status["modelDigest"]) == (
        "Ready",
        "m-1",
        sha(1),
    )
    assert ready.status["modelDigestPrefix"] == sha(1)[:12]  # what `kubectl get kstudio` shows
    assert ready.status["readyReplicas"] == 2


def _ready_on_m1() -> tuple[Any, dict[str, Any]]:
    """A 2-replica endpoint created, then both pods ready on m-1: (that decision, the Deployment)."""
    first = decide_endpoint({"webService": "svc", "replicas": 2}, {}, observe([]), T0, CONFIG, EP_OWNER)
    dep = deployment_for(first)
    spec = {"webService": "svc", "replicas": 2}
    ready = decide_endpoint(
        spec, first.status, observe([pod(1, "a"), pod(1, "b")], dep), T0, CONFIG, EP_OWNER
    )
    return ready, dep


def _serving_m1() -> tuple[dict[str, Any], dict[str, Any]]:
    ready, dep = _ready_on_m1()
    return ready.status, dep


def test_patching_the_model_rolls_the_deployment_and_records_the_rollout() -> None:
    status, dep = _serving_m1()
    spec = {"webService": "svc", "replicas": 2, "model": "m-2"}
    rolling = decide_endpoint(spec, status, observe([pod(1, "a"), pod(1, "b")], dep), T0, CONFIG, EP_OWNER)
    [action] = rolling.actions
    assert isinstance(action, ReplaceDeployment)
    assert action.manifest["spec"]["template"]["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == sha(2)
    assert rolling.status["phase"] == "RollingOut" and rolling.status["model"] == "m-1"
    assert rolling.status["rollout"]["from"] == "m-1" and rolling.status["rollout"]["to"] == "m-2"
    new_dep = {"annotations": {ANNOTATION_SPEC_HASH: spec_hash(action.manifest)}}
    halfway = decide_endpoint(
        spec, rolling.status, observe([pod(1, "a"), pod(1, "b"), pod(2, "c")], new_dep), T0, CONFIG, EP_OWNER
    )
    assert halfway.status["model"] == "m-1" and halfway.actions == []
    done = decide_endpoint(
        spec,
        halfway.status,
        observe([pod(2, "c"), pod(2, "d")], new_dep),
        T0 + timedelta(seconds=4),
        CONFIG,
        EP_OWNER,
    )
    assert (done.status["phase"], done.status["model"], done.status["modelDigest"]) == (
        "Ready",
        "m-2",
        sha(2),
    )
    assert done.status["modelDigestPrefix"] == sha(2)[:12]
    assert done.status["rollout"]["seconds"] == 4.0 and done.status["history"][-1]["to"] == "m-2"


def test_a_model_that_cannot_load_stalls_the_rollout_and_the_old_pods_keep_serving() -> None:
    status, dep = _serving_m1()
    spec = {"webService": "svc", "replicas": 2, "model": "m-2"}
    crashing = pod(
        2,
        "c",
        ready=False,
        waiting="CrashLoopBackOff",
        lastTerminated={"exitCode": 2, "message": "artifact has sha256 00.., expected 22.."},
    )
    stalled = decide_endpoint(
        spec, status, observe([pod(1, "a"), pod(1, "b"), crashing], dep), T0, CONFIG, EP_OWNER
    )
    assert stalled.status["phase"] == "Stalled" and stalled.status["model"] == "m-1"
    ready = next(c for c in stalled.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "expected 22" in ready["message"]
    assert [e.reason for e in stalled.events] == ["RolloutStarted", "RolloutStalled"]


def test_a_model_with_another_input_schema_is_refused_naming_the_columns() -> None:
    status, dep = _serving_m1()
    other = model(3, schema=[{"name": "x1", "type": "number"}, {"name": "x3", "type": "string"}])
    obs = observe([pod(1, "a"), pod(1, "b")], dep, models={"m-1": model(1), "m-3": other})
    refused = decide_endpoint(
        {"webService": "svc", "replicas": 2, "model": "m-3"}, status, obs, T0, CONFIG, EP_OWNER
    )
    assert refused.actions == [] and refused.status["model"] == "m-1"
    accepted = next(c for c in refused.status["conditions"] if c["type"] == "ModelAccepted")
    assert accepted["reason"] == "SchemaChanged" and "added x3" in accepted["message"]
    assert "removed x2" in accepted["message"]
    allowed = decide_endpoint(
        {"webService": "svc", "replicas": 2, "model": "m-3", "allowSchemaChange": True},
        status,
        obs,
        T0,
        CONFIG,
        EP_OWNER,
    )
    assert isinstance(allowed.actions[0], ReplaceDeployment)


def test_a_model_not_ready_yet_changes_nothing() -> None:
    status, dep = _serving_m1()
    obs = observe([pod(1, "a"), pod(1, "b")], dep, models={"m-1": model(1), "m-2": model(2, phase="Pending")})
    waiting = decide_endpoint(
        {"webService": "svc", "replicas": 2, "model": "m-2"}, status, obs, T0, CONFIG, EP_OWNER
    )
    assert waiting.actions == [] and waiting.status["model"] == "m-1"


def test_the_default_endpoint_follows_its_service_whatever_its_spec_says() -> None:
    obs = observe([], is_default=True)
    decision = decide_endpoint({"webService": "svc", "model": "m-2"}, {}, obs, T0, CONFIG, EP_OWNER)
    template = deployment_for(decision)["manifest"]["spec"]["template"]
    assert template["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == sha(1)


def ws_observed(**kw: Any) -> WebServiceObserved:
    base: dict[str, Any] = {"namespace": "ns", "name": "svc", "generation": 1, "models": {}}
    return WebServiceObserved(**(base | kw))


def test_a_web_service_creates_its_default_endpoint_and_reverts_edits_to_its_model() -> None:
    created = decide_web_service({"model": "m-1"}, {}, ws_observed(models={"m-1": model(1)}), T0, WS_OWNER)
    [action] = created.actions
    assert isinstance(action, CreateChild) and action.manifest["metadata"]["name"] == "svc-default"
    assert "model" not in action.manifest["spec"]
    assert action.manifest["metadata"]["ownerReferences"][0]["uid"] == "u-w"
    edited = {
        "svc-default": {
            "spec": {
                "webService": "svc",
                "model": "m-9",
                "replicas": 1,
                "resources": {"cpu": "500m", "memory": "512Mi"},
            }
        }
    }
    reverted = decide_web_service(
        {"model": "m-1"}, created.status, ws_observed(endpoints=edited), T0, WS_OWNER
    )
    assert reverted.actions == [PatchEndpointSpec("svc-default", {"model": None})]
    assert [e.reason for e in reverted.events] == ["DefaultEndpointReverted"]


def test_the_status_that_comes_with_the_default_endpoint_lists_it_so_its_arrival_writes_nothing() -> None:
    """The service names its default Endpoint and that Endpoint's URL (both known when it creates it): the
    Endpoint's appearance in the index and its first, Pending status change nothing to write (two status
    writes per WebService while creating, not four)."""
    created = decide_web_service({"model": "m-1"}, {}, ws_observed(models={"m-1": model(1)}), T0, WS_OWNER)
    assert created.status["endpoints"] == ["svc-default"] and created.status["endpointCount"] == 1
    assert created.status["url"] == "http://svc-default.ns.svc:80"
    spec = {"webService": "svc", "replicas": 1, "resources": {"cpu": "500m", "memory": "512Mi"}}
    for ep_status in ({}, {"phase": "Pending", "url": "http://svc-default.ns.svc:80"}):
        arrived = {"svc-default": {"name": "svc-default", "spec": spec, "status": ep_status}}
        again = decide_web_service(
            {"model": "m-1"},
            created.status,
            ws_observed(models={"m-1": model(1)}, endpoints=arrived),
            T0,
            WS_OWNER,
        )
        assert again.status == created.status and again.actions == []


def test_model_from_promotes_a_better_model_and_refuses_a_worse_one_with_reasons() -> None:
    spec = {"modelFrom": {"experiment": "exp", "promote": {"metric": "accuracy", "minDelta": 0.01}}}
    models = {"m-1": model(1, accuracy=0.90), "m-2": model(2, accuracy=0.95), "m-3": model(3, accuracy=0.93)}
    first = decide_web_service(spec, {}, ws_observed(models=models, experiment_latest="m-1"), T0, WS_OWNER)
    assert first.status["model"] == "m-1"
    better = decide_web_service(
        spec, first.status, ws_observed(models=models, experiment_latest="m-2"), T0, WS_OWNER
    )
    assert better.status["model"] == "m-2"
    promotion = better.status["promotions"][-1]
    assert (promotion["from"], promotion["to"], promotion["promoted"]) == ("m-1", "m-2", True)
    assert abs(promotion["delta"] - 0.05) < 1e-9 and "0.9500 vs 0.9000" in promotion["reason"]
    worse = decide_web_service(
        spec, better.status, ws_observed(models=models, experiment_latest="m-3"), T0, WS_OWNER
    )
    assert worse.status["model"] == "m-2"
    refusal = worse.status["promotions"][-1]
    assert (refusal["to"], refusal["promoted"]) == ("m-3", False) and "< minDelta" in refusal["reason"]
    again = decide_web_service(
        spec, worse.status, ws_observed(models=models, experiment_latest="m-3"), T0, WS_OWNER
    )
    assert again.status["promotions"] == worse.status["promotions"] and again.events == []


def test_an_error_metric_promotes_when_it_goes_down() -> None:
    spec = {"modelFrom": {"experiment": "exp", "promote": {"metric": "rmse"}}}
    models = {"m-1": model(1, rmse=50.0), "m-2": model(2, rmse=45.0)}
    status = decide_web_service(
        spec, {}, ws_observed(models=models, experiment_latest="m-1"), T0, WS_OWNER
    ).status
    lower = decide_web_service(
        spec, status, ws_observed(models=models, experiment_latest="m-2"), T0, WS_OWNER
    )
    assert lower.status["model"] == "m-2"


def test_an_explicit_direction_overrides_the_metrics_natural_one() -> None:
    spec = {"modelFrom": {"experiment": "exp", "promote": {"metric": "f1_macro", "direction": "lower"}}}
    models = {"m-1": model(1, f1_macro=0.9), "m-2": model(2, f1_macro=0.8), "m-3": model(3, f1_macro=0.95)}
    status = decide_web_service(
        spec, {}, ws_observed(models=models, experiment_latest="m-1"), T0, WS_OWNER
    ).status
    lower = decide_web_service(
        spec, status, ws_observed(models=models, experiment_latest="m-2"), T0, WS_OWNER
    )
    assert lower.status["model"] == "m-2" and "(lower is better)" in lower.status["promotions"][-1]["reason"]
    higher = decide_web_service(
        spec, lower.status, ws_observed(models=models, experiment_latest="m-3"), T0, WS_OWNER
    )
    assert higher.status["model"] == "m-2" and higher.status["promotions"][-1]["promoted"] is False


def test_endpoint_settings_reach_the_scorer_environment() -> None:
    spec = {
        "webService": "svc",
        "replicas": 1,
        "maxConcurrentCalls": 7,
        "logging": {"level": "All", "sampleData": True},
        "resources": {"cpu": "1", "memory": "1Gi"},
    }
    decision = decide_endpoint(spec, {}, observe([]), T0, CONFIG, EP_OWNER)
    container = deployment_for(decision)["manifest"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert env["KSTUDIO_MAX_CONCURRENT_CALLS"] == "7"
    assert (env["KSTUDIO_LOGGING_LEVEL"], env["KSTUDIO_SAMPLE_DATA"]) == ("All", "true")
    assert env["KSTUDIO_LOGGING_URI"] == "s3://kstudio-logs/ns/ep2"
    assert env["KSTUDIO_MAX_MODEL_BYTES"] == str(512 * 2**20)
    assert env["KSTUDIO_JOBS_STORE_URI"] == "s3://kstudio-logs/ns/ep2/jobs"  # replicas share batch jobs
    assert container["resources"]["limits"]["memory"] == "1Gi"


def test_the_rollback_annotation_restores_the_previous_model_until_the_spec_changes() -> None:
    status, dep = _serving_m1()
    spec = {"webService": "svc", "replicas": 2, "model": "m-2"}
    rolling = decide_endpoint(spec, status, observe([pod(1, "a"), pod(1, "b")], dep), T0, CONFIG, EP_OWNER)
    new_dep = {"annotations": {ANNOTATION_SPEC_HASH: spec_hash(rolling.actions[0].manifest)}}
    done = decide_endpoint(
        spec, rolling.status, observe([pod(2, "c"), pod(2, "d")], new_dep), T0, CONFIG, EP_OWNER
    )
    assert done.status["model"] == "m-2"

    back = decide_endpoint(
        spec,
        done.status,
        observe([pod(2, "c"), pod(2, "d")], new_dep, rollback_request="t1"),
        T0,
        CONFIG,
        EP_OWNER,
    )
    [action] = back.actions
    assert action.manifest["spec"]["template"]["metadata"]["annotations"][ANNOTATION_MODEL_SHA256] == sha(1)
    assert back.status["rolledBack"] == {"token": "t1", "model": "m-1", "specModel": "m-2", "active": True}
    assert next(e.reason for e in back.events) == "RollingBack"
    held = decide_endpoint(
        spec,
        back.status,
        observe([pod(1, "e"), pod(1, "f")], dep, rollback_request="t1"),
        T0,
        CONFIG,
        EP_OWNER,
    )
    assert held.actions == [] and held.status["model"] == "m-1"
    # a new spec.model wins over the rollback
    moved = decide_endpoint(
        spec | {"model": "m-2"} | {"allowSchemaChange": False} | {"model": "m-3"},
        held.status,
        observe(
            [pod(1, "e"), pod(1, "f")], dep, rollback_request="t1", models={"m-1": model(1), "m-3": model(3)}
        ),
        T0,
        CONFIG,
        EP_OWNER,
    )
    assert moved.status["rolledBack"]["active"] is False
    assert [e.reason for e in moved.events] == ["RolloutStarted"]  # to m-3, no second rollback
    assert isinstance(moved.actions[0], ReplaceDeployment)


def test_a_web_service_with_more_endpoints_than_status_lists_still_reconciles_and_counts_them() -> None:
    endpoints = {f"ep-{i:04d}": {"spec": {"webService": "svc", "model": "m-1"}} for i in range(999)}
    endpoints["svc-default"] = {"spec": {"webService": "svc"}}  # its own, counted like the others
    decision = decide_web_service(
        {"model": "m-1"}, {}, ws_observed(models={"m-1": model(1)}, endpoints=endpoints), T0, WS_OWNER
    )
    assert decision.status["endpointCount"] == 1000
    assert decision.status["endpoints"] == sorted(endpoints)[:256]


def test_a_rollback_request_without_history_is_answered_once_and_never_acted_on_later() -> None:
    """Found by the cluster test of the annotation: an impossible request was not remembered, so every
    reconcile posted RollbackImpossible again, and the first rollout after it was rolled back at once."""
    status, dep = _serving_m1()
    spec = {"webService": "svc", "replicas": 2, "model": "m-1"}
    serving = observe([pod(1, "a"), pod(1, "b")], dep, rollback_request="t0")
    first = decide_endpoint(spec, status, serving, T0, CONFIG, EP_OWNER)
    assert [e.reason for e in first.events] == ["RollbackImpossible"]
    again = decide_endpoint(spec, first.status, serving, T0, CONFIG, EP_OWNER)
    assert again.events == [] and again.actions == []

    spec = spec | {"model": "m-2"}
    rolling = decide_endpoint(spec, again.status, serving, T0, CONFIG, EP_OWNER)
    new_dep = {"annotations": {ANNOTATION_SPEC_HASH: spec_hash(rolling.actions[0].manifest)}}
    on_m2 = observe([pod(2, "c"), pod(2, "d")], new_dep, rollback_request="t0")
    done = decide_endpoint(spec, rolling.status, on_m2, T0, CONFIG, EP_OWNER)
    assert done.status["model"] == "m-2" and done.status["history"][-1]["from"] == "m-1"
    later = decide_endpoint(spec, done.status, on_m2, T0, CONFIG, EP_OWNER)
    assert later.actions == [] and later.status["model"] == "m-2"
    assert "RollingBack" not in [e.reason for e in later.events]
