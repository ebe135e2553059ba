"""Serving modes in one scorer, with real models: a traffic split (every answer names its model, a session
sticks to one, OIP V2 can address one model of the split, counts per model, one size limit for all)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scorer_support import wait_ready
from sklearn.linear_model import LogisticRegression

from kstudio_core.environment import TrafficModel
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
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


def _model(path: Path, flip: bool) -> TrafficModel:
    """x1, x2 -> 0/1; `flip` learns the opposite, so the two models answer differently."""
    x = np.random.default_rng(0).normal(size=(80, 2))
    y = ((x[:, 0] + x[:, 1] > 0) ^ flip).astype(int)
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
