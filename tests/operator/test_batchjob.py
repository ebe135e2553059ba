"""BatchJob on the local cluster: real MinIO, the real Job controller (Indexed Jobs, backoffLimitPerIndex,
podFailurePolicy) and our node agent running the shard pods. The merged output equals, row for row, what
the scorer's own batch scoring writes for the same input; a deleted shard pod is retried; bad rows are
counted against the threshold; the job survives an operator killed mid-way; bad input fails clearly."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from batch_kit import (
    batch_job,
    build_model,
    csv_bytes,
    manifest,
    parquet_bytes,
    parquet_parts,
    rows_table,
    scorer_batch_output,
)
from operator_support import Kubectl, OperatorProcess, condition, wait_until

from kstudio_core.batch import BatchPlan, InputObject, PlannedModel
from kstudio_core.storage import ObjectStore

pytestmark = pytest.mark.cluster

FEATURES = 4
SMALL = {"cpu": "250m", "memory": "512Mi"}


@pytest.fixture
def model(
    local_cluster: Any, namespace: str, kube: Kubectl, example_data: ObjectStore, tmp_path: Path
) -> dict[str, Any]:
    """TrainedModel `m` (a 20-tree forest over f0..f3), Ready."""
    path = tmp_path / "m.ilearner"
    sha = build_model(path, FEATURES, forest_trees=20)
    uri = f"s3://models/{namespace}/m.ilearner"
    example_data.upload(path, uri)
    doc = {"apiVersion": "kstudio.io/v1alpha1", "kind": "TrainedModel", "metadata": {"name": "m"}}
    assert kube.apply(json.dumps(doc | {"spec": {"artifact": {"uri": uri, "sha256": sha}}})).returncode == 0
    return {"path": path, "sha256": sha, "uri": uri}


@pytest.fixture
def batch_operator(operator: OperatorProcess, kube: Kubectl, local_cluster: Any) -> Iterator[OperatorProcess]:
    """The operator, with BatchJobs removed while it still runs."""
    local_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/batchjobs.kstudio.io")
    yield operator
    if not operator.running:
        operator.start()
    kube.run("delete", "batchjobs", "--all", "--wait=false", check=False)
    kube.run("wait", "--for=delete", "batchjobs", "--all", "--timeout=30s", check=False)
    kube.release_finalizers("batchjobs")


@pytest.fixture
def data(example_data: ObjectStore, namespace: str) -> tuple[ObjectStore, str]:
    """The store, and a bucket path of the test's own: s3://batch/<namespace>/."""
    example_data.ensure_bucket("batch")
    return example_data, f"s3://batch/{namespace}/"


def finished(kube: Kubectl, name: str) -> dict[str, Any] | None:
    status = kube.status("batchjob", name)
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_csv_in_three_shards_composes_one_file_equal_to_the_scorers_batch_output(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(30_000, FEATURES)), f"{base}in/day-1.csv")
    store.put_bytes(csv_bytes(rows_table(12_000, FEATURES, start=7)), f"{base}in/day-2.csv")
    spec = {
        "model": "m",
        "input": {"uri": f"{base}in/"},
        "output": {"uri": f"{base}out/", "oneFile": True},
        "shards": 3,
        "resources": SMALL,
    }
    assert kube.apply(batch_job("scores", **spec)).returncode == 0
    status = wait_until("BatchJob scores to finish", lambda: finished(kube, "scores"), timeout=300)
    assert status["phase"] == "Succeeded", status
    assert status["shards"] == {"total": 3, "active": 0, "succeeded": 3, "failed": 0}
    assert status["rows"] == {"scored": 42_000, "rejected": 0} and status["rowsPerSecond"] > 0
    assert (status["model"], status["modelDigest"], status["inputs"]["objects"]) == ("m", model["sha256"], 2)
    assert status["outputs"] == [f"{base}out/manifest.json", f"{base}out/scores.csv"]
    assert condition(status, "Complete")["status"] == "True"

    # The reference: the scorer's own batch scoring of the two inputs one after the other.
    expected = b""
    for day in ("day-1", "day-2"):
        target = f"{base}reference/{day}.csv"
        scorer_batch_output(model["path"], model["sha256"], store, f"{base}in/{day}.csv", target)
        text = store.get_bytes(target)
        expected += text if not expected else text[text.index(b"\n") + 1 :]
    assert store.get_bytes(f"{base}out/scores.csv") == expected
    assert manifest(store, f"{base}out/").one_file == f"{base}out/scores.csv"
    assert not store.list_keys("batch", f"{base[len('s3://batch/') :]}out/parts/")  # composed, then removed
    assert any(e["reason"] == "Succeeded" for e in kube.events("scores"))

    # Deleting the BatchJob deletes its Job and pods, never its output.
    kube.run("delete", "batchjob", "scores", "--timeout=60s")
    wait_until("the Job to go", lambda: kube.get("job", "scores") is None, timeout=60)
    wait_until("the pods to go", lambda: not kube.items("pods", "kstudio.io/batchjob=scores"), timeout=60)
    assert store.exists(f"{base}out/scores.csv") and store.exists(f"{base}out/manifest.json")


def test_parquet_in_three_shards_publishes_parts_equal_to_the_scorers_batch_output(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(parquet_bytes(rows_table(24_000, FEATURES), row_group_rows=2_000), f"{base}in.parquet")
    spec = {
        "model": "m",
        "input": {"uri": f"{base}in.parquet"},
        "output": {"uri": f"{base}out/", "format": "parquet"},
        "shards": 3,
        "parallelism": 2,
        "resources": SMALL,
    }
    assert kube.apply(batch_job("pq", **spec)).returncode == 0
    status = wait_until("BatchJob pq to finish", lambda: finished(kube, "pq"), timeout=300)
    assert status["phase"] == "Succeeded", status
    parts = manifest(store, f"{base}out/").parts
    assert [p.index for p in parts] == [0, 1, 2] and sum(p.rows for p in parts) == 24_000
    scorer_batch_output(model["path"], model["sha256"], store, f"{base}in.parquet", f"{base}ref.parquet")
    reference = pq.read_table(io.BytesIO(store.get_bytes(f"{base}ref.parquet")))
    assert parquet_parts(store, f"{base}out/").equals(reference)


def test_a_shard_pod_deleted_mid_way_is_retried_and_the_output_is_still_exact(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(450_000, FEATURES)), f"{base}big.csv")
    spec = {
        "model": "m",
        "input": {"uri": f"{base}big.csv"},
        "output": {"uri": f"{base}out/"},
        "shards": 3,
        "resources": SMALL,
    }
    assert kube.apply(batch_job("retry", **spec)).returncode == 0

    def scoring_pod() -> str | None:  # the pod of shard 1, once it has loaded the model and is scoring
        for pod in kube.items("pods", "kstudio.io/batchjob=retry"):
            index = pod["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index")
            if index == "1" and pod["status"].get("phase") == "Running":
                logs = kube.run("logs", pod["metadata"]["name"], check=False).stdout
                if "shard 1 of 3" in logs:
                    return str(pod["metadata"]["name"])
        return None

    victim = wait_until("shard 1 to be scoring", scoring_pod, timeout=240, interval=0.2)
    assert not store.exists(f"{base}out/_batch/results/shard-00001.json")  # mid-way: not done yet
    kube.run("delete", "pod", victim, "--wait=false")
    status = wait_until("BatchJob retry to finish", lambda: finished(kube, "retry"), timeout=400)
    assert status["phase"] == "Succeeded", status
    job = kube.get("job", "retry")
    assert job is not None and job["status"].get("failed", 0) >= 1  # the deleted pod counted, then retried
    shard_pods = [
        p
        for p in kube.items("pods", "kstudio.io/batchjob=retry")
        if p["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index") == "1"
    ]
    # The deleted pod is gone (its deletion completes once it is terminal); another pod scored shard 1.
    assert [p["metadata"]["name"] for p in shard_pods] != [victim] and shard_pods
    scorer_batch_output(model["path"], model["sha256"], store, f"{base}big.csv", f"{base}ref.csv")
    merged = b""
    for part in manifest(store, f"{base}out/").parts:
        text = store.get_bytes(part.uri, max_bytes=2**30)
        merged += text if not merged else text[text.index(b"\n") + 1 :]
    assert merged == store.get_bytes(f"{base}ref.csv", max_bytes=2**30)


def _with_bad_rows(rows: int, bad: dict[int, str]) -> bytes:
    lines = csv_bytes(rows_table(rows, FEATURES)).split(b"\n")
    for row, text in sorted(bad.items()):
        lines.insert(row, text.encode())  # lines[0] is the header: lines[r] becomes data row r
    return b"\n".join(lines)


def test_bad_rows_below_the_threshold_succeed_with_an_errors_file_and_above_it_fail_with_counts(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    bad = {5: "1,2,oops,4", 9_000: "1,2", 17_999: "x,1,1,1"}  # one per shard of three
    store.put_bytes(_with_bad_rows(18_000, bad), f"{base}bad.csv")
    for name, rows in (("below", 3), ("above", 2)):
        spec = {
            "model": "m",
            "input": {"uri": f"{base}bad.csv"},
            "output": {"uri": f"{base}{name}/"},
            "shards": 3,
            "errorThreshold": {"rows": rows},
            "resources": SMALL,
        }
        assert kube.apply(batch_job(name, **spec)).returncode == 0
    below = wait_until("below to finish", lambda: finished(kube, "below"), timeout=300)
    assert below["phase"] == "Succeeded", below
    assert below["rows"] == {"scored": 18_000, "rejected": 3}
    assert f"{base}below/errors.csv" in below["outputs"]
    errors = list(csv.DictReader(io.StringIO(store.get_bytes(f"{base}below/errors.csv").decode())))
    assert [(e["input"], e["row"], e["column"]) for e in errors] == [
        (f"{base}bad.csv", "5", "f2"),
        (f"{base}bad.csv", "9000", ""),
        (f"{base}bad.csv", "17999", "f0"),
    ]
    assert "oops" in errors[0]["reason"] and "Expected 4 columns, got 2" in errors[1]["reason"]

    above = wait_until("above to finish", lambda: finished(kube, "above"), timeout=300)
    assert (above["phase"], above["reason"]) == ("Failed", "ErrorThresholdExceeded"), above
    assert "3 rows could not be scored" in above["message"] and "errorThreshold.rows 2" in above["message"]
    assert above["rows"] == {"scored": 18_000, "rejected": 3}
    assert not store.exists(f"{base}above/manifest.json") and store.exists(f"{base}above/errors.csv")


def test_the_job_runs_on_while_the_operator_is_killed_and_the_status_converges_after_a_restart(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(60_000, FEATURES)), f"{base}in.csv")
    spec = {"model": "m", "input": {"uri": f"{base}in.csv"}, "output": {"uri": f"{base}out/"}, "shards": 2}
    assert kube.apply(batch_job("survivor", **(spec | {"resources": SMALL}))).returncode == 0
    wait_until("the Job", lambda: kube.get("job", "survivor"), timeout=120, interval=0.2)
    batch_operator.kill()
    wait_until(
        "the Job to complete without the operator",
        lambda: (kube.get("job", "survivor") or {}).get("status", {}).get("completionTime"),
        timeout=300,
    )
    assert kube.status("batchjob", "survivor").get("phase") != "Succeeded"
    batch_operator.start()
    status = wait_until("survivor to finish", lambda: finished(kube, "survivor"), timeout=120)
    assert status["phase"] == "Succeeded" and status["rows"]["scored"] == 60_000, status
    assert [j["metadata"]["name"] for j in kube.items("jobs", "kstudio.io/batchjob=survivor")] == ["survivor"]
    assert manifest(store, f"{base}out/").rows_scored == 60_000


def test_a_missing_input_fails_naming_it_before_any_pod_starts(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    _, base = data
    spec = {"model": "m", "input": {"uri": f"{base}nowhere.csv"}, "output": {"uri": f"{base}out/"}}
    assert kube.apply(batch_job("ghost", **spec)).returncode == 0
    status = wait_until("ghost to fail", lambda: finished(kube, "ghost"), timeout=120)
    assert (status["phase"], status["reason"]) == ("Failed", "InputNotFound")
    assert f"{base}nowhere.csv does not exist" in status["message"]
    assert kube.get("job", "ghost") is None and not kube.items("pods", "kstudio.io/batchjob=ghost")
    assert any(e["reason"] == "InputNotFound" for e in kube.events("ghost"))


def test_an_output_that_is_missing_or_another_jobs_fails_before_any_pod_starts(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(10, FEATURES)), f"{base}in.csv")
    other = BatchPlan(
        batch_job="elsewhere/earlier",
        uid="another-uid",
        inputs=[InputObject(uri=f"{base}in.csv", size_bytes=1)],
        input_format="csv",
        output_prefix=f"{base}taken/",
        output_format="csv",
        shards=1,
        model=PlannedModel(name="m", uri=model["uri"], sha256=model["sha256"]),
    )
    store.put_bytes(other.to_json(), other.layout.plan)
    for name, output, reason, said in (
        ("nobucket", "s3://no-such-bucket/out/", "OutputNotFound", "bucket no-such-bucket of output.uri"),
        ("taken", f"{base}taken/", "OutputInUse", "holds the output of BatchJob elsewhere/earlier"),
    ):
        spec = {"model": "m", "input": {"uri": f"{base}in.csv"}, "output": {"uri": output}}
        assert kube.apply(batch_job(name, **spec)).returncode == 0
        status = wait_until(f"{name} to fail", lambda n=name: finished(kube, n), timeout=120)
        assert (status["phase"], status["reason"]) == ("Failed", reason) and said in status["message"], status
        assert kube.get("job", name) is None


def test_a_missing_column_fails_its_shard_once_without_retry_naming_the_column(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(3_000, FEATURES).drop(["f2"])), f"{base}no-f2.csv")
    spec = {
        "model": "m",
        "input": {"uri": f"{base}no-f2.csv"},
        "output": {"uri": f"{base}out/"},
        "shards": 2,
        "resources": SMALL,
    }
    assert kube.apply(batch_job("nocol", **spec)).returncode == 0
    status = wait_until("nocol to fail", lambda: finished(kube, "nocol"), timeout=300)
    assert (status["phase"], status["reason"]) == ("Failed", "MissingColumn"), status
    assert "has no column 'f2'" in status["message"]
    failed = status["failedShards"][0]
    assert failed["exitCode"] == 2 and "'f2'" in failed["message"]
    pods = [
        p
        for p in kube.items("pods", "kstudio.io/batchjob=nocol")
        if p["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index")
        == str(failed["index"])
    ]
    assert len(pods) == 1  # exit 2: FailIndex, no second pod for this shard
    job = kube.get("job", "nocol")
    assert job is not None and any(c["type"] == "Failed" for c in job["status"]["conditions"])


def test_a_job_waits_for_its_model_then_runs(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(2_000, FEATURES)), f"{base}in.csv")
    spec = {"model": "later", "input": {"uri": f"{base}in.csv"}, "output": {"uri": f"{base}out/"}}
    assert kube.apply(batch_job("patient", **(spec | {"resources": SMALL}))).returncode == 0
    waiting = wait_until(
        "patient to wait", lambda: (s := kube.status("batchjob", "patient")).get("reason") and s, timeout=60
    )
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "ModelNotFound")
    assert condition(waiting, "ModelReady")["status"] == "False"
    assert kube.get("job", "patient") is None
    doc = {"apiVersion": "kstudio.io/v1alpha1", "kind": "TrainedModel", "metadata": {"name": "later"}}
    artifact = {"uri": model["uri"], "sha256": model["sha256"]}
    assert kube.apply(json.dumps(doc | {"spec": {"artifact": artifact}})).returncode == 0
    status = wait_until("patient to finish", lambda: finished(kube, "patient"), timeout=300)
    assert status["phase"] == "Succeeded" and status["model"] == "later", status


def test_a_job_on_an_endpoint_waits_until_it_is_ready_then_scores_with_the_model_it_serves(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    store, base = data
    store.put_bytes(csv_bytes(rows_table(2_000, FEATURES)), f"{base}in.csv")
    spec = {"endpoint": "svc-default", "input": {"uri": f"{base}in.csv"}, "output": {"uri": f"{base}out/"}}
    assert kube.apply(batch_job("served", **(spec | {"resources": SMALL}))).returncode == 0
    waiting = wait_until(
        "served to wait", lambda: (s := kube.status("batchjob", "served")).get("reason") and s, timeout=60
    )
    assert (waiting["phase"], waiting["reason"]) == ("Pending", "EndpointNotFound"), waiting
    assert condition(waiting, "ModelReady")["status"] == "False"
    assert "Endpoint svc-default does not exist" in waiting["message"]
    doc = {"apiVersion": "kstudio.io/v1alpha1", "kind": "WebService", "metadata": {"name": "svc"}}
    assert kube.apply(json.dumps(doc | {"spec": {"model": "m"}})).returncode == 0
    status = wait_until("served to finish", lambda: finished(kube, "served"), timeout=300)
    assert status["phase"] == "Succeeded" and status["rows"]["scored"] == 2_000, status
    assert (status["model"], status["modelSource"], status["modelDigest"]) == (
        "m",
        "Endpoint/svc-default",
        model["sha256"],
    )
    assert kube.status("endpoint", "svc-default")["phase"] == "Ready"  # it ran once the Endpoint was Ready


def test_the_crd_refuses_two_models_and_a_changed_spec(
    kube: Kubectl, batch_operator: OperatorProcess
) -> None:
    spec = {"input": {"uri": "s3://batch/x.csv"}, "output": {"uri": "s3://batch/out/"}}
    proc = kube.apply(batch_job("both", model="m", endpoint="ep", **spec))
    assert proc.returncode != 0 and "exactly one of spec.model" in proc.stderr, proc.stderr
    proc = kube.apply(
        batch_job(
            "pq-one",
            model="m",
            **(spec | {"output": {"uri": "s3://b/o/", "format": "parquet", "oneFile": True}}),
        )
    )
    assert proc.returncode != 0 and "oneFile needs format csv" in proc.stderr, proc.stderr
    assert kube.apply(batch_job("fixed", model="absent", **spec)).returncode == 0
    proc = kube.run(
        "patch", "batchjob", "fixed", "--type=merge", "-p", '{"spec": {"shards": 4}}', check=False
    )
    assert proc.returncode != 0 and "BatchJob spec is immutable" in proc.stderr, proc.stderr
    assert "batchjob.kstudio.io/fixed" in kube.run("get", "kstudio").stdout  # the category lists it


def test_an_infrastructure_failure_exit_75_is_retried_up_to_retries_per_shard(
    kube: Kubectl, batch_operator: OperatorProcess, model: dict[str, Any], data: tuple[ObjectStore, str]
) -> None:
    """Storage refusing the pods' keys: exit 75 (the podFailurePolicy counts it), retried once, then the
    shard and the job fail, saying why."""
    store, base = data
    store.put_bytes(csv_bytes(rows_table(100, FEATURES)), f"{base}in.csv")
    kube.run(
        "create",
        "secret",
        "generic",
        "wrong-keys",
        "--from-literal=accessKey=nobody",
        "--from-literal=secretKey=nothing",
    )
    spec = {
        "model": "m",
        "input": {"uri": f"{base}in.csv"},
        "output": {"uri": f"{base}out/"},
        "retriesPerShard": 1,
        "credentialsSecret": "wrong-keys",
        "resources": SMALL,
    }
    assert kube.apply(batch_job("locked-out", **spec)).returncode == 0
    status = wait_until("locked-out to fail", lambda: finished(kube, "locked-out"), timeout=300)
    assert (status["phase"], status["reason"]) == ("Failed", "StorageUnavailable"), status
    assert status["failedShards"][0]["exitCode"] == 75 and "access denied" in status["message"]
    pods = kube.items("pods", "kstudio.io/batchjob=locked-out")
    assert len(pods) == 2  # the first attempt and its one retry
