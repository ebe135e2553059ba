"""The node agent's own behaviour on the real control plane: volumes and env, init containers and
crash-loop back-off, grace periods, native sidecars, and taking over after a crash."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from nodeagent_kit import (
    CONTAINER_SC,
    RESTRICTED,
    RESTRICTED_POD,
    apply,
    get_json,
    job_condition,
    pods,
    process_alive,
    wait_for,
)

from fixtures.local_cluster import LocalCluster

pytestmark = pytest.mark.cluster


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
