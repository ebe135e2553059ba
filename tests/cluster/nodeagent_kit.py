"""Helpers shared by the node agent's cluster tests: manifests, polling, kubectl JSON."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fixtures.local_cluster import LocalCluster, wait_until

T = TypeVar("T")
RESTRICTED = """
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}"""
RESTRICTED_POD = """
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}"""
CONTAINER_SC = "securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 90.0, interval: float = 0.5) -> T:
    return wait_until(what, check, timeout, interval)


def apply(kc: LocalCluster, manifest: str) -> None:
    proc = kc.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 0, f"kubectl apply failed: {proc.stderr}"


def get_json(kc: LocalCluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kc.kubectl("get", *args, "-o", "json").stdout)
    return out


def pods(kc: LocalCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kc, "pods", "-n", ns, "-l", selector)["items"]
    return items


def service_manifest(ns: str, name: str) -> str:
    """A Service on port 80 for the pods labelled app=<name> (their port named http)."""
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: http}}]
"""


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
""" + service_manifest(ns, name)


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


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
