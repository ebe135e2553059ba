"""kwok's fake nodes next to the real one: pods that tolerate the taint and select `type=kwok` are Ready on
a fake node without running; pods that do not stay on the real node, run by our node agent."""

from __future__ import annotations

from typing import Any

import pytest
from nodeagent_kit import (
    CONTAINER_SC,
    RESTRICTED,
    apply,
    deployment_available,
    get_json,
    pods,
    service_manifest,
    wait_for,
    web_deployment,
)

from fixtures.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

TOLERATE_KWOK = "[{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]"


def _pause_deployment(ns: str, name: str, replicas: int, placement: str) -> str:
    """A Deployment whose container would fail on the real node (no such command): only kwok can make
    its pods Ready. `placement`: extra pod spec lines (nodeSelector, tolerations)."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{RESTRICTED}
{placement}
      containers:
      - name: c
        image: kstudio:dev
        command: [/nonexistent/never-runs]
        ports: [{{containerPort: 8080, name: http}}]
        {CONTAINER_SC}
""" + service_manifest(ns, name)


def _ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def test_pods_that_tolerate_the_taint_are_ready_on_fake_nodes_and_the_others_stay_on_the_real_node(
    local_cluster: LocalCluster, fake_nodes: list[str], kube_namespace: str
) -> None:
    ns = kube_namespace
    nodes = {n["metadata"]["name"]: n for n in get_json(local_cluster, "nodes")["items"]}
    assert set(fake_nodes) <= set(nodes) and "kst-node" in nodes
    kwok_taint = [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]

    def only_kwok_taint() -> bool:
        items = get_json(local_cluster, "nodes")["items"]
        fake = [n for n in items if n["metadata"]["name"] in fake_nodes]
        return all(n["spec"].get("taints") == kwok_taint for n in fake)

    # A node just registered also carries the node controller's node.kubernetes.io/not-ready taint until
    # its first Ready heartbeat (kwok's); seen once right after the cluster's start.
    wait_for("the fake nodes with kwok's taint alone", only_kwok_taint, timeout=60)
    for name in fake_nodes:
        assert nodes[name]["metadata"]["labels"]["type"] == "kwok"
    placement = f"      nodeSelector: {{type: kwok}}\n      tolerations: {TOLERATE_KWOK}"
    apply(local_cluster, _pause_deployment(ns, "on-kwok", 4, placement))
    apply(local_cluster, web_deployment(ns, "on-real", replicas=2))
    wait_for(
        "on-kwok 4/4 available", lambda: deployment_available(local_cluster, ns, "on-kwok", 4), timeout=60
    )
    wait_for(
        "on-real 2/2 available", lambda: deployment_available(local_cluster, ns, "on-real", 2), timeout=120
    )

    on_kwok = pods(local_cluster, ns, "app=on-kwok")
    assert len(on_kwok) == 4 and all(_ready(p) for p in on_kwok)
    assert {p["spec"]["nodeName"] for p in on_kwok} <= set(fake_nodes)
    for p in on_kwok:  # kwok's status, not the node agent's (which never saw these pods)
        assert p["status"]["phase"] == "Running"
        assert p["status"]["podIP"].startswith("10.245.") and p["status"]["hostIP"].startswith("192.0.2.")
    on_real = pods(local_cluster, ns, "app=on-real")
    assert len(on_real) == 2 and {p["spec"]["nodeName"] for p in on_real} == {"kst-node"}
    assert all(p["status"]["podIP"].startswith("10.244.0.") for p in on_real)

    # Endpoint readiness comes from the pods: the Service over the fake pods lists all four, ready.
    def ready_addresses() -> list[str]:
        slices = get_json(
            local_cluster, "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=on-kwok"
        )
        return sorted(
            a
            for s in slices["items"]
            for ep in s.get("endpoints") or []
            if ep["conditions"].get("ready")
            for a in ep["addresses"]
        )

    expected = sorted(p["status"]["podIP"] for p in on_kwok)
    wait_for("the four fake pods in the EndpointSlice", lambda: ready_addresses() == expected, timeout=30)


def test_the_taint_keeps_pods_that_do_not_tolerate_it_off_the_fake_nodes(
    local_cluster: LocalCluster, fake_nodes: list[str], kube_namespace: str
) -> None:
    """Selecting the fake nodes without tolerating their taint leaves the pod Pending, never placed."""
    ns = kube_namespace
    apply(local_cluster, _pause_deployment(ns, "selects-only", 1, "      nodeSelector: {type: kwok}"))

    def unschedulable() -> dict[str, Any] | None:
        items = pods(local_cluster, ns, "app=selects-only")
        conds = {c["type"]: c for c in (items[0].get("status", {}).get("conditions") or [])} if items else {}
        scheduled = conds.get("PodScheduled", {})
        return items[0] if scheduled.get("reason") == "Unschedulable" else None

    pod = wait_for("the scheduler to refuse the pod", unschedulable, timeout=60)
    message = next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert f"{len(fake_nodes)} node(s) had untolerated taint(s)" in message  # the fake ones
    assert "1 node(s) didn't match Pod's node affinity/selector" in message  # the real one
    assert not pod["spec"].get("nodeName")
