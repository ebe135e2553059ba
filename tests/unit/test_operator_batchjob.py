"""The BatchJob's pure parts: its Indexed Job, and what a reconcile decides from the model, the input
listing, the Job, its pods and the shards' results — waiting, failing before any pod, starting, following,
publishing, failing with the shard's own words, and rebuilding its status after an operator restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from kstudio_core.batch import (
    SHARD_CONTAINER,
    BatchPlan,
    InputObject,
    PartFile,
    ShardResult,
    SliceResult,
)
from kstudio_operator import constants as c
from kstudio_operator.builders.batchjob import JobPlan
from kstudio_operator.decisions.batchjob import (
    BatchObserved,
    CreateJob,
    Listing,
    Publish,
    Results,
    WritePlan,
    decide_batch_job,
    needs_listing,
    needs_results,
    parse_indexes,
)
from kstudio_operator.settings import OperatorConfig

CONFIG = OperatorConfig(pod_s3_endpoint="10.244.0.1:9000", image="kstudio:dev")
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SHA = "cd" * 32
OWNER = {
    "apiVersion": "kstudio.io/v1alpha1",
    "kind": "BatchJob",
    "metadata": {"name": "scores", "uid": "u-9"},
}
SPEC: dict[str, Any] = {
    "model": "m-1",
    "input": {"uri": "s3://data/in/", "format": "csv"},
    "output": {"uri": "s3://out/scores/", "oneFile": True},
    "shards": 3,
    "parallelism": 2,
    "errorThreshold": {"rows": 10},
}
READY_MODEL = {
    "m-1": {
        "spec": {"artifact": {"uri": "s3://models/m-1.ilearner", "sha256": SHA}},
        "status": {"phase": "Ready"},
    }
}
INPUTS = [
    InputObject(uri="s3://data/in/a.csv", size_bytes=1000),
    InputObject(uri="s3://data/in/b.csv", size_bytes=500),
]


def observed(**kw: Any) -> BatchObserved:
    base: dict[str, Any] = {"namespace": "ns", "name": "scores", "uid": "u-9", "generation": 1}
    return BatchObserved(**(base | kw))


def decide(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **kw: Any) -> Any:
    return decide_batch_job(spec or SPEC, status or {}, observed(**kw), T0, CONFIG, OWNER)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(x for x in status["conditions"] if x["type"] == type_)


def started_job() -> dict[str, Any]:
    decision = decide(models=READY_MODEL, listing=Listing(inputs=INPUTS, format="csv"))
    return next(a for a in decision.actions if isinstance(a, CreateJob)).manifest


def test_the_indexed_job_maps_exit_codes_to_fail_index_or_retry_and_is_owned() -> None:
    job = started_job()
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (3, 0)
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": SHARD_CONTAINER, "operator": "In", "values": [c.EXIT_INPUT_ERROR]},
    }
    assert rules[1]["action"] == "Count" and rules[1]["onExitCodes"]["values"] == [
        c.EXIT_INFRASTRUCTURE_ERROR
    ]
    assert rules[2]["action"] == "Ignore"
    assert job["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "BatchJob",
        "name": "scores",
        "uid": "u-9",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["name"] == SHARD_CONTAINER and container["args"][0] == "score-shard"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KSTUDIO_BATCH_PLAN_URI"] == "s3://out/scores/_batch/plan.json"
    assert env["KSTUDIO_MODEL_SHA256"] == SHA and env["OMP_NUM_THREADS"] == "1"
    assert not any("KEY" in name for name in env)  # keys only through the mounted Secret
    assert JobPlan.from_annotation(job["metadata"]["annotations"][c.ANNOTATION_BATCH_PLAN]) == JobPlan(
        "m-1", "TrainedModel/m-1", "s3://models/m-1.ilearner", SHA, 2, 1500, "csv", 3
    )


@pytest.mark.parametrize(
    ("spec", "models", "endpoint", "reason"),
    [
        (SPEC, {}, None, "ModelNotFound"),
        (SPEC, {"m-1": {"spec": {}, "status": {"phase": "Pending"}}}, None, "ModelNotReady"),
        ({**SPEC, "model": None, "endpoint": "ep"}, READY_MODEL, None, "EndpointNotFound"),
        (
            {**SPEC, "model": None, "endpoint": "ep"},
            READY_MODEL,
            {"status": {"phase": "RollingOut"}},
            "EndpointNotReady",
        ),
    ],
)
def test_a_model_that_is_not_ready_makes_the_job_wait_with_a_condition(
    spec: dict[str, Any], models: dict[str, Any], endpoint: Any, reason: str
) -> None:
    spec = {k: v for k, v in spec.items() if v is not None}
    decision = decide(spec, models=models, endpoint=endpoint)
    assert decision.actions == []
    assert (decision.status["phase"], decision.status["reason"]) == ("Pending", reason)
    assert condition(decision.status, "ModelReady")["status"] == "False"


def test_an_endpoint_job_takes_the_model_the_endpoint_serves_and_records_its_digest() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "model"} | {"endpoint": "ep"}
    endpoint = {"status": {"phase": "Ready", "model": "m-1", "modelDigest": SHA}}
    decision = decide(
        spec, models=READY_MODEL, endpoint=endpoint, listing=Listing(inputs=INPUTS, format="csv")
    )
    assert (decision.status["model"], decision.status["modelDigest"]) == ("m-1", SHA)
    assert decision.status["modelSource"] == "Endpoint/ep"
    plan = BatchPlan.model_validate_json(
        next(a for a in decision.actions if isinstance(a, WritePlan)).document
    )
    assert plan.model.sha256 == SHA and plan.uid == "u-9" and plan.shards == 3


def test_missing_input_fails_naming_it_before_any_pod_starts() -> None:
    missing = Listing(problem="InputNotFound", message="s3://data/in/a.csv does not exist")
    decision = decide(models=READY_MODEL, listing=missing)
    assert decision.actions == []
    assert (decision.status["phase"], decision.status["reason"]) == ("Failed", "InputNotFound")
    assert "s3://data/in/a.csv" in decision.status["message"]
    assert decision.events[-1].reason == "InputNotFound"
    unreachable = Listing(problem="StorageUnavailable", message="unreachable", retryable=True)
    waiting = decide(models=READY_MODEL, listing=unreachable)
    assert (waiting.status["phase"], waiting.actions) == ("Pending", [])


def test_start_writes_the_plan_then_creates_the_job() -> None:
    decision = decide(models=READY_MODEL, listing=Listing(inputs=INPUTS, format="csv"))
    assert [type(a) for a in decision.actions] == [WritePlan, CreateJob]
    status = decision.status
    assert (status["phase"], status["shards"]["total"], status["inputs"]) == (
        "Running",
        3,
        {"objects": 2, "sizeBytes": 1500, "format": "csv"},
    )
    assert needs_listing(None, {}, None) is False and needs_listing(object(), {}, None) is True  # type: ignore[arg-type]


def test_rows_per_shard_sets_the_shard_count_from_the_rows_found() -> None:
    spec = {k: v for k, v in SPEC.items() if k != "shards"} | {"rowsPerShard": 400}
    decision = decide(spec, models=READY_MODEL, listing=Listing(inputs=INPUTS, format="csv", rows=1001))
    assert decision.status["shards"]["total"] == 3


def _job(status: dict[str, Any]) -> dict[str, Any]:
    plan = JobPlan("m-1", "TrainedModel/m-1", "s3://models/m-1.ilearner", SHA, 2, 1500, "csv", 3)
    return {
        "metadata": {"name": "scores", "annotations": {c.ANNOTATION_BATCH_PLAN: plan.to_annotation()}},
        "spec": {"completions": 3},
        "status": status,
    }


def test_a_restarted_operator_rebuilds_the_status_from_the_running_job() -> None:
    job = _job({"active": 2, "completedIndexes": "1", "startTime": "2026-12-05T11:59:00Z"})
    decision = decide(job=job)  # no status at all: as after a restart that lost the status write
    status = decision.status
    assert (status["phase"], status["model"], status["modelDigest"], status["job"]) == (
        "Running",
        "m-1",
        SHA,
        "scores",
    )
    assert status["shards"] == {"total": 3, "active": 2, "succeeded": 1, "failed": 0}
    assert decision.actions == []
    assert parse_indexes("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    stuck = {"name": "scores-0-x", "index": 0, "waiting": 'CreateContainerConfigError: secret "s3" not found'}
    said = decide(job=job, pods=[stuck, {"name": "scores-2-y", "waiting": "ContainerCreating"}]).status
    assert said["message"].endswith('pod scores-0-x waits: CreateContainerConfigError: secret "s3" not found')


def test_a_failed_shard_fails_the_job_in_its_own_words() -> None:
    job = _job(
        {
            "failedIndexes": "1",
            "conditions": [{"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded"}],
        }
    )
    summary = {
        "ok": False,
        "exitCode": 2,
        "reason": "MissingColumn",
        "message": "s3://d/a.csv has no column 'x3'",
    }
    pods = [
        {"name": "scores-1-abc", "index": 1, "exitCode": 2, "message": json.dumps(summary), "created": "t1"},
        {"name": "scores-0-abc", "index": 0, "exitCode": None, "created": "t0"},
    ]
    decision = decide(job=job, pods=pods)
    status = decision.status
    assert (status["phase"], status["reason"]) == ("Failed", "MissingColumn")
    assert status["message"] == "shard 1: s3://d/a.csv has no column 'x3'"
    assert status["failedShards"] == [
        {"index": 1, "exitCode": 2, "reason": "MissingColumn", "message": "s3://d/a.csv has no column 'x3'"}
    ]
    assert condition(status, "Complete")["status"] == "False"
    deadline = _job(
        {
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}
            ]
        }
    )
    assert decide(job=deadline).status["reason"] == "DeadlineExceeded"


def _results(rejected: tuple[int, ...] = (0, 0, 0)) -> Results:
    shards = []
    for index, bad in enumerate(rejected):
        part = PartFile(
            uri=f"s3://out/scores/parts/part-{index:05d}.csv",
            size_bytes=100 + index,
            sha256=SHA,
            header_bytes=20,
            rows=10,
        )
        errors = (
            PartFile(
                uri=f"s3://out/scores/_batch/errors/shard-{index:05d}.csv",
                size_bytes=50,
                sha256=SHA,
                rows=bad,
            )
            if bad
            else None
        )
        shards.append(
            ShardResult(
                uid="u-9",
                index=index,
                rows_scored=10,
                rows_rejected=bad,
                slices=[SliceResult(input="s3://data/in/a.csv", rows=10 + bad)],
                part=part,
                errors=errors,
                finished_at=datetime(2026, 12, 5, 11, 0, 10 - index, tzinfo=UTC),
            )
        )
    return Results(shards=shards)


COMPLETE = {  # what the Job controller says first; "Complete" and completionTime follow once pods are gone
    "completedIndexes": "0-2",
    "startTime": "2026-12-05T11:00:00Z",
    "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}],
}


def test_completion_publishes_one_file_composed_from_the_parts_with_one_header() -> None:
    assert needs_results(object(), {}, _job(COMPLETE)) is True  # type: ignore[arg-type]
    decision = decide(job=_job(COMPLETE), results=_results((0, 2, 0)))
    publish = next(a for a in decision.actions if isinstance(a, Publish))
    assert publish.pieces == [
        ("s3://out/scores/parts/part-00000.csv", 0, 100),
        ("s3://out/scores/parts/part-00001.csv", 20, 81),
        ("s3://out/scores/parts/part-00002.csv", 20, 82),
    ]
    assert publish.one_file_uri == "s3://out/scores/scores.csv" and publish.manifest is not None
    # Rows of shard 1's errors are numbered after shard 0's 10 rows of the same input.
    assert [(e.uri.rsplit("/", 1)[-1], e.first_rows) for e in publish.errors] == [
        ("shard-00001.csv", {"s3://data/in/a.csv": 11})
    ]
    status = decision.status
    assert (status["phase"], status["rows"], status["rowsPerSecond"]) == (
        "Succeeded",
        {"scored": 30, "rejected": 2},
        3.2,
    )
    assert status["outputs"] == [
        "s3://out/scores/manifest.json",
        "s3://out/scores/scores.csv",
        "s3://out/scores/errors.csv",
    ]
    assert condition(status, "Complete")["status"] == "True"
    assert decide(status=status, job=_job(COMPLETE)).actions == []  # final: nothing more happens


def test_beyond_the_error_threshold_the_job_fails_with_the_counts_and_keeps_the_errors() -> None:
    decision = decide(job=_job(COMPLETE), results=_results((5, 3, 4)))
    status = decision.status
    assert (status["phase"], status["reason"]) == ("Failed", "ErrorThresholdExceeded")
    assert "12 rows could not be scored (28.57% of 42), beyond errorThreshold.rows 10" in status["message"]
    publish = next(a for a in decision.actions if isinstance(a, Publish))
    assert publish.manifest is None and publish.errors_uri == "s3://out/scores/errors.csv"


def test_an_invalid_spec_fails_naming_the_field() -> None:
    decision = decide({**SPEC, "endpoint": "ep"}, models=READY_MODEL)
    assert (decision.status["phase"], decision.status["reason"]) == ("Failed", "InvalidSpec")
    assert "exactly one of model" in decision.status["message"]
