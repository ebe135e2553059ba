"""Workloads on the real control plane, run by our node agent: Deployments, Services, readiness, Jobs,
memory limits, pull errors, in-cluster clients, rolling updates under load, garbage collection down to
processes and netns."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nodeagent_kit import (
    CONTAINER_SC,
    RESTRICTED_POD,
    apply,
    cluster_ip_get,
    deployment_available,
    get_json,
    in_cluster_netns_get,
    job_condition,
    job_manifest,
    pods,
    wait_for,
    web_deployment,
)

from fixtures.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster


def test_deployment_becomes_available_with_distinct_pod_ips_service_and_logs(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(local_cluster, web_deployment(ns))
    wait_for("deployment web available", lambda: deployment_available(local_cluster, ns, "web", 2))
    items = pods(local_cluster, ns, "app=web")
    ips = sorted(p["status"]["podIP"] for p in items)
    assert len(ips) == 2 and len(set(ips)) == 2
    assert all(ip.startswith("10.244.0.") and ip != "10.244.0.1" for ip in ips)
    for p in items:
        st = p["status"]
        assert st["phase"] == "Running" and st["hostIP"] == "10.244.0.1"
        conds = {c["type"]: c["status"] for c in st["conditions"]}
        assert conds["Ready"] == conds["ContainersReady"] == conds["Initialized"] == "True"
        cs = st["containerStatuses"][0]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]

    def ready_endpoints() -> list[str]:
        slices = get_json(local_cluster, "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")
        return sorted(
            a
            for s in slices["items"]
            for ep in s.get("endpoints") or []
            if ep["conditions"].get("ready")
            for a in ep["addresses"]
        )

    # the EndpointSlice controller publishes the ready pods (it may trail the Deployment's status a little)
    wait_for("both pods in the EndpointSlice", lambda: ready_endpoints() == ips, timeout=30)
    cluster_ip = get_json(local_cluster, "service", "web", "-n", ns)["spec"]["clusterIP"]
    # kube-proxy programs the new Service asynchronously
    status, body = wait_for(
        "the ClusterIP to answer", lambda: cluster_ip_get(local_cluster, cluster_ip), timeout=30
    )
    assert status == 200 and "Directory listing" in body
    name = items[0]["metadata"]["name"]
    logs = local_cluster.kubectl("logs", "-n", ns, name).stdout
    assert "Serving HTTP on 0.0.0.0 port 8080" in logs
    assert '"GET / HTTP/1.1" 200' in logs  # the readiness probes' requests
    tail = local_cluster.kubectl("logs", "-n", ns, name, "--tail=1", "--timestamps").stdout.splitlines()
    assert len(tail) == 1 and tail[0][:4].isdigit() and "GET / HTTP/1.1" in tail[0]
    # the node's log endpoint serves only clients with a certificate from the cluster CA (the API server)
    anonymous = ssl.create_default_context()
    anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
        in_cluster_netns_get(
            local_cluster, f"https://10.244.0.1:10250/containerLogs/{ns}/{name}/web", anonymous
        )


def test_readiness_probe_gates_the_endpointslice(local_cluster: LocalCluster, kube_namespace: str) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: slow, namespace: {ns}, labels: {{app: slow}}}}
spec:{RESTRICTED_POD}
  containers:
  - name: web
    image: kstudio:dev
    command: [sh, -c, "python -m http.server 8080 & sleep 6; touch /tmp/ready; wait"]
    ports: [{{containerPort: 8080}}]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
    {CONTAINER_SC}
---
apiVersion: v1
kind: Service
metadata: {{name: slow, namespace: {ns}}}
spec:
  selector: {{app: slow}}
  ports: [{{port: 80, targetPort: 8080}}]
"""
    apply(local_cluster, manifest)

    def endpoint_conditions() -> list[bool]:
        slices = get_json(local_cluster, "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=slow")
        return [
            bool(ep["conditions"].get("ready")) for s in slices["items"] for ep in s.get("endpoints") or []
        ]

    def running_not_ready() -> dict[str, Any] | None:
        pod = get_json(local_cluster, "pod", "slow", "-n", ns)
        running = pod["status"].get("phase") == "Running"
        return pod if running and endpoint_conditions() == [False] else None

    # running but not yet ready: listed in the slice as not ready, and the pod says why
    pod = wait_for("a running pod with a not-ready endpoint", running_not_ready, timeout=60)
    ready_cond = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == "False" and ready_cond["reason"] == "ContainersNotReady"
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    wait_for("the endpoint to turn ready", lambda: endpoint_conditions() == [True], timeout=30)


def test_job_exit_0_completes_and_reports_its_termination_message(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    cmd = "echo working; echo -n done-ok > /dev/termination-log"
    apply(local_cluster, job_manifest(ns, "ok", cmd, 0))
    assert wait_for("job ok to finish", lambda: job_condition(local_cluster, ns, "ok")) == "Complete"
    (pod,) = pods(local_cluster, ns, "job-name=ok")
    assert pod["status"]["phase"] == "Succeeded"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed" and term["message"] == "done-ok"
    assert local_cluster.kubectl("logs", "-n", ns, pod["metadata"]["name"]).stdout == "working\n"


def test_job_exit_1_is_retried_per_backoff_limit_then_fails(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(local_cluster, job_manifest(ns, "bad", "echo failing; exit 1", 1))
    assert (
        wait_for("job bad to fail", lambda: job_condition(local_cluster, ns, "bad"), timeout=120) == "Failed"
    )
    items = pods(local_cluster, ns, "job-name=bad")
    assert len(items) == 2  # the first try and one retry (backoffLimit 1)
    for pod in items:
        assert pod["status"]["phase"] == "Failed"
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 1 and term["reason"] == "Error"


def test_container_over_its_memory_limit_is_oomkilled(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: hog, namespace: {ns}}}
spec:{RESTRICTED_POD}
  restartPolicy: Never
  containers:
  - name: hog
    image: kstudio:dev
    command: [python, -c, "x = bytearray(400 * 2**20); print('survived', len(x))"]
    resources: {{limits: {{memory: 64Mi}}}}
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)
    pod = wait_for(
        "pod hog to end",
        lambda: (
            (p := get_json(local_cluster, "pod", "hog", "-n", ns))["status"].get("phase") == "Failed" and p
        ),
    )
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert "survived" not in local_cluster.kubectl("logs", "-n", ns, "hog").stdout


def test_non_project_image_fails_as_a_pull_would(local_cluster: LocalCluster, kube_namespace: str) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: elsewhere, namespace: {ns}}}
spec:{RESTRICTED_POD}
  containers:
  - name: web
    image: docker.io/library/nginx:1.27
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)

    def waiting_reason() -> str | None:
        st = get_json(local_cluster, "pod", "elsewhere", "-n", ns).get("status", {})
        cs = (st.get("containerStatuses") or [{}])[0]
        return (cs.get("state", {}).get("waiting") or {}).get("reason")

    reason = wait_for(
        "a pull failure",
        lambda: r if (r := waiting_reason()) in {"ErrImagePull", "ImagePullBackOff"} else None,
    )
    assert reason in {"ErrImagePull", "ImagePullBackOff"}
    pod = get_json(local_cluster, "pod", "elsewhere", "-n", ns)
    assert pod["status"]["phase"] == "Pending"
    assert "nginx:1.27" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]


def test_in_cluster_client_lists_pods_with_its_projected_token_and_rbac_denies_secrets(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    script = """
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException
config.load_incluster_config()
v1 = client.CoreV1Api()
out = {"pods": sorted(p.metadata.name for p in v1.list_namespaced_pod(NS).items)}
try:
    v1.list_namespaced_secret(NS)
    out["secrets"] = "allowed"
except ApiException as exc:
    out["secrets"] = exc.status
print(json.dumps(out))
""".replace("NS", repr(ns))
    manifest = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: lister, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: lister, namespace: {ns}}}
subjects: [{{kind: ServiceAccount, name: lister, namespace: {ns}}}]
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {ns}}}
spec:{RESTRICTED_POD}
  serviceAccountName: lister
  restartPolicy: Never
  containers:
  - name: main
    image: kstudio:dev
    command: [python, -c, {json.dumps(script)}]
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)
    pod = wait_for(
        "the client pod to finish",
        lambda: (
            (p := get_json(local_cluster, "pod", "client", "-n", ns))["status"].get("phase")
            in {"Succeeded", "Failed"}
            and p
        ),
    )
    logs = local_cluster.kubectl("logs", "-n", ns, "client").stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    result = json.loads(logs.strip().splitlines()[-1])
    assert result == {"pods": ["client"], "secrets": 403}


LOADGEN = r"""
import json, sys, threading, time, http.client
host, rate = sys.argv[1], float(sys.argv[2])
ok = failed = 0
errors, answered = [], []
lock = threading.Lock()
stop = threading.Event()
def worker(offset):
    global ok, failed
    period = 8 / rate
    nxt = time.monotonic() + offset
    while not stop.is_set():
        time.sleep(max(0.0, nxt - time.monotonic()))
        nxt += period
        try:
            conn = http.client.HTTPConnection(host, 80, timeout=3)
            conn.request("GET", "/")
            resp = conn.getresponse(); resp.read(); conn.close()
            good = resp.status == 200
            err = f"{time.time():.3f} HTTP {resp.status}"
        except Exception as exc:
            good, err = False, f"{time.time():.3f} {exc!r}"
        with lock:
            if good:
                ok += 1
                answered.append(time.monotonic())
            else:
                failed += 1
                errors.append(err)
start = time.monotonic()
threads = [threading.Thread(target=worker, args=(i / rate,)) for i in range(8)]
for t in threads: t.start()
print("started", flush=True)
sys.stdin.read()
stop.set()
for t in threads: t.join()
print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:20], "seconds": time.monotonic() - start,
                  "answered": answered}))
"""


def test_rolling_update_under_load_through_the_cluster_ip_loses_no_request(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(local_cluster, web_deployment(ns))
    wait_for("deployment web available", lambda: deployment_available(local_cluster, ns, "web", 2))
    old_pods = {p["metadata"]["name"] for p in pods(local_cluster, ns, "app=web")}
    cluster_ip = get_json(local_cluster, "service", "web", "-n", ns)["spec"]["clusterIP"]
    # kube-proxy rejects connections to a Service it has no endpoints for yet: start once it routes
    wait_for("the ClusterIP to answer", lambda: cluster_ip_get(local_cluster, cluster_ip), timeout=30)
    gen = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            local_cluster.info.layout.netns,
            sys.executable,
            "-c",
            LOADGEN,
            cluster_ip,
            "80",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gen.stdout is not None and gen.stdout.readline().strip() == "started"
        time.sleep(3)
        rollout_started = time.monotonic()  # CLOCK_MONOTONIC, the load generator's clock too
        apply(local_cluster, web_deployment(ns, extra_env="v2"))
        local_cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=180s", timeout=200)
        wait_for(
            "old pods gone",
            lambda: not old_pods & {p["metadata"]["name"] for p in pods(local_cluster, ns, "app=web")},
        )
        rollout_done = time.monotonic()
        time.sleep(2)
        out, _ = gen.communicate(input="", timeout=30)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    result = json.loads(out.strip().splitlines()[-1])
    rate = (result["ok"] + result["failed"]) / result["seconds"]
    print(f"rolling update under load: {result['ok']} ok, {result['failed']} failed, {rate:.1f} req/s")
    assert result["failed"] == 0, result["errors"]
    # The load ran through the rollout, not only around it (the rate is a figure, printed above).
    during = [t for t in result["answered"] if rollout_started <= t <= rollout_done]
    assert during, (rollout_started, rollout_done, result["answered"][:1], result["answered"][-1:])
    new = pods(local_cluster, ns, "app=web")
    assert len(new) == 2 and all(
        e["value"] == "v2" for p in new for e in p["spec"]["containers"][0]["env"] if e["name"] == "VERSION"
    )


def test_deleting_a_deployment_collects_replicasets_pods_processes_and_netns(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    layout = local_cluster.info.layout
    apply(local_cluster, web_deployment(ns, name="gc"))
    wait_for("deployment gc available", lambda: deployment_available(local_cluster, ns, "gc", 2))
    uids = [p["metadata"]["uid"] for p in pods(local_cluster, ns, "app=gc")]
    cgroup_dirs = [Path("/sys/fs/cgroup/memory") / layout.cgroup_parent / uid for uid in uids]
    pids = [int(x) for d in cgroup_dirs for x in (d / "web" / "cgroup.procs").read_text().split()]
    assert pids and all(Path(f"/proc/{pid}").exists() for pid in pids)
    netns_names = [f"{layout.pod_netns_prefix}{uid.replace('-', '')[:12]}" for uid in uids]
    assert all(name in os.listdir("/var/run/netns") for name in netns_names)

    local_cluster.kubectl("delete", "deployment", "gc", "-n", ns, "--wait=false")
    wait_for(
        "replicasets and pods of gc to be collected",
        lambda: (
            not get_json(local_cluster, "replicasets", "-n", ns, "-l", "app=gc")["items"]
            and not pods(local_cluster, ns, "app=gc")
        ),
        timeout=90,
    )
    wait_for(
        "the pods' processes to exit",
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
        timeout=30,
    )
    wait_for("the pods' cgroups to go", lambda: not any(d.exists() for d in cgroup_dirs), timeout=30)
    wait_for(
        "the pods' netns to go", lambda: not set(netns_names) & set(os.listdir("/var/run/netns")), timeout=30
    )
