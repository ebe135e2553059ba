"""Endpoints placed by spec.scheduling: scorer pods on kwok's fake nodes (Ready without running), the
Endpoints Ready from those pods; the CRD refuses what core/v1 would refuse in a toleration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, wait_until
from serving_kit import build_model

pytestmark = pytest.mark.cluster

ON_KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


def _doc(kind: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def _ready(kube: Kubectl, name: str, replicas: int) -> dict[str, Any] | None:
    status = kube.status("endpoint", name)
    ok = (
        status.get("phase") == "Ready"
        and status.get("model") == "m-a"
        and status.get("readyReplicas") == replicas
    )
    return status if ok else None


def test_endpoints_with_scheduling_serve_from_fake_nodes_and_the_default_one_follows_its_service(
    kube: Kubectl,
    operator: OperatorProcess,
    fake_nodes: list[str],
    example_data: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    sha = build_model(tmp_path / "m-a.ilearner", flip=False)
    uri = f"s3://models/{namespace}/imports/m-a.ilearner"
    example_data.upload(tmp_path / "m-a.ilearner", uri)
    assert kube.apply(_doc("TrainedModel", "m-a", {"artifact": {"uri": uri, "sha256": sha}})).returncode == 0
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-a", "--timeout=60s")

    ws_spec = {"model": "m-a", "scorer": {"replicas": 2, "scheduling": ON_KWOK}}
    ep_spec = {"webService": "svc", "model": "m-a", "replicas": 3, "scheduling": ON_KWOK}
    assert kube.apply(_doc("WebService", "svc", ws_spec)).returncode == 0
    assert kube.apply(_doc("Endpoint", "ep-kwok", ep_spec)).returncode == 0
    default = wait_until("svc-default Ready with 2 pods", lambda: _ready(kube, "svc-default", 2), 120)
    extra = wait_until("ep-kwok Ready with 3 pods", lambda: _ready(kube, "ep-kwok", 3), 120)
    assert default["modelDigest"] == extra["modelDigest"] == sha

    for endpoint, replicas in (("svc-default", 2), ("ep-kwok", 3)):
        scorer_pods = kube.items("pods", f"kstudio.io/endpoint={endpoint}")
        assert len(scorer_pods) == replicas
        assert {p["spec"]["nodeName"] for p in scorer_pods} <= set(fake_nodes), endpoint
        for p in scorer_pods:
            assert p["spec"]["nodeSelector"] == {"type": "kwok"}
            assert ON_KWOK["tolerations"][0] in p["spec"]["tolerations"]

    # The default Endpoint got the service's scheduling; nobody wrote the user's objects' spec (their
    # generation is still 1; the fields they lack are the CRD's defaults).
    assert (kube.get("endpoints.kstudio.io", "svc-default") or {})["spec"]["scheduling"] == ON_KWOK
    for kind, name, applied in (
        ("webservices", "svc", ws_spec),
        ("endpoints.kstudio.io", "ep-kwok", ep_spec),
    ):
        obj = kube.get(kind, name) or {}
        assert obj["metadata"]["generation"] == 1, name
        assert {k: obj["spec"][k] for k in applied} == applied

    # Dropping the service's scheduling brings the default Endpoint's pods back to the real node.
    assert kube.apply(_doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 1}})).returncode == 0

    def back_on_the_real_node() -> list[dict[str, Any]] | None:
        items = kube.items("pods", "kstudio.io/endpoint=svc-default")
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        on_real = len(live) == 1 and live[0]["spec"].get("nodeName") == "kst-node"
        return live if on_real and _ready(kube, "svc-default", 1) else None

    wait_until("svc-default served from kst-node", back_on_the_real_node, 180)
    spec = (kube.get("endpoints.kstudio.io", "svc-default") or {})["spec"]
    assert spec.get("scheduling", {}) in ({}, {"nodeSelector": {}, "tolerations": []})


@pytest.mark.parametrize(
    ("scheduling", "message"),
    [
        ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "value must be empty"),
        ({"tolerations": [{"effect": "NoSchedule"}]}, "a toleration without key needs operator Exists"),
        ({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, "tolerationSeconds applies to"),
        ({"tolerations": [{"key": "k", "effect": "Never"}]}, "Unsupported value"),
        ({"nodeSelector": {"bad key": "x"}}, "keys must match"),
        ({"nodeSelector": {"type": "not a label value"}}, "should match"),
    ],
)
def test_the_api_server_refuses_scheduling_a_pod_could_not_have(
    kube: Kubectl, kstudio_crds: None, scheduling: dict[str, Any], message: str
) -> None:
    result = kube.apply(_doc("Endpoint", "bad", {"webService": "svc", "scheduling": scheduling}))
    assert result.returncode != 0 and message in result.stderr, result.stderr
