"""Classic batch execution (BES) and shared job records, on real `kstudio serve` processes and real MinIO:
the classic cycle with an Azure-syntax connection string, cancel, any replica answering for any job, and
a job whose scorer was SIGKILLed mid-job reported Failed with the reason by another scorer process."""

from __future__ import annotations

import copy
import io
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from classic_reference import (
    BES_CREATE_REQUEST,
    BES_CREATE_RESPONSE,
    BES_FINISHED_RESULT,
    BES_STATUS_CODES,
    BES_STATUS_FIELDS,
    shape,
)
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from kstudio_core.storage import ObjectStore

DATA = "classic-bes"
RECORDS = "s3://kstudio-jobs/records"
JOBS = "/workspaces/ws0123/services/svc4567/jobs"
V2 = "api-version=2.0"


@pytest.fixture
def start_replica(
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
    tmp_path: Path,
) -> Iterator[Callable[..., ScorerProcess]]:
    """Start scorer replicas sharing one job store in MinIO (short heartbeat and lease for the tests)."""
    object_store.ensure_bucket(DATA)
    started: list[ScorerProcess] = []

    def start(pod_name: str, **env: str) -> ScorerProcess:
        m = models["forest"]
        sp = start_scorer(
            {
                "KSTUDIO_MODEL_URI": str(m.path),
                "KSTUDIO_MODEL_SHA256": m.sha256,
                "KSTUDIO_AUTH_ENABLED": "false",
                "KSTUDIO_POD_NAME": pod_name,
                "KSTUDIO_JOBS_STORE_URI": RECORDS,
                "KSTUDIO_JOBS_HEARTBEAT_SECONDS": "0.5",
                "KSTUDIO_JOBS_LEASE_SECONDS": "3",
                **minio_server.settings.to_env(),
                **env,
            },
            tmp_path / pod_name,
        )
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.stop(timeout=15)


def connection_string(minio_server: Any) -> str:
    """What a classic client carries, with BlobEndpoint pointed at our S3 endpoint."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={minio_server.access_key};"
        f"AccountKey={minio_server.secret_key};BlobEndpoint=http://{minio_server.endpoint}/"
    )


def bes_body(minio_server: Any, input_location: str, output_location: str) -> dict[str, Any]:
    conn = connection_string(minio_server)
    return {
        "Inputs": {"input1": {"ConnectionString": conn, "RelativeLocation": input_location}},
        "Outputs": {"output1": {"ConnectionString": conn, "RelativeLocation": output_location}},
        "GlobalParameters": {},
    }


def upload_rows(store: ObjectStore, key: str, frame: pd.DataFrame) -> None:
    out = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), out)
    store.put_bytes(out.getvalue(), f"s3://{DATA}/{key}")


def big_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(np.round(rng.normal(size=(n, 6)), 3), columns=[f"f{i}" for i in range(6)])


def poll(client: httpx.Client, url: str, until: Callable[[dict[str, Any]], bool], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(url)
        assert r.status_code == 200, r.text
        doc = r.json()
        if until(doc):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting: {doc}")


def test_classic_bes_cycle_create_start_poll_results(
    start_replica: Callable[..., ScorerProcess],
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
) -> None:
    m = models["forest"]
    frame = m.frame.head(300)
    upload_rows(object_store, "in/day1.csv", frame)
    sp = start_replica("scorer-a")
    with sp.client() as c:
        r = c.post(
            f"{JOBS}?{V2}",
            json=bes_body(minio_server, "/classic-bes/in/day1.csv", "/classic-bes/out/day1.csv"),
        )
        assert r.status_code == 200, r.text
        job_id = r.content.decode()[1:-1]  # what the portal's sample does: strip the JSON quotes
        assert r.json() == job_id
        status = c.get(f"{JOBS}/{job_id}?{V2}").json()
        assert status["StatusCode"] == "NotStarted" and status["Results"] is None
        assert c.post(f"{JOBS}/{job_id}/start?{V2}", content=b"{}").status_code == 200
        done = poll(
            c, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] in ("Finished", "Failed", "Cancelled")
        )
    assert done["StatusCode"] == "Finished", done
    # The published shapes (classic_reference.py): the job id as a JSON string, the status payload's
    # fields and values, each result a blob reference with the four fields of the sample response.
    assert shape(r.json()) == shape(json.loads(BES_CREATE_RESPONSE))
    assert set(BES_STATUS_FIELDS) <= set(done) and done["StatusCode"] in BES_STATUS_CODES
    assert status["StatusCode"] in BES_STATUS_CODES
    assert shape(done["Results"]["output1"]) == shape(BES_FINISHED_RESULT)
    output = done["Results"]["output1"]
    assert output["RelativeLocation"] == "/classic-bes/out/day1.csv"
    assert output["BaseLocation"] == f"http://{minio_server.endpoint}/"
    assert minio_server.secret_key not in str(done)
    scored = pd.read_csv(io.BytesIO(object_store.get_bytes(f"s3://{DATA}/out/day1.csv")))
    assert list(scored.columns) == ["Scored Labels", "Scored Probabilities"]
    x = frame.to_numpy()
    assert scored["Scored Labels"].tolist() == m.pipeline.predict(x).tolist()
    assert np.allclose(scored["Scored Probabilities"], m.pipeline.predict_proba(x)[:, 1])
    assert minio_server.secret_key not in sp.log()


def test_the_published_create_request_with_one_input_runs_and_says_it_needs_an_output(
    start_replica: Callable[..., ScorerProcess],
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
) -> None:
    """The documentation's create request names one input as "Input" (not "Inputs") and no output
    ("Outputs": null: classic wrote to the workspace's storage account, which a scorer has not)."""
    m = models["forest"]
    upload_rows(object_store, "in/single.csv", m.frame.head(20))
    published = copy.deepcopy(BES_CREATE_REQUEST)
    published["Input"] |= {"ConnectionString": connection_string(minio_server)}
    published["Input"]["RelativeLocation"] = "/classic-bes/in/single.csv"
    sp = start_replica("scorer-a")
    with sp.client() as c:
        r = c.post(f"{JOBS}?{V2}", json=published)
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == "BadArgument", r.text
        assert error["details"][0]["code"] == "MissingOutputOverrideSpecification"
        assert error["details"][0]["target"] == "Outputs" and "output1" in error["message"]
        both = bes_body(minio_server, "/classic-bes/in/single.csv", "/classic-bes/out/single.csv")
        r = c.post(f"{JOBS}?{V2}", json=both | {"Input": published["Input"]})
        assert r.status_code == 400 and r.json()["error"]["details"][0]["code"] == "DuplicateInputInBatchCall"

        published["Outputs"] = both["Outputs"]
        r = c.post(f"{JOBS}?{V2}", json=published)
        assert r.status_code == 200, r.text
        job_id = r.json()
        assert c.post(f"{JOBS}/{job_id}/start?{V2}").status_code == 200
        done = poll(c, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] in ("Finished", "Failed"))
    assert done["StatusCode"] == "Finished", done
    scored = pd.read_csv(io.BytesIO(object_store.get_bytes(f"s3://{DATA}/out/single.csv")))
    assert scored["Scored Labels"].tolist() == m.pipeline.predict(m.frame.head(20).to_numpy()).tolist()


def test_classic_bes_cancel_before_and_while_running(
    start_replica: Callable[..., ScorerProcess], minio_server: Any, object_store: ObjectStore
) -> None:
    upload_rows(object_store, "in/big.csv", big_frame(400_000))
    sp = start_replica("scorer-a", KSTUDIO_JOBS_CSV_BLOCK_BYTES=str(64 * 1024))
    body = bes_body(minio_server, "/classic-bes/in/big.csv", "/classic-bes/out/big.csv")
    with sp.client() as c:
        never = c.post(f"{JOBS}?{V2}", json=body).json()
        assert c.delete(f"{JOBS}/{never}?{V2}").status_code == 200
        assert c.get(f"{JOBS}/{never}?{V2}").json()["StatusCode"] == "Cancelled"
        c.post(f"{JOBS}/{never}/start?{V2}")
        assert c.get(f"{JOBS}/{never}?{V2}").json()["StatusCode"] == "Cancelled"

        job_id = c.post(f"{JOBS}?{V2}", json=body).json()
        c.post(f"{JOBS}/{job_id}/start?{V2}")
        poll(c, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] == "Running")
        assert c.delete(f"{JOBS}/{job_id}?{V2}").status_code == 200
        done = poll(c, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] not in ("NotStarted", "Running"))
    assert done["StatusCode"] == "Cancelled" and done["Results"] is None, done
    assert not object_store.exists(f"s3://{DATA}/out/big.csv")


def test_classic_bes_errors_in_the_classic_envelope(
    start_replica: Callable[..., ScorerProcess], minio_server: Any
) -> None:
    sp = start_replica("scorer-a")
    body = bes_body(minio_server, "/classic-bes/in/day1.csv", "/classic-bes/out/x.csv")
    azure_only = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"
    )
    body["Inputs"]["input1"]["ConnectionString"] = azure_only
    with sp.client() as c:
        r = c.post(f"{JOBS}?{V2}", json=body)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "BadArgument" and "has no BlobEndpoint" in error["message"]
        assert error["details"][0]["target"] == "Inputs.input1.ConnectionString"
        assert "c2VjcmV0" not in r.text
        r = c.get(f"{JOBS}/{'0' * 32}?{V2}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
        r = c.get(f"{JOBS}/{'0' * 32}?api-version=1.0")
        assert r.status_code == 400 and r.json()["error"]["details"][0]["target"] == "api-version"


def test_any_replica_answers_for_any_job_on_the_same_store(
    start_replica: Callable[..., ScorerProcess],
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
) -> None:
    upload_rows(object_store, "in/shared.csv", models["forest"].frame.head(50))
    a, b = start_replica("scorer-a"), start_replica("scorer-b")
    body = bes_body(minio_server, "/classic-bes/in/shared.csv", "/classic-bes/out/shared.csv")
    with a.client() as ca, b.client() as cb:
        job_id = ca.post(f"{JOBS}?{V2}", json=body).json()
        assert cb.get(f"{JOBS}/{job_id}?{V2}").json()["StatusCode"] == "NotStarted"
        assert cb.post(f"{JOBS}/{job_id}/start?{V2}").status_code == 200  # created on a, run by b
        done = poll(ca, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] == "Finished")
        assert done == poll(cb, f"{JOBS}/{job_id}?{V2}", lambda d: d["StatusCode"] == "Finished")
        # the kstudio /jobs API sits on the same records
        r = ca.post("/jobs", json={"input": f"s3://{DATA}/in/shared.csv", "output": f"s3://{DATA}/out/k.csv"})
        assert r.status_code == 202, r.text
        native = r.json()["id"]
        on_b = poll(cb, f"/jobs/{native}", lambda d: d["state"] == "Succeeded")
        assert on_b["owner"] == "scorer-a" and on_b["rowsDone"] == 50
        assert ca.get(f"/jobs/{native}").json() == on_b


def test_job_of_a_killed_scorer_is_reported_failed_by_another(
    start_replica: Callable[..., ScorerProcess], object_store: ObjectStore
) -> None:
    upload_rows(object_store, "in/long.csv", big_frame(400_000))
    a = start_replica("scorer-a", KSTUDIO_JOBS_CSV_BLOCK_BYTES=str(64 * 1024))
    b = start_replica("scorer-b")
    with a.client() as ca, b.client() as cb:
        r = ca.post(
            "/jobs", json={"input": f"s3://{DATA}/in/long.csv", "output": f"s3://{DATA}/out/long.csv"}
        )
        job_id = r.json()["id"]
        running = poll(cb, f"/jobs/{job_id}", lambda d: d["state"] == "Running" and d["rowsDone"] > 0)
        assert running["owner"] == "scorer-a"
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        failed = poll(cb, f"/jobs/{job_id}", lambda d: d["state"] != "Running", timeout=30)
    assert failed["state"] == "Failed", failed
    assert "scorer pod scorer-a stopped while running the job" in failed["error"]
    assert not object_store.exists(f"s3://{DATA}/out/long.csv")
    # the verdict is written down: a third replica reads it from the record
    c = start_replica("scorer-c")
    with c.client() as cc:
        assert cc.get(f"/jobs/{job_id}").json()["error"] == failed["error"]
        classic = cc.get(f"{JOBS}/{job_id}?{V2}").json()
    assert classic["StatusCode"] == "Failed" and "scorer-a" in classic["Details"]
