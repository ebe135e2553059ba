"""The real control plane answers as Kubernetes v1.36.3 and enforces what it should."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from fixtures.local_cluster import LocalCluster
from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.kstudio.dev
spec:
  group: test.kstudio.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
"""


def test_kubectl_version_reports_server_v1_36_3(local_cluster: LocalCluster) -> None:
    out = json.loads(local_cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == "v1.36.3"
    assert out["clientVersion"]["gitVersion"] == "v1.36.3"


def test_readyz_is_ok(local_cluster: LocalCluster) -> None:
    assert local_cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_controllers_run_and_create_default_service_account(local_cluster: LocalCluster) -> None:
    out = local_cluster.kubectl("get", "serviceaccount", "default", "-n", "kube-system", "-o", "name")
    assert out.stdout.strip() == "serviceaccount/default"


def test_crd_schema_rejects_a_bad_object_and_accepts_a_good_one(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    local_cluster.kubectl("apply", "-f", "-", input=CRD)
    local_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.kstudio.dev", "--timeout=30s"
    )
    bad = "apiVersion: test.kstudio.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 99}\n"
    proc = local_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert "spec.size" in proc.stderr and "less than or equal to 10" in proc.stderr
    missing = "apiVersion: test.kstudio.dev/v1\nkind: Widget\nmetadata: {name: empty}\nspec: {}\n"
    proc = local_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=missing, check=False)
    assert proc.returncode != 0 and "spec.size: Required value" in proc.stderr
    good = "apiVersion: test.kstudio.dev/v1\nkind: Widget\nmetadata: {name: good}\nspec: {size: 3}\n"
    local_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=good)
    got = json.loads(
        local_cluster.kubectl("get", "widget", "good", "-n", kube_namespace, "-o", "json").stdout
    )
    assert got["spec"] == {"size": 3}


def test_test_namespace_enforces_restricted_pod_security(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    pod = f"""
apiVersion: v1
kind: Pod
metadata: {{name: root-pod, namespace: {kube_namespace}}}
spec:
  containers: [{{name: c, image: "kstudio:dev", securityContext: {{privileged: true}}}}]
"""
    proc = local_cluster.kubectl("apply", "-f", "-", input=pod, check=False)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr


def test_kubernetes_service_points_at_the_node_ip(local_cluster: LocalCluster) -> None:
    svc = json.loads(local_cluster.kubectl("get", "svc", "kubernetes", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    eps = json.loads(
        local_cluster.kubectl(
            "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes", "-o", "json"
        ).stdout
    )
    addresses = {a for item in eps["items"] for ep in item["endpoints"] for a in ep["addresses"]}
    assert addresses == {"10.244.0.1"}


def test_minio_answers_on_the_host_forward(local_cluster: LocalCluster) -> None:
    url = f"http://{local_cluster.minio.host_endpoint}/minio/health/ready"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200


def test_cluster_namespace_has_no_route_outside(local_cluster: LocalCluster) -> None:
    name = local_cluster.info.layout.netns
    main_routes = subprocess.run(
        ["ip", "netns", "exec", name, "ip", "-4", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert "default" not in main_routes
    assert "10.96.0.0/16 dev kst0" in main_routes
    assert "10.244.0.0/24 dev kst0" in main_routes
    with pytest.raises(OSError):
        netns.connect_in_netns(name, "1.1.1.1", 443, timeout=2.0)


def test_node_identity_is_confined_by_node_authorizer_and_node_restriction(
    local_cluster: LocalCluster,
) -> None:
    layout = local_cluster.info.layout
    node_kc = layout.component_kubeconfigs / "node.kubeconfig"
    as_node = ["--kubeconfig", str(node_kc), "--server", f"https://127.0.0.1:{layout.api_host_port}"]
    whoami = json.loads(local_cluster.kubectl(*as_node, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:node:kst-node"
    assert "system:nodes" in whoami["status"]["userInfo"]["groups"]
    denied = local_cluster.kubectl(*as_node, "get", "secrets", "-A", check=False)
    assert (
        denied.returncode != 0
        and 'User "system:node:kst-node" cannot list resource "secrets"' in denied.stderr
    )
    other = "apiVersion: v1\nkind: Node\nmetadata: {name: some-other-node}\n"
    refused = local_cluster.kubectl(*as_node, "create", "-f", "-", input=other, check=False)
    assert refused.returncode != 0
    assert 'node "kst-node" is not allowed to modify node "some-other-node"' in refused.stderr
