"""Two scorer replicas behind a Service on the local cluster share their batch jobs through object storage:
whichever pod the Service picks, `GET /jobs/{id}` (and the classic status route) answers the same job."""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from nodeagent_kit import CONTAINER_SC, RESTRICTED, apply, deployment_available, get_json, pods, wait_for
from sklearn.linear_model import LogisticRegression

from fixtures.local_cluster import LocalCluster
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_core.storage import ObjectStore
from kstudio_localcluster import netns
from kstudio_trainer.artifact_writer import write_ilearner

pytestmark = pytest.mark.cluster

BUCKET = "replica-jobs"
FEATURES = [f"f{i}" for i in range(4)]


class _InClusterConnection(http.client.HTTPConnection):
    """HTTP from inside the cluster's network namespace (ClusterIPs and pod IPs live there)."""

    def __init__(self, kc: LocalCluster, host: str, port: int) -> None:
        super().__init__(host, port, timeout=10)
        self._netns = kc.info.layout.netns

    def connect(self) -> None:
        self.sock = netns.connect_in_netns(self._netns, self.host, self.port, 10.0)


def call(kc: LocalCluster, host: str, method: str, path: str, body: Any = None, port: int = 80) -> Any:
    """One request on a fresh connection (so the Service balances each one); returns (status, JSON)."""
    conn = _InClusterConnection(kc, host, port)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("content-type") or ""
        return resp.status, (json.loads(raw) if ctype.startswith("application/json") and raw else raw)
    finally:
        conn.close()


def scorer_manifest(ns: str, model_uri: str, sha256: str, minio_endpoint: str) -> str:
    env = {
        "KSTUDIO_MODEL_URI": model_uri,
        "KSTUDIO_MODEL_SHA256": sha256,
        "KSTUDIO_AUTH_ENABLED": "false",
        "KSTUDIO_S3_ENDPOINT": minio_endpoint,
        "KSTUDIO_S3_CREDENTIALS_DIR": "/var/run/kstudio/s3",
        "KSTUDIO_JOBS_STORE_URI": f"s3://{BUCKET}/{ns}/jobs",
        "KSTUDIO_JOBS_HEARTBEAT_SECONDS": "1",
        "KSTUDIO_JOBS_LEASE_SECONDS": "10",
    }
    env_yaml = "".join(f"\n        - {{name: {k}, value: {json.dumps(v)}}}" for k, v in env.items())
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: scorer, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: scorer}}}}
  template:
    metadata: {{labels: {{app: scorer}}}}
    spec:{RESTRICTED}
      volumes: [{{name: s3, secret: {{secretName: s3}}}}, {{name: tmp, emptyDir: {{}}}}]
      containers:
      - name: scorer
        image: kstudio:dev
        args: [serve]
        env:
        - {{name: KSTUDIO_POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}{env_yaml}
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{httpGet: {{path: /readyz, port: http}}, periodSeconds: 1}}
        volumeMounts:
        - {{name: s3, mountPath: /var/run/kstudio/s3, readOnly: true}}
        - {{name: tmp, mountPath: /tmp}}
        resources: {{limits: {{memory: 512Mi}}}}
        {CONTAINER_SC}
---
apiVersion: v1
kind: Service
metadata: {{name: scorer, namespace: {ns}}}
spec:
  selector: {{app: scorer}}
  ports: [{{port: 80, targetPort: http}}]
"""


def test_two_replicas_behind_a_service_answer_every_get_for_the_same_job(
    local_cluster: LocalCluster, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    store = ObjectStore(local_cluster.storage_settings())
    store.ensure_bucket(BUCKET)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name=n, type="number") for n in FEATURES],
        classes=[0, 1],
    )
    digest = write_ilearner(tmp_path / "m.ilearner", model, manifest)
    model_uri = f"s3://{BUCKET}/{ns}/model.ilearner"
    store.upload(tmp_path / "m.ilearner", model_uri)
    rows = rng.normal(size=(20_000, 4))
    csv = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays([pa.array(rows[:, j]) for j in range(4)], names=FEATURES), csv)
    store.put_bytes(csv.getvalue(), f"s3://{BUCKET}/{ns}/in.csv")

    minio = local_cluster.minio
    local_cluster.kubectl(
        "create", "secret", "generic", "s3", "-n", ns,
        f"--from-literal=accessKey={minio.access_key}", f"--from-literal=secretKey={minio.secret_key}",
    )  # fmt: skip
    apply(local_cluster, scorer_manifest(ns, model_uri, digest.sha256, minio.pod_endpoint))
    wait_for("2 scorer replicas available", lambda: deployment_available(local_cluster, ns, "scorer", 2), 180)
    cluster_ip = get_json(local_cluster, "service", "scorer", "-n", ns)["spec"]["clusterIP"]

    def ready_through_service() -> bool:
        try:
            return bool(call(local_cluster, cluster_ip, "GET", "/readyz")[0] == 200)
        except OSError:
            return False

    wait_for("the Service to answer", ready_through_service, 60)
    status, job = call(
        local_cluster,
        cluster_ip,
        "POST",
        "/jobs",
        {"input": f"s3://{BUCKET}/{ns}/in.csv", "output": f"s3://{BUCKET}/{ns}/out.csv"},
    )
    assert status == 202, job
    job_id = job["id"]

    def finished() -> dict[str, Any] | None:
        st, doc = call(local_cluster, cluster_ip, "GET", f"/jobs/{job_id}")
        assert st == 200, f"a replica did not know job {job_id}: {st} {doc}"
        assert (doc["id"], doc["input"], doc["owner"]) == (job_id, job["input"], job["owner"])
        return doc if doc["state"] in ("Succeeded", "Failed") else None

    final = wait_for("the job to finish", finished, 120, 0.1)
    assert final["state"] == "Succeeded" and final["rowsDone"] == 20_000, final
    answers = [call(local_cluster, cluster_ip, "GET", f"/jobs/{job_id}") for _ in range(40)]
    assert all(a == (200, final) for a in answers)
    classic = [
        call(local_cluster, cluster_ip, "GET", f"/workspaces/w/services/s/jobs/{job_id}?api-version=2.0")
        for _ in range(10)
    ]
    assert all(st == 200 and doc["StatusCode"] == "Finished" for st, doc in classic)
    # Each replica answers for the job directly too (the Service's balancing above is kube-proxy's choice):
    # the pod that did not run it reads the same record from the shared store.
    ips = [p["status"]["podIP"] for p in pods(local_cluster, ns, "app=scorer")]
    assert len(ips) == 2
    for ip in ips:
        assert call(local_cluster, ip, "GET", f"/jobs/{job_id}", port=8080) == (200, final), ip
