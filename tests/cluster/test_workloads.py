"""Workloads on the real control plane, run by our node agent: Deployments, Services, Jobs, limits,
in-cluster clients, rolling updates under load, garbage collection down to processes and netns."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fixtures.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster

T = TypeVar("T")
RESTRICTED = """
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}"""
RESTRICTED_POD = """
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}"""
CONTAINER_SC = "securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 90.0, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def apply(kc: LocalCluster, manifest: str) -> None:
    proc = kc.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 0, f"kubectl apply failed: {proc.stderr}"


def get_json(kc: LocalCluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kc.kubectl("get", *args, "-o", "json").stdout)
    return out


def pods(kc: LocalCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kc, "pods", "-n", ns, "-l", selector)["items"]
    return items


def web_deployment(ns: str, name: str = "web", replicas: int = 2, extra_env: str = "v1") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{RESTRICTED}
      terminationGracePeriodSeconds: 20
      containers:
      - name: web
        image: kstudio:dev
        command: [python, -m, http.server, "8080"]
        env: [{{name: VERSION, value: "{extra_env}"}}]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
        lifecycle: {{preStop: {{sleep: {{seconds: 4}}}}}}
        {CONTAINER_SC}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: http}}]
"""


def deployment_available(kc: LocalCluster, ns: str, name: str, replicas: int) -> bool:
    st = get_json(kc, "deployment", name, "-n", ns).get("status", {})
    return st.get("availableReplicas") == replicas and st.get("updatedReplicas") == replicas


def in_cluster_netns_get(
    kc: LocalCluster, url: str, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    from kstudio_localcluster import netns

    return netns.http_get(kc.info.layout.netns, url, timeout=5.0, context=context)


def cluster_ip_get(kc: LocalCluster, ip: str) -> tuple[int, str] | None:
    try:
        return in_cluster_netns_get(kc, f"http://{ip}/")
    except OSError:
        return None


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


def job_manifest(ns: str, name: str, command: str, backoff_limit: int) -> str:
    return f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}, namespace: {ns}}}
spec:
  backoffLimit: {backoff_limit}
  template:
    spec:{RESTRICTED}
      restartPolicy: Never
      containers:
      - name: main
        image: kstudio:dev
        command: [sh, -c, {json.dumps(command)}]
        {CONTAINER_SC}
"""


def job_condition(kc: LocalCluster, ns: str, name: str) -> str | None:
    conds = get_json(kc, "job", name, "-n", ns).get("status", {}).get("conditions") or []
    done = [c["type"] for c in conds if c["status"] == "True" and c["type"] in {"Complete", "Failed"}]
    return done[0] if done else None


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


def test_volumes_and_env_reach_the_container_and_configmap_changes_are_refreshed(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    script = """
import os, time, pathlib
e = os.environ
print("env", e["GREETING"], e["CM_mode"], e["MEM_MI"], e["POD_IP"] == e["MY_IP"], e["REF"],
      "KUBERNETES_SERVICE_HOST=" + e["KUBERNETES_SERVICE_HOST"], flush=True)
print("files", pathlib.Path("/etc/sec/greeting").read_text(), pathlib.Path("/etc/cfg/mode").read_text(),
      pathlib.Path("/info/labels").read_text(), os.getuid(), flush=True)
pathlib.Path("/scratch/x").write_text("w")
print("hidden", [p for p in HIDDEN if os.path.exists(p)], flush=True)
for _ in range(120):
    if pathlib.Path("/etc/cfg/mode").read_text() == "slow":
        print("refreshed", flush=True)
        break
    time.sleep(0.5)
"""
    hidden = [str(Path.home() / ".cache"), str(local_cluster.info.layout.root)]
    script = script.replace("HIDDEN", repr(hidden))
    manifest = f"""
apiVersion: v1
kind: Secret
metadata: {{name: s1, namespace: {ns}}}
stringData: {{greeting: hello}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c1, namespace: {ns}}}
data: {{mode: fast}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vol, namespace: {ns}, labels: {{tier: test}}}}
spec:{RESTRICTED_POD}
  restartPolicy: Never
  volumes:
  - {{name: sec, secret: {{secretName: s1}}}}
  - {{name: cfg, configMap: {{name: c1}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - name: info
    downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
  containers:
  - name: main
    image: kstudio:dev
    command: [python, -c, {json.dumps(script)}]
    resources: {{limits: {{memory: 256Mi}}}}
    volumeMounts:
    - {{name: sec, mountPath: /etc/sec, readOnly: true}}
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: info, mountPath: /info}}
    env:
    - {{name: GREETING, valueFrom: {{secretKeyRef: {{name: s1, key: greeting}}}}}}
    - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: REF, value: "$(GREETING)-world"}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    envFrom: [{{configMapRef: {{name: c1}}, prefix: CM_}}]
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)

    def log_text() -> str:
        return local_cluster.kubectl("logs", "-n", ns, "vol", check=False).stdout

    wait_for("the pod to print its files", lambda: "files" in log_text())
    local_cluster.kubectl("patch", "configmap", "c1", "-n", ns, "-p", '{"data":{"mode":"slow"}}')
    wait_for("the pod to see the new ConfigMap", lambda: "refreshed" in log_text(), timeout=60)
    logs = log_text()
    assert "env hello fast 256 True hello-world KUBERNETES_SERVICE_HOST=10.96.0.1" in logs
    assert 'files hello fast tier="test" 65532' in logs
    assert "hidden []" in logs  # the node's keys and cluster state are not in the container's filesystem


LOADGEN = r"""
import json, sys, threading, time, http.client
host, rate = sys.argv[1], float(sys.argv[2])
ok = failed = 0
errors = []
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
print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:20], "seconds": time.monotonic() - start}))
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
        apply(local_cluster, web_deployment(ns, extra_env="v2"))
        local_cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=180s", timeout=200)
        wait_for(
            "old pods gone",
            lambda: not old_pods & {p["metadata"]["name"] for p in pods(local_cluster, ns, "app=web")},
        )
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
    assert rate >= 50
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


def test_init_containers_run_in_order_and_a_crashing_container_backs_off_with_previous_logs(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: crashy, namespace: {ns}}}
spec:{RESTRICTED_POD}
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - name: first
    image: kstudio:dev
    command: [sh, -c, "echo first >> /shared/order"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    {CONTAINER_SC}
  - name: second
    image: kstudio:dev
    command: [sh, -c, "echo second >> /shared/order"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    {CONTAINER_SC}
  containers:
  - name: main
    image: kstudio:dev
    command: [sh, -c, "cat /shared/order; echo attempt; exit 3"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)

    def backing_off() -> dict[str, Any] | None:
        st = get_json(local_cluster, "pod", "crashy", "-n", ns).get("status", {})
        cs = (st.get("containerStatuses") or [{}])[0]
        waiting = cs.get("state", {}).get("waiting") or {}
        return cs if waiting.get("reason") == "CrashLoopBackOff" and cs.get("restartCount", 0) >= 2 else None

    cs = wait_for("CrashLoopBackOff after two restarts", backing_off, timeout=60)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in cs["state"]["waiting"]["message"]
    pod = get_json(local_cluster, "pod", "crashy", "-n", ns)
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always: restarting, not failed
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] == [
        "Completed"
    ] * 2
    previous = local_cluster.kubectl("logs", "-n", ns, "crashy", "-c", "main", "--previous").stdout
    assert previous.startswith("first\nsecond\n") and "attempt" in previous


def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: stubborn, namespace: {ns}}}
spec:{RESTRICTED_POD}
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: kstudio:dev
    command: [sh, -c, "trap 'echo got TERM' TERM; echo up; while true; do sleep 0.2; done"]
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)
    wait_for(
        "stubborn running",
        lambda: "up" in local_cluster.kubectl("logs", "-n", ns, "stubborn", check=False).stdout,
    )
    uid = get_json(local_cluster, "pod", "stubborn", "-n", ns)["metadata"]["uid"]
    cgroup = Path("/sys/fs/cgroup/memory") / local_cluster.info.layout.cgroup_parent / uid / "main"
    pids = [int(x) for x in (cgroup / "cgroup.procs").read_text().split()]
    started = time.monotonic()
    local_cluster.kubectl("delete", "pod", "stubborn", "-n", ns, "--wait=true", timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed >= 2.5  # SIGTERM was trapped: the agent waited out the grace period
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_job_with_a_native_sidecar_completes_once_its_main_container_is_done(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    manifest = f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: sidecar, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:{RESTRICTED}
      restartPolicy: Never
      initContainers:
      - name: helper
        image: kstudio:dev
        restartPolicy: Always
        command: [python, -m, http.server, "9000"]
        startupProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1}}
        {CONTAINER_SC}
      containers:
      - name: main
        image: kstudio:dev
        command: [python, -c, "import urllib.request as u; print('sidecar said', u.urlopen('http://127.0.0.1:9000/').status)"]
        {CONTAINER_SC}
"""
    apply(local_cluster, manifest)
    assert (
        wait_for("job sidecar to finish", lambda: job_condition(local_cluster, ns, "sidecar")) == "Complete"
    )
    (pod,) = pods(local_cluster, ns, "job-name=sidecar")
    assert pod["status"]["phase"] == "Succeeded"
    assert "terminated" in pod["status"]["initContainerStatuses"][0]["state"]  # stopped after main finished
    assert (
        local_cluster.kubectl("logs", "-n", ns, pod["metadata"]["name"], "-c", "main").stdout
        == "sidecar said 200\n"
    )


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_restarted_agent_cleans_what_the_dead_one_left_and_resumes_its_pods(
    local_cluster: LocalCluster, kube_namespace: str
) -> None:
    from kstudio_localcluster import cluster, processes

    ns = kube_namespace
    layout = local_cluster.info.layout
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: {ns}}}
spec:{RESTRICTED_POD}
  containers:
  - name: main
    image: kstudio:dev
    command: [python, -m, http.server, "8080"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
    {CONTAINER_SC}
---
apiVersion: v1
kind: Pod
metadata: {{name: once, namespace: {ns}}}
spec:{RESTRICTED_POD}
  restartPolicy: Never
  containers:
  - name: main
    image: kstudio:dev
    command: [sleep, "3600"]
    {CONTAINER_SC}
"""
    apply(local_cluster, manifest)

    def ready(name: str) -> dict[str, Any] | None:
        pod = get_json(local_cluster, "pod", name, "-n", ns)
        cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
        return pod if cs.get("ready") else None

    before = {name: wait_for(f"{name} ready", lambda name=name: ready(name)) for name in ("server", "once")}
    pids = [
        int(x)
        for pod in before.values()
        for x in (
            Path("/sys/fs/cgroup/memory")
            / layout.cgroup_parent
            / pod["metadata"]["uid"]
            / "main"
            / "cgroup.procs"
        )
        .read_text()
        .split()
    ]
    agent = processes.read_record(layout.run, "node-agent")
    assert agent is not None and pids
    os.kill(agent.pid, 9)  # a crash: no chance to clean up
    wait_for("the agent to die", lambda: not processes.record_alive(agent), timeout=10)
    assert all(process_alive(pid) for pid in pids)  # its containers outlive it...

    cluster.ensure_up(layout, bin_dir=local_cluster.bin_dir, started_by="fixture")
    # ...until the new agent cleans them up and takes the pods over (same pod objects, kubelet-style)
    wait_for(
        "the old containers to be killed", lambda: not any(process_alive(pid) for pid in pids), timeout=30
    )
    server = wait_for(
        "server to run again",
        lambda: (p := ready("server")) and p["status"]["containerStatuses"][0]["restartCount"] == 1 and p,
        timeout=60,
    )
    assert server["metadata"]["uid"] == before["server"]["metadata"]["uid"]
    assert (
        server["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"]
        == "ContainerStatusUnknown"
    )
    once = wait_for(
        "the restartPolicy Never pod to fail",
        lambda: (p := get_json(local_cluster, "pod", "once", "-n", ns))["status"]["phase"] == "Failed" and p,
        timeout=60,
    )
    term = once["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "ContainerStatusUnknown" and term["exitCode"] == 137
