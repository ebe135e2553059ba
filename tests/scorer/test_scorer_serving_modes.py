"""Serving modes in one scorer, with real models: a traffic split (every answer names its model, a session
sticks to one, OIP V2 can address one model of the split, counts per model, one size limit for all) and a
mirror (scores copies off the request path, never answers, agreement metrics, disagreements to MinIO)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from scorer_support import wait_ready
from sklearn.linear_model import LogisticRegression

from kstudio_core.environment import MirrorModel, TrafficModel
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_core.storage import ObjectStore
from kstudio_scorer.http.app import create_app
from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
from kstudio_scorer.settings import ScorerSettings
from kstudio_trainer.artifact_writer import write_ilearner

ROW = {"x1": 0.3, "x2": -0.1}
V2 = {
    "inputs": [
        {"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.3]},
        {"name": "x2", "shape": [1], "datatype": "FP64", "data": [-0.1]},
    ]
}


def _model(path: Path, flip: bool, noise: float = 0.0) -> TrafficModel:
    """x1, x2 -> 0/1; `flip` learns the opposite, so the two models answer differently; `noise` mislabels
    that share of the training rows (a worse model)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = ((x[:, 0] + x[:, 1] > 0) ^ flip).astype(int)
    y = np.where(rng.random(80) < noise, 1 - y, y)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name="x1", type="number"), ColumnSpec(name="x2", type="number")],
        classes=[0, 1],
    )
    digest = write_ilearner(path, LogisticRegression().fit(x, y), manifest)
    return TrafficModel(name=path.stem, uri=str(path), sha256=digest.sha256)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrafficModel, TrafficModel]:
    d = tmp_path_factory.mktemp("split")
    return _model(d / "m-a.ilearner", False), _model(d / "m-b.ilearner", True)


@pytest.fixture(scope="module")
def near(tmp_path_factory: pytest.TempPathFactory) -> TrafficModel:
    """Almost m-a: trained with a few labels wrong, so it agrees with m-a on most rows."""
    return _model(tmp_path_factory.mktemp("near") / "m-near.ilearner", False, noise=0.05)


def _client(a: TrafficModel, b: TrafficModel, wa: int, **settings: Any) -> TestClient:
    traffic = [a.model_copy(update={"weight": wa}), b.model_copy(update={"weight": 100 - wa})]
    values = {"traffic": traffic, "model_name": "ep", "auth_enabled": False, "termination_log": None}
    return TestClient(create_app(ScorerSettings(**(values | settings))))


def _score(client: TestClient, session: str | None = None) -> tuple[str, str, Any]:
    headers = {"x-kstudio-session": session} if session else {}
    r = client.post("/score", json={"Inputs": {"input1": [ROW]}, "GlobalParameters": {}}, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["x-kstudio-model"], r.headers["x-kstudio-model-version"], r.json()


def test_every_answer_names_the_model_of_the_split_that_produced_it(
    pair: tuple[TrafficModel, TrafficModel],
) -> None:
    a, b = pair
    with _client(a, b, 50) as client:
        wait_ready(client)
        seen: dict[str, set[str]] = {}
        for _ in range(60):
            name, version, body = _score(client)
            seen.setdefault(name, set()).add(str(body["Results"]["output1"][0]["Scored Labels"]))
            assert version == {a.name: a.sha256, b.name: b.sha256}[name]
        assert set(seen) == {"m-a", "m-b"} and seen["m-a"] != seen["m-b"]  # they do answer differently
        ready = client.get("/readyz").json()
        assert [(m["name"], m["weight"]) for m in ready["models"]] == [("m-a", 50), ("m-b", 50)]
        table = {"Inputs": {"input1": {"ColumnNames": ["x1", "x2"], "Values": [["0.3", "-0.1"]]}}}
        r = client.post("/workspaces/w/services/s/execute?api-version=2.0", json=table)
        assert r.status_code == 200 and r.headers["x-kstudio-model"] in {"m-a", "m-b"}


def test_a_session_sticks_to_one_model_in_every_protocol(pair: tuple[TrafficModel, TrafficModel]) -> None:
    a, b = pair
    with _client(a, b, 50) as client:
        wait_ready(client)
        for session in ("alice", "bob", "carol", "dave"):
            first = _score(client, session)[0]
            assert {_score(client, session)[0] for _ in range(10)} == {first}
            r = client.post("/v2/models/ep/infer", json=V2, headers={"x-kstudio-session": session})
            assert r.json()["model_name"] == first and r.headers["x-kstudio-model"] == first


def test_oip_names_the_answering_model_and_can_address_one_model_of_the_split(
    pair: tuple[TrafficModel, TrafficModel],
) -> None:
    a, b = pair
    with _client(a, b, 90) as client:
        wait_ready(client)
        r = client.post(f"/v2/models/ep/versions/{b.sha256}/infer", json=V2)
        assert (r.json()["model_name"], r.json()["model_version"]) == ("m-b", b.sha256)
        assert {client.post("/v2/models/m-b/infer", json=V2).json()["model_name"] for _ in range(10)} == {
            "m-b"
        }
        assert client.post(f"/v2/models/m-a/versions/{b.sha256}/infer", json=V2).status_code == 404
        assert client.post("/v2/models/m-c/infer", json=V2).status_code == 404
        meta = client.get("/v2/models/ep").json()
        assert meta["versions"] == [a.sha256, b.sha256]
        assert client.get("/v2/models/m-b").json()["versions"] == [b.sha256]
        assert client.get("/v2/models/m-b/ready").status_code == 200


def test_requests_are_counted_per_model_and_refused_input_is_not_the_models_error(
    pair: tuple[TrafficModel, TrafficModel],
) -> None:
    a, b = pair
    with _client(a, b, 100) as client:
        wait_ready(client)
        for _ in range(3):
            _score(client)
        bad = client.post("/score", json={"Inputs": {"input1": [{"x1": 1.0}]}, "GlobalParameters": {}})
        assert bad.status_code == 422 and bad.headers["x-kstudio-model"] == "m-a"
        text = client.get("/metrics").text
    assert 'kstudio_scorer_model_requests_total{model="m-a",outcome="ok"} 3.0' in text
    assert 'kstudio_scorer_model_requests_total{model="m-a",outcome="refused"} 1.0' in text
    assert 'kstudio_scorer_model_request_duration_seconds_count{model="m-a"} 4.0' in text


def test_the_models_of_a_split_share_one_size_limit_and_the_one_that_does_not_fit_is_named(
    pair: tuple[TrafficModel, TrafficModel],
) -> None:
    a, b = pair
    settings = ScorerSettings(traffic=[a], auth_enabled=False, termination_log=None)  # type: ignore[call-arg]
    alone = ScoringModel(settings, source=a)
    alone.load()
    limit = alone.inflated_bytes + alone.inflated_bytes // 2  # a fits, a and b together do not
    failures: list[ModelLoadError] = []
    app = _client(a, b, 50, max_model_bytes=limit).app
    app.state.kstudio.on_load_failure = failures.append  # type: ignore[attr-defined]
    done = threading.Event()
    with TestClient(app) as client:
        while not failures and not done.wait(0.05):
            pass
        body = client.get("/readyz").json()
    assert failures[0].model == "m-b" and failures[0].exit_code == 2
    assert "inflated by m-a loaded before it" in str(failures[0])
    assert body["ready"] is False and body["model"] == "m-b"


def _mirrored(model: TrafficModel, percent: int = 100) -> MirrorModel:
    return MirrorModel(name=model.name, uri=model.uri, sha256=model.sha256, percent=percent)


def _metric(text: str, line_start: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1])


def _wait_for(client: TestClient, line_start: str, at_least: float) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = client.get("/metrics").text
        if (
            any(line.startswith(line_start) for line in text.splitlines())
            and _metric(text, line_start) >= at_least
        ):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{line_start} never reached {at_least}")


def test_a_mirror_scores_copies_never_answers_and_its_agreement_tells_a_worse_model_apart(
    pair: tuple[TrafficModel, TrafficModel], near: TrafficModel
) -> None:
    a, flipped = pair
    rows = [{"x1": float(v), "x2": float(w)} for v, w in np.random.default_rng(7).normal(size=(50, 2))]
    body = {"Inputs": {"input1": rows}, "GlobalParameters": {}}
    agreement = {}
    for mirror in (near, flipped):
        values = {"traffic": [a], "mirror": _mirrored(mirror), "auth_enabled": False, "termination_log": None}
        with TestClient(create_app(ScorerSettings(**values))) as client:
            wait_ready(client)
            for _ in range(20):
                r = client.post("/score", json=body)
                assert (
                    r.status_code == 200 and r.headers["x-kstudio-model"] == "m-a"
                )  # the mirror never answers
            done = f'kstudio_scorer_mirror_requests_total{{mirror="{mirror.name}",outcome="ok"}}'
            text = _wait_for(client, done, 20)
            rows_line = f'kstudio_scorer_mirror_rows_total{{mirror="{mirror.name}",model="m-a"}}'
            assert _metric(text, rows_line) == 1000
            gauge = f'kstudio_scorer_mirror_label_agreement{{mirror="{mirror.name}",model="m-a"}}'
            agreement[mirror.name] = _metric(text, gauge)
            assert f'kstudio_scorer_mirror_duration_seconds_count{{mirror="{mirror.name}"}}' in text
            assert 'kstudio_scorer_model_requests_total{model="m-a",outcome="ok"} 20.0' in text
    assert agreement["m-near"] > 0.8 and agreement["m-b"] < 0.2, agreement


def test_copies_the_mirror_cannot_keep_up_with_are_dropped_and_counted(
    pair: tuple[TrafficModel, TrafficModel],
) -> None:
    a, b = pair
    values = {
        "traffic": [a],
        "mirror": _mirrored(b),
        "mirror_queue_size": 2,
        "auth_enabled": False,
        "termination_log": None,
    }
    app = create_app(ScorerSettings(**values))
    with TestClient(app) as client:
        wait_ready(client)
        state = app.state.kstudio  # type: ignore[attr-defined]
        served = state.split.primary
        columns = served.model.warm_up_columns()
        given = served.model.predict(columns)
        started = time.perf_counter()
        for _ in range(2000):  # far faster than one predict each: the queue overflows
            state.shadow(served, "/score", columns, given, b"{}")
        offered_in = time.perf_counter() - started
        text = _wait_for(client, 'kstudio_scorer_mirror_requests_total{mirror="m-b",outcome="dropped"}', 1)
        dropped = _metric(text, 'kstudio_scorer_mirror_requests_total{mirror="m-b",outcome="dropped"}')
        text = _wait_for(
            client, 'kstudio_scorer_mirror_requests_total{mirror="m-b",outcome="ok"}', 2000 - dropped
        )
    assert dropped > 0 and offered_in < 1.0  # offering never waited for the mirror


def test_disagreeing_copies_reach_object_storage_with_logging_on(
    pair: tuple[TrafficModel, TrafficModel], minio_server: Any, object_store: ObjectStore
) -> None:
    a, b = pair
    object_store.ensure_bucket("endpoint-logs")
    values = {
        "traffic": [a],
        "mirror": _mirrored(b),
        "auth_enabled": False,
        "termination_log": None,
        "logging_level": "Error",
        "logging_uri": "s3://endpoint-logs/ep-mirror",
        "logging_flush_seconds": 0.2,
    }
    app = create_app(ScorerSettings(**values), store_factory=lambda: ObjectStore(minio_server.settings))
    with TestClient(app) as client:
        wait_ready(client)
        r = client.post("/score", json={"Inputs": {"input1": [ROW, {"x1": -2.0, "x2": -1.0}]}})
        assert r.status_code == 200
        deadline = time.monotonic() + 20
        keys: list[str] = []
        while not keys and time.monotonic() < deadline:
            keys = object_store.list_keys("endpoint-logs", "ep-mirror/mirror/")
            time.sleep(0.2)
    assert keys, "no disagreement sample was written"
    record = orjson.loads(object_store.get_bytes(f"s3://endpoint-logs/{keys[0]}").splitlines()[0])
    assert (record["model"], record["mirror"], record["rows"], record["differing"]) == ("m-a", "m-b", 2, 2)
    assert record["differingRows"] == [0, 1] and record["answer"] != record["mirrorAnswer"]
    assert record["request"]["Inputs"]["input1"][0] == ROW


@pytest.fixture(scope="module")
def transform(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrafficModel, list[str]]:
    """A transform fitted by the trainer: impute + scale two numbers, one-hot a category, drop the rest."""
    import pandas as pd

    from kstudio_trainer.spec import parse_snapshot
    from kstudio_trainer.transform import train_transform

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "length": rng.normal(44, 5, 60).round(1),
            "mass": rng.normal(4000, 500, 60).round(0),
            "island": rng.choice(["Biscoe", "Dream"], 60),
            "note": ["ignored"] * 60,
        }
    )
    frame.loc[3, "length"] = None
    snapshot = {
        "dataset": {"uri": "/dev/null"},
        "task": "transform",
        "features": ["length", "mass", "island"],
        "preprocessing": {"impute": "median", "scale": "standard", "categorical": "onehot"},
    }
    outcome = train_transform(frame, parse_snapshot(snapshot), snapshot, 1)
    path = tmp_path_factory.mktemp("transform") / "prep.ilearner"
    digest = write_ilearner(path, outcome.pipeline, outcome.manifest)
    return TrafficModel(name="prep-1", uri=str(path), sha256=digest.sha256), outcome.manifest.outputColumns


def test_a_transform_answers_rrs_classic_and_oip_with_its_transformed_columns_named(
    transform: tuple[TrafficModel, list[str]],
) -> None:
    model, columns = transform
    assert columns == ["length", "mass", "island_Biscoe", "island_Dream"]
    settings = ScorerSettings(traffic=[model], model_name="ep", auth_enabled=False, termination_log=None)  # type: ignore[call-arg]
    row = {"length": 44.0, "mass": 4500.0, "island": "Dream"}
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        rrs = client.post("/score", json={"Inputs": {"input1": [row, {**row, "length": None}]}}).json()
        first, missing = rrs["Results"]["output1"]
        assert list(first) == columns and (first["island_Biscoe"], first["island_Dream"]) == (0.0, 1.0)
        assert abs(first["mass"] - (4500 - 4000) / 500) < 0.5  # scaled by the training rows
        assert missing["length"] == pytest.approx(first["length"], abs=0.5)  # imputed with the median
        table = {"Inputs": {"input1": {"ColumnNames": list(row), "Values": [["44", "4500", "Dream"]]}}}
        classic = client.post(
            "/workspaces/w/services/s/execute?api-version=2.0&details=true", json=table
        ).json()
        value = classic["Results"]["output1"]["value"]
        assert value["ColumnNames"] == columns and value["ColumnTypes"] == ["Double"] * 4
        assert value["Values"][0][2:] == ["0", "1"]
        v2 = {
            "inputs": [
                {"name": "length", "shape": [1], "datatype": "FP64", "data": [44.0]},
                {"name": "mass", "shape": [1], "datatype": "FP64", "data": [4500.0]},
                {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Dream"]},
            ]
        }
        oip = client.post("/v2/models/ep/infer", json=v2).json()
        assert [o["name"] for o in oip["outputs"]] == columns and oip["model_name"] == "prep-1"
        assert oip["outputs"][3]["data"] == [1.0] and oip["outputs"][3]["datatype"] == "FP64"
        only = client.post("/v2/models/ep/infer", json=v2 | {"outputs": [{"name": "mass"}]}).json()
        assert [o["name"] for o in only["outputs"]] == ["mass"]
        meta = client.get("/v2/models/ep").json()
        assert [o["name"] for o in meta["outputs"]] == columns and meta["parameters"]["task"] == "transform"
        assert client.post("/score", json={"Inputs": {"input1": [{"length": 1.0}]}}).status_code == 422


def test_a_transform_batch_job_writes_the_transformed_columns(
    transform: tuple[TrafficModel, list[str]], minio_server: Any, object_store: ObjectStore
) -> None:
    model, columns = transform
    object_store.ensure_bucket("transform-jobs")
    object_store.put_bytes(
        b"length,mass,island\n44.0,4500,Dream\n,4000,Biscoe\n", "s3://transform-jobs/in.csv"
    )
    settings = ScorerSettings(traffic=[model], auth_enabled=False, termination_log=None)  # type: ignore[call-arg]
    app = create_app(settings, store_factory=lambda: ObjectStore(minio_server.settings))
    with TestClient(app) as client:
        wait_ready(client)
        r = client.post(
            "/jobs", json={"input": "s3://transform-jobs/in.csv", "output": "s3://transform-jobs/out.csv"}
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while (job := client.get(f"/jobs/{r.json()['id']}").json())["state"] not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    assert job["state"] == "Succeeded", job
    lines = object_store.get_bytes("s3://transform-jobs/out.csv").decode().splitlines()
    assert lines[0].replace('"', "").split(",") == columns and len(lines) == 3
