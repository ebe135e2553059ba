"""The scoring app under FastAPI's TestClient: every route and error class, projection, metrics, OpenAPI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np
import orjson
from fastapi.testclient import TestClient
from scorer_support import BuiltModel, settings_for

from kstudio_scorer.http.app import create_app
from kstudio_scorer.http.routes import ROUTES
from kstudio_scorer.model.served_model import ScoringModel

Client = Callable[..., TestClient]


def rows_of(model: BuiltModel, n: int) -> list[dict[str, Any]]:
    return orjson.loads(model.frame.head(n).to_json(orient="records"))


def rrs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Inputs": {"input1": rows}, "GlobalParameters": {}}


def test_score_returns_labels_and_probabilities_like_the_pipeline(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m)
    rows = rows_of(m, 5)
    r = client.post("/score", json=rrs(rows))
    assert r.status_code == 200, r.text
    out = r.json()["Results"]["output1"]
    expected_labels = m.pipeline.predict(m.frame.head(5))
    expected_proba = m.pipeline.predict_proba(m.frame.head(5))
    assert [o["Scored Labels"] for o in out] == expected_labels.tolist()
    for o, p in zip(out, expected_proba, strict=True):
        assert list(o) == ["Scored Labels", "Scored Probabilities"]
        assert np.allclose([o["Scored Probabilities"][c] for c in m.pipeline.classes_], p)


def test_score_regression_returns_scored_values(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["regressor"]
    client = make_client(m)
    r = client.post("/score", json=rrs(rows_of(m, 3)))
    assert r.status_code == 200, r.text
    values = [o["Scored Values"] for o in r.json()["Results"]["output1"]]
    assert np.allclose(values, m.pipeline.predict(m.frame.head(3).to_numpy()))


def test_output_projection_selects_columns_and_echoes_inputs(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m, output_columns=["Scored Labels"], output_include_inputs=True)
    rows = rows_of(m, 2)
    out = client.post("/score", json=rrs(rows)).json()["Results"]["output1"]
    assert set(out[0]) == set(rows[0]) | {"Scored Labels"}
    assert out[1]["island"] == rows[1]["island"]


def test_missing_values_become_nan_for_the_imputer(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    """null is a missing value: the pipeline's imputer fills it (median), as it would for NaN in training."""
    m = models["classifier"]
    client = make_client(m)
    rows = rows_of(m, 3)
    rows[0]["bill_length_mm"] = None
    rows[2]["flipper_count"] = None
    r = client.post("/score", json=rrs(rows))
    assert r.status_code == 200, r.text
    frame = m.frame.head(3).copy()
    frame.loc[0, "bill_length_mm"] = np.nan
    frame.loc[2, "flipper_count"] = np.nan
    out = r.json()["Results"]["output1"]
    assert [o["Scored Labels"] for o in out] == m.pipeline.predict(frame).tolist()
    for o, p in zip(out, m.pipeline.predict_proba(frame), strict=True):
        assert np.allclose([o["Scored Probabilities"][c] for c in m.pipeline.classes_], p)


def test_validation_errors_name_row_and_column(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m)
    rows = rows_of(m, 3)
    cases = [
        (2, "island", 5, "expected a string"),
        (1, "flipper_count", 2.5, "expected an integer"),
        (0, "male", "yes", "expected a boolean"),
        (2, "bill_length_mm", "twelve", "expected a number"),
    ]
    for row, column, value, words in cases:
        bad = [dict(r) for r in rows]
        bad[row][column] = value
        r = client.post("/score", json=rrs(bad))
        assert r.status_code == 422, r.text
        body = r.json()
        assert (body["row"], body["column"], body["code"]) == (row, column, "invalid_input")
        assert words in body["error"] and f"row {row}" in body["error"] and column in body["error"]
    missing = [dict(r) for r in rows]
    del missing[1]["island"]
    body = client.post("/score", json=rrs(missing)).json()
    assert (body["row"], body["column"]) == (1, "island") and "missing" in body["error"]


def test_score_ignores_columns_the_model_does_not_use(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m)
    rows = [r | {"colour": "blue", "species": "Adelie"} for r in rows_of(m, 2)]
    r = client.post("/score", json=rrs(rows))
    assert r.status_code == 200, r.text
    assert [o["Scored Labels"] for o in r.json()["Results"]["output1"]] == m.pipeline.predict(
        m.frame.head(2)
    ).tolist()


def test_malformed_bodies_are_400(models: dict[str, BuiltModel], make_client: Client) -> None:
    client = make_client(models["classifier"])
    for body in (b"{not json", b"[]", b'{"Inputs": 3}', b'{"Inputs": {"input1": 7}}'):
        r = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["code"] == "malformed_request"
    r = client.post("/v2/models/model/infer", content=b'{"inputs": "x"}')
    assert r.status_code == 400


def test_too_many_rows_is_413(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m, max_rows=2)
    r = client.post("/score", json=rrs(rows_of(m, 3)))
    assert r.status_code == 413 and r.json()["code"] == "too_many_rows" and "limit is 2" in r.json()["error"]
    r = client.post(
        "/v2/models/model/infer",
        json={"inputs": [{"name": "x", "shape": [3, 4], "datatype": "BYTES", "data": [["a"] * 4] * 3}]},
    )
    assert r.status_code == 413


def test_declared_body_over_the_limit_is_413_before_reading(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m, max_body_bytes=1000)
    r = client.post("/score", json=rrs(rows_of(m, 50)))
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    # streamed without Content-Length: counted as it arrives
    chunks = (b"x" * 400 for _ in range(10))
    r = client.post("/score", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # both counted under their route: the limits layer answered the first before any endpoint ran
    metrics = client.get("/metrics").text
    assert 'kstudio_scorer_requests_total{method="POST",route="/score",status="413"} 2.0' in metrics


def test_v2_per_column_and_single_matrix_inputs(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m)
    df = m.frame.head(4)
    per_column = {
        "id": "req-1",
        "inputs": [
            {"name": "bill_length_mm", "shape": [4], "datatype": "FP64", "data": df.bill_length_mm.tolist()},
            {
                "name": "flipper_count",
                "shape": [4, 1],
                "datatype": "INT64",
                "data": [[int(v)] for v in df.flipper_count],
            },
            {"name": "island", "shape": [4], "datatype": "BYTES", "data": df.island.tolist()},
            {"name": "male", "shape": [4], "datatype": "BOOL", "data": df.male.tolist()},
        ],
    }
    r = client.post("/v2/models/model/infer", json=per_column)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-1" and body["model_name"] == "model" and body["model_version"] == m.sha256
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["data"] == m.pipeline.predict(df).tolist()
    assert outputs["predict_proba"]["shape"] == [4, 3]
    assert np.allclose(np.reshape(outputs["predict_proba"]["data"], (4, 3)), m.pipeline.predict_proba(df))

    f = models["forest"]
    fclient = make_client(f)
    x = f.frame.head(3).to_numpy()
    matrix = {
        "inputs": [{"name": "input-0", "shape": [3, 6], "datatype": "FP32", "data": x.tolist()}],
        "outputs": [{"name": "predict"}],
    }
    r = fclient.post("/v2/models/model/infer", json=matrix)
    assert r.status_code == 200, r.text
    (only,) = r.json()["outputs"]
    assert only["name"] == "predict" and only["datatype"] == "INT64"
    assert only["data"] == f.pipeline.predict(x).tolist()


def test_v2_errors(models: dict[str, BuiltModel], make_client: Client) -> None:
    client = make_client(models["forest"])
    ok = {"inputs": [{"name": "m", "shape": [1, 6], "datatype": "FP64", "data": [0.0] * 6}]}
    assert client.post("/v2/models/other/infer", json=ok).status_code == 404
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/other/ready").status_code == 404
    wrong_shape = {"inputs": [{"name": "m", "shape": [1, 5], "datatype": "FP64", "data": [0.0] * 5}]}
    r = client.post("/v2/models/model/infer", json=wrong_shape)
    assert r.status_code == 400 and "[N, 6]" in r.json()["error"]
    short = {"inputs": [{"name": "m", "shape": [2, 6], "datatype": "FP64", "data": [0.0] * 6}]}
    assert client.post("/v2/models/model/infer", json=short).status_code == 400
    bad_value = {
        "inputs": [{"name": "m", "shape": [2, 6], "datatype": "FP64", "data": [1.0] * 7 + ["x"] + [1.0] * 4}]
    }
    r = client.post("/v2/models/model/infer", json=bad_value)
    assert r.status_code == 422 and (r.json()["row"], r.json()["column"]) == (1, "f1")
    bytes_for_numbers = {"inputs": [{"name": "m", "shape": [1, 6], "datatype": "BYTES", "data": ["1"] * 6}]}
    r = client.post("/v2/models/model/infer", json=bytes_for_numbers)
    assert r.status_code == 422 and "datatype BYTES" in r.json()["error"]
    unknown_output = dict(ok, outputs=[{"name": "explain"}])
    assert client.post("/v2/models/model/infer", json=unknown_output).status_code == 400
    version = models["forest"].sha256
    assert client.post(f"/v2/models/model/versions/{version}/infer", json=ok).status_code == 200
    assert client.post("/v2/models/model/versions/7/infer", json=ok).status_code == 404


def test_health_and_metadata_routes(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m, model_name="penguins")
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json()["sha256"] == m.sha256
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/penguins/ready").json() == {"name": "penguins", "ready": True}
    assert client.get("/v2").json()["name"] == "kstudio-scorer"
    meta = client.get("/v2/models/penguins").json()
    assert meta["versions"] == [m.sha256]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("bill_length_mm", "FP64"),
        ("flipper_count", "INT64"),
        ("island", "BYTES"),
        ("male", "BOOL"),
    ]
    assert client.get("/nowhere").status_code == 404
    assert client.get("/score").status_code == 405


def test_not_ready_is_503_until_the_model_loads(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    m = models["classifier"]
    settings = settings_for(m)
    gate = threading.Event()

    class SlowModel(ScoringModel):
        def load(self) -> None:
            gate.wait(10)
            super().load()

    with TestClient(create_app(settings, model=SlowModel(settings))) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/model/ready").status_code == 503
        r = client.post("/score", json=rrs(rows_of(m, 1)))
        assert r.status_code == 503 and r.json()["code"] == "model_not_ready"
        assert client.get("/healthz").status_code == 200
        gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.post("/score", json=rrs(rows_of(m, 1))).status_code == 200


def test_digest_mismatch_never_becomes_ready(models: dict[str, BuiltModel]) -> None:
    m = models["classifier"]
    failures: list[Exception] = []
    app = create_app(settings_for(m, model_sha256="0" * 64))
    app.state.kstudio.on_load_failure = failures.append
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.02)
        body = client.get("/readyz").json()
        assert body["state"] == "failed" and "expected 000000" in body["reason"]
        assert failures and failures[0].exit_code == 2  # type: ignore[attr-defined]


def test_jobs_routes_validate_and_404(models: dict[str, BuiltModel], make_client: Client) -> None:
    client = make_client(models["forest"])
    r = client.post("/jobs", json={"input": "s3://inbox/x.txt", "output": "s3://outbox/y.csv"})
    assert r.status_code == 422 and "format" in r.json()["error"]
    r = client.post("/jobs", json={"input": "http://x/y.csv", "output": "s3://outbox/y.csv"})
    assert r.status_code == 422 and "s3://" in r.json()["error"]
    r = client.post("/jobs", json={"inputs": "s3://inbox/x.csv"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert client.get("/jobs/0123").status_code == 404


def test_every_route_that_needs_the_key_refuses_a_caller_without_it_before_the_body(
    models: dict[str, BuiltModel], make_client: Client, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text("the-key-0123456789")
    client = make_client(models["classifier"], auth_enabled=True, keys_dir=keys)
    for route in ROUTES:
        path = re.sub(r"{\w+}", "model", route.path)
        r = client.request(
            route.method, path, content=b"{not json", headers={"content-type": "application/json"}
        )
        if route.needs_key:
            assert r.status_code == 401, (route.method, route.path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            code = r.json()["error"]["code"] if route.classic else r.json()["code"]
            assert code == ("Unauthorized" if route.classic else "unauthorized")
        else:
            assert r.status_code != 401, (route.method, route.path)


def test_metrics_count_routes_rows_and_model(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m)
    client.post("/score", json=rrs(rows_of(m, 7)))
    client.post("/score", content=b"nope")
    text = client.get("/metrics").text
    assert 'kstudio_scorer_requests_total{method="POST",route="/score",status="200"} 1.0' in text
    assert 'kstudio_scorer_requests_total{method="POST",route="/score",status="400"} 1.0' in text
    assert 'kstudio_scorer_rows_scored_total{route="/score"} 7.0' in text
    assert f'kstudio_scorer_model_info{{name="model",sha256="{m.sha256}",task="classification"}} 1.0' in text
    assert 'kstudio_scorer_request_duration_seconds_bucket{le="0.1",route="/score"}' in text


def test_metrics_observe_the_rows_of_each_predict_call(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m)
    client.post("/score", json=rrs(rows_of(m, 7)))
    text = client.get("/metrics").text
    assert "kstudio_scorer_predict_batch_rows_count 1.0" in text
    assert "kstudio_scorer_predict_batch_rows_sum 7.0" in text
    assert 'kstudio_scorer_predict_batch_rows_bucket{le="8.0"} 1.0' in text


def test_the_openapi_row_schema_admits_what_the_scorer_accepts(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    """README: columns the model does not use are ignored, and values may be strings as classic clients
    send them ("41.5", "true"; "" = missing). A document forbidding them would make clients generated from
    it refuse requests the scorer answers."""
    m = models["classifier"]
    client = make_client(m)
    doc = client.get("/openapi.json").json()
    rows = rows_of(m, 2)
    rows[0]["colour"] = "blue"
    rows[1] |= {"bill_length_mm": "41.5", "flipper_count": "", "male": "true"}
    body = rrs(rows)
    assert client.post("/score", json=body).status_code == 200
    jsonschema_rs.validate({**doc, "$ref": "#/components/schemas/ScoreRequest"}, body)


def test_openapi_request_schema_comes_from_the_model(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    client = make_client(models["classifier"], max_rows=500)
    doc = client.get("/openapi.json").json()
    score_body = doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert score_body == {"$ref": "#/components/schemas/ScoreRequest"}
    rows = doc["components"]["schemas"]["ScoreRequest"]["properties"]["Inputs"]["properties"]["input1"]
    assert rows["maxItems"] == 500
    props = rows["items"]["properties"]
    assert list(props) == ["bill_length_mm", "flipper_count", "island", "male"]
    assert props["flipper_count"]["anyOf"][0] == {"type": "integer"}
    assert props["male"]["anyOf"] == [{"type": "boolean"}, {"type": "string"}]  # "true" as classic sends it
    assert props["bill_length_mm"]["anyOf"] == [{"type": "number"}, {"type": "string"}, {"type": "null"}]
    # Every input column is required; others are allowed and ignored (README), not forbidden.
    assert (
        rows["items"]["required"] == list(props) and rows["items"].get("additionalProperties", True) is True
    )
    assert "predict_proba" in str(doc["components"]["schemas"]["InferenceRequest"])
    # No page that loads its script from a CDN (FastAPI's Swagger UI and ReDoc would).
    assert [client.get(path).status_code for path in ("/docs", "/redoc")] == [404, 404]


def test_the_openapi_document_is_counted_under_its_own_path(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    """Every answered path is one of the route table's (http/routes.py), the document included: its
    requests are counted under /openapi.json, not as "unmatched" (what a scan of unknown paths counts)."""
    client = make_client(models["classifier"])
    assert client.get("/openapi.json").status_code == 200
    text = client.get("/metrics").text
    assert 'route="/openapi.json"' in text
    assert "unmatched" not in text
