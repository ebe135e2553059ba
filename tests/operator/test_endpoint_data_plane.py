"""What a user does with an Endpoint the operator built, through its Service on the local cluster: batch
jobs (/jobs, and classic BES with Parquet), request logging to object storage, and calls over its
maxConcurrentCalls refused with 429 (our error on /score, classic's envelope on the classic routes)."""

from __future__ import annotations

import base64
import http.client
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from operator_support import Kubectl, OperatorProcess, import_model, manifest, wait_until
from serving_kit import build_model

from kstudio_localcluster import netns
from kstudio_scorer.model.artifact import load_ilearner

pytestmark = pytest.mark.cluster

BUCKET = "kstudio-batch"
CLASSIC = "/workspaces/ws/services/svc"


class _Conn(http.client.HTTPConnection):
    """HTTP from inside the cluster's network namespace (ClusterIPs answer only there)."""

    netns_name = ""

    def connect(self) -> None:
        self.sock = netns.connect_in_netns(self.netns_name, self.host, self.port, 30.0)


class Client:
    def __init__(self, netns_name: str, ip: str, key: str) -> None:
        self.netns_name, self.ip, self.key = netns_name, ip, key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        conn = _Conn(self.ip, 80, timeout=30)
        conn.netns_name = self.netns_name
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            return (
                resp.status,
                {k.lower(): v for k, v in resp.getheaders()},
                json.loads(text) if text else None,
            )
        finally:
            conn.close()


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(np.round(np.random.default_rng(7).normal(size=(n, 2)), 3), columns=["x1", "x2"])


def test_an_endpoint_runs_batch_jobs_logs_its_calls_and_refuses_calls_over_its_limit(
    kube: Kubectl,
    operator: OperatorProcess,
    example_data: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.ilearner"
    sha = build_model(path, flip=False)
    import_model(kube, example_data, namespace, path, sha, "m")
    expected = load_ilearner(path, sha).pipeline  # predicts from the columns x1, x2 as a matrix
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m", "--timeout=60s")
    assert (
        kube.apply(manifest("WebService", "svc", {"model": "m", "scorer": {"replicas": 0}})).returncode == 0
    )
    spec = {"webService": "svc", "model": "m", "maxConcurrentCalls": 1, "logging": {"level": "All"}}
    assert kube.apply(manifest("Endpoint", "ep", spec)).returncode == 0
    wait_until(
        "ep Ready on m",
        lambda: (s := kube.status("endpoint", "ep")).get("phase") == "Ready" and s.get("model") == "m",
        180,
    )
    secret = kube.get("secret", "ep-keys") or {}
    key = base64.b64decode(secret["data"]["primaryKey"]).decode()
    ip = (kube.get("service", "ep") or {})["spec"]["clusterIP"]
    client = Client(local_cluster.info.layout.netns, ip, key)
    rows = _rows(40)

    # A call, logged (level All) under the endpoint's prefix of the logs bucket, without its key.
    body = {"Inputs": {"input1": rows.head(2).to_dict(orient="records")}, "GlobalParameters": {}}
    status, _, answer = wait_until(
        "the Service to answer", lambda: (r := client.call("POST", "/score", body))[0] == 200 and r, 30
    )
    assert [o["Scored Labels"] for o in answer["Results"]["output1"]] == expected.predict(
        rows.head(2).to_numpy()
    ).tolist()

    def logged() -> list[dict[str, Any]]:
        keys = [k for k in example_data.list_keys("kstudio-logs", f"{namespace}/ep/") if "/jobs/" not in k]
        records = [
            json.loads(line)
            for k in keys
            for line in example_data.get_bytes(f"s3://kstudio-logs/{k}").decode().splitlines()
        ]
        return [r for r in records if r["route"] == "/score" and r["status"] == 200]

    record = wait_until("the call's record in the logs bucket", logged, 60)[0]
    assert record["request"] == body and record["response"] == answer
    assert key not in json.dumps(record)

    # A batch job through /jobs: CSV in, CSV out, in the cluster's object storage.
    example_data.ensure_bucket(BUCKET)
    csv_in = io.BytesIO()
    rows.to_csv(csv_in, index=False)
    example_data.put_bytes(csv_in.getvalue(), f"s3://{BUCKET}/{namespace}/in.csv")
    job = {"input": f"s3://{BUCKET}/{namespace}/in.csv", "output": f"s3://{BUCKET}/{namespace}/out.csv"}
    status, _, created = client.call("POST", "/jobs", job)
    assert status == 202, created

    def job_state() -> dict[str, Any] | None:
        doc = client.call("GET", f"/jobs/{created['id']}")[2]
        return doc if doc["state"] in ("Succeeded", "Failed", "Cancelled") else None

    done = wait_until("the /jobs job", job_state, 120)
    assert done["state"] == "Succeeded", done
    scored = pd.read_csv(io.BytesIO(example_data.get_bytes(f"s3://{BUCKET}/{namespace}/out.csv")))
    assert scored["Scored Labels"].tolist() == expected.predict(rows.to_numpy()).tolist()

    # Classic BES with Parquet, the connection string pointing at the store as pods reach it.
    table = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), table)
    example_data.put_bytes(table.getvalue(), f"s3://{BUCKET}/{namespace}/in.parquet")
    minio = local_cluster.minio
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={minio.access_key};AccountKey={minio.secret_key};"
        f"BlobEndpoint=http://{minio.pod_endpoint}/"
    )
    bes = {
        "Inputs": {
            "input1": {"ConnectionString": conn, "RelativeLocation": f"/{BUCKET}/{namespace}/in.parquet"}
        },
        "Outputs": {
            "output1": {"ConnectionString": conn, "RelativeLocation": f"/{BUCKET}/{namespace}/bes.parquet"}
        },
        "GlobalParameters": {},
    }
    status, _, job_id = client.call("POST", f"{CLASSIC}/jobs?api-version=2.0", bes)
    assert status == 200, job_id
    assert client.call("POST", f"{CLASSIC}/jobs/{job_id}/start?api-version=2.0")[0] == 200

    def bes_state() -> dict[str, Any] | None:
        doc = client.call("GET", f"{CLASSIC}/jobs/{job_id}?api-version=2.0")[2]
        return doc if doc["StatusCode"] in ("Finished", "Failed", "Cancelled") else None

    finished = wait_until("the classic BES job", bes_state, 120)
    assert finished["StatusCode"] == "Finished", finished
    assert finished["Results"]["output1"]["RelativeLocation"] == f"/{BUCKET}/{namespace}/bes.parquet"
    assert minio.secret_key not in json.dumps(finished)
    out = pq.read_table(io.BytesIO(example_data.get_bytes(f"s3://{BUCKET}/{namespace}/bes.parquet")))
    assert out.column("Scored Labels").to_pylist() == expected.predict(rows.to_numpy()).tolist()

    # One call in flight (its body half sent) holds the endpoint's only slot: the next is refused.
    held_body = json.dumps(body).encode()
    head = (
        f"POST /score HTTP/1.1\r\nHost: ep\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(held_body)}\r\n\r\n"
    ).encode()
    held = netns.connect_in_netns(client.netns_name, ip, 80, 30.0)
    try:
        held.sendall(head + held_body[:10])
        refused = wait_until(
            "a /score call over the limit",
            lambda: (r := client.call("POST", "/score", body))[0] == 429 and r,
            30,
        )
        assert refused[1]["retry-after"] and refused[2]["code"] == "too_many_requests", refused
        table_body = {
            "Inputs": {"input1": {"ColumnNames": ["x1", "x2"], "Values": [["0.3", "-0.1"]]}},
            "GlobalParameters": {},
        }
        status, headers, envelope = client.call("POST", f"{CLASSIC}/execute?api-version=2.0", table_body)
        assert status == 429 and headers["retry-after"], envelope
        assert envelope["error"]["code"] == "ServiceUnavailable"
        assert envelope["error"]["details"][0]["code"] == "TooManyConcurrentRequests"
        held.sendall(held_body[10:])
        assert held.recv(12) == b"HTTP/1.1 200"
    finally:
        held.close()
