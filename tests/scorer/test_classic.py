"""Azure ML Studio (classic) clients, unchanged: the classic execute route and /score accept both classic
request formats with string values, answer in classic's shapes and names, and fail in classic's envelope."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from scorer_support import REPO, BuiltModel, start_scorer
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_trainer.artifact_writer import write_ilearner

Client = Callable[..., TestClient]

EXECUTE = "/workspaces/ws0123/services/svc4567/execute"


def as_text(value: Any) -> str:
    """A value as the portal's samples send it: every cell a string."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table_body(model: BuiltModel, n: int, extra: dict[str, str] | None = None) -> dict[str, Any]:
    frame = model.frame.head(n)
    names = list(frame.columns) + list(extra or {})
    values = [[as_text(v) for v in row] + list((extra or {}).values()) for row in frame.itertuples(False)]
    return {"Inputs": {"input1": {"ColumnNames": names, "Values": values}}, "GlobalParameters": {}}


def records_body(model: BuiltModel, n: int) -> dict[str, Any]:
    frame = model.frame.head(n)
    rows = [
        {c: as_text(v) for c, v in zip(frame.columns, row, strict=True)} for row in frame.itertuples(False)
    ]
    return {"Inputs": {"input1": rows}, "GlobalParameters": {}}


@pytest.mark.parametrize("route", [EXECUTE + "?api-version=2.0", "/score"])
def test_table_request_with_string_values_answers_a_classic_table(
    models: dict[str, BuiltModel], make_client: Client, route: str
) -> None:
    m = models["classifier"]
    client = make_client(m)
    r = client.post(route, json=table_body(m, 4, extra={"comment": "unused by the model"}))
    assert r.status_code == 200, r.text
    out = r.json()["Results"]["output1"]
    assert out["type"] == "table" and "ColumnTypes" not in out["value"]
    classes = list(m.pipeline.classes_)
    assert out["value"]["ColumnNames"] == [
        "Scored Labels",
        *[f'Scored Probabilities for Class "{c}"' for c in classes],
    ]
    values = out["value"]["Values"]
    assert all(type(v) is str for row in values for v in row)
    frame = m.frame.head(4)
    assert [row[0] for row in values] == m.pipeline.predict(frame).tolist()
    proba = np.array([[float(v) for v in row[1:]] for row in values])
    assert np.allclose(proba, m.pipeline.predict_proba(frame), atol=1e-14)


@pytest.mark.parametrize("route", [EXECUTE + "?api-version=2.0&format=swagger", "/score?format=swagger"])
def test_swagger_records_with_string_values_answer_classic_records(
    models: dict[str, BuiltModel], make_client: Client, route: str
) -> None:
    m = models["forest"]
    client = make_client(m)
    r = client.post(route, json=records_body(m, 3))
    assert r.status_code == 200, r.text
    rows = r.json()["Results"]["output1"]
    x = m.frame.head(3).to_numpy()
    assert [list(row) for row in rows] == [["Scored Labels", "Scored Probabilities"]] * 3
    assert [row["Scored Labels"] for row in rows] == [str(v) for v in m.pipeline.predict(x)]
    assert np.allclose(
        [float(row["Scored Probabilities"]) for row in rows], m.pipeline.predict_proba(x)[:, 1]
    )


def test_score_keeps_todays_records_output_when_no_classic_shape_is_asked(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["forest"]
    client = make_client(m)
    rows = records_body(m, 2)["Inputs"]["input1"]
    out = client.post("/score", json={"Inputs": {"input1": rows}}).json()["Results"]["output1"]
    assert list(out[0]) == ["Scored Labels", "Scored Probabilities"]
    assert isinstance(out[0]["Scored Labels"], int)
    assert set(out[0]["Scored Probabilities"]) == {"0", "1"}


def test_details_true_adds_classic_column_types(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m, output_include_inputs=True)
    r = client.post(EXECUTE + "?api-version=2.0&details=true", json=table_body(m, 2))
    assert r.status_code == 200, r.text
    value = r.json()["Results"]["output1"]["value"]
    classes = list(m.pipeline.classes_)
    assert value["ColumnNames"] == [
        "bill_length_mm",
        "flipper_count",
        "island",
        "male",
        "Scored Labels",
        *[f'Scored Probabilities for Class "{c}"' for c in classes],
    ]
    assert value["ColumnTypes"] == ["Double", "Int64", "String", "Boolean", "String"] + ["Double"] * 3
    first = m.frame.iloc[0]
    assert value["Values"][0][:4] == [as_text(first[c]) for c in m.frame.columns]


def test_regression_and_two_class_naming(models: dict[str, BuiltModel], make_client: Client) -> None:
    reg = models["regressor"]
    r = make_client(reg).post(EXECUTE + "?details=true", json=table_body(reg, 3))
    assert r.status_code == 200, r.text
    value = r.json()["Results"]["output1"]["value"]
    assert value["ColumnNames"] == ["Scored Labels"] and value["ColumnTypes"] == ["Double"]
    predicted = reg.pipeline.predict(reg.frame.head(3).to_numpy())
    assert np.allclose([float(row[0]) for row in value["Values"]], predicted, rtol=1e-14)
    forest = models["forest"]
    r = make_client(forest).post(EXECUTE + "?details=true", json=table_body(forest, 2))
    value = r.json()["Results"]["output1"]["value"]
    assert value["ColumnNames"] == ["Scored Labels", "Scored Probabilities"]
    assert value["ColumnTypes"] == ["Int64", "Double"]


def test_strings_are_read_by_the_schema_and_bad_ones_named(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m)
    body = table_body(m, 3)
    values = body["Inputs"]["input1"]["Values"]
    values[0][0], values[1][1], values[2][3] = "", "3", "False"  # missing number, integer, boolean
    assert client.post(EXECUTE, json=body).status_code == 200
    cases = [
        (2, 0, "bill_length_mm", "abc", "expected a number, got 'abc'"),
        (1, 1, "flipper_count", "2.5", "expected an integer"),
        (0, 3, "male", "maybe", "expected a boolean, got 'maybe'"),
        (1, 3, "male", "", "expected a boolean, got null"),
    ]
    for row, j, column, bad, words in cases:
        body = table_body(m, 3)
        body["Inputs"]["input1"]["Values"][row][j] = bad
        for route in (EXECUTE, "/score"):
            r = client.post(route, json=body)
            assert r.status_code == 422, r.text
            text = r.text
            assert words in text and f"row {row}" in text and column in text, text


def test_missing_columns_are_named_all(models: dict[str, BuiltModel], make_client: Client) -> None:
    m = models["classifier"]
    client = make_client(m)
    body = table_body(m, 2)
    table = body["Inputs"]["input1"]
    table["ColumnNames"] = table["ColumnNames"][:2]
    table["Values"] = [row[:2] for row in table["Values"]]
    r = client.post(EXECUTE, json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert "'island', 'male'" in error["message"] and error["details"][0]["target"] == "island"


def test_errors_come_in_the_classic_envelope_with_the_same_statuses(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m, max_rows=2)
    body = table_body(m, 2)
    body["Inputs"]["input1"]["Values"][1][2] = 7  # a number in a string column
    r = client.post(EXECUTE + "?api-version=2.0", json=body)
    assert r.status_code == 422
    assert r.json() == {  # class and code as classic's error reference names them (classic_reference.py)
        "error": {
            "code": "BadUserArgument",
            "message": "row 1, column 'island': expected a string, got 7",
            "details": [
                {
                    "code": "InputParseError",
                    "target": "island",
                    "message": "row 1, column 'island': expected a string, got 7",
                }
            ],
        }
    }
    r = client.post(EXECUTE + "?api-version=3.0", json=table_body(m, 1))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "BadArgument" and "api-version '3.0' is not supported" in error["message"]
    assert error["details"][0]["target"] == "api-version"
    r = client.post(EXECUTE, content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["details"][0]["code"] == "RequestBodyInvalid"
    r = client.post(EXECUTE, json=table_body(m, 3))
    assert r.status_code == 413 and r.json()["error"]["code"] == "RequestEntityTooLarge"
    short = table_body(m, 2)
    short["Inputs"]["input1"]["Values"][0].pop()
    r = client.post(EXECUTE, json=short)
    assert r.status_code == 422 and "row 0: the row has 3 values, ColumnNames has 4" in r.text
    r = client.get(EXECUTE)
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"


def test_classic_route_needs_the_key_and_says_so_in_the_envelope(
    models: dict[str, BuiltModel], make_client: Client, tmp_path: Any
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text("k-primary")
    m = models["forest"]
    client = make_client(m, auth_enabled=True, keys_dir=keys)
    r = client.post(EXECUTE, json=table_body(m, 1))
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(EXECUTE, json=table_body(m, 1), headers={"Authorization": "Bearer k-primary"})
    assert r.status_code == 200, r.text


def test_large_body_over_the_limit_is_413_in_the_envelope(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["forest"]
    client = make_client(m, max_body_bytes=500)
    r = client.post(EXECUTE, json=table_body(m, 20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "RequestEntityTooLarge"


def _penguins_model(directory: Path) -> tuple[Path, str]:
    """A penguins-shaped pipeline (the columns of the README's sample, label not among the inputs)."""
    rng = np.random.default_rng(11)
    n = 300
    frame = pd.DataFrame(
        {
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "bill_length_mm": rng.normal(44, 5, n),
            "bill_depth_mm": rng.normal(17, 2, n),
            "flipper_length_mm": rng.normal(200, 14, n),
            "body_mass_g": rng.normal(4200, 800, n),
            "sex": rng.choice(["MALE", "FEMALE"], n),
        }
    )
    species = np.where(
        frame.flipper_length_mm > 205, "Gentoo", np.where(frame.bill_length_mm > 44, "Chinstrap", "Adelie")
    )
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    pipeline = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
            (OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, species)
    manifest = IlearnerManifest(
        task="classification",
        label="species",
        inputSchema=[
            ColumnSpec(name="island", type="string", categories=["Biscoe", "Dream", "Torgersen"]),
            *[ColumnSpec(name=c, type="number") for c in numbers],
            ColumnSpec(name="sex", type="string", categories=["FEMALE", "MALE"]),
        ],
        classes=["Adelie", "Chinstrap", "Gentoo"],
    )
    path = directory / "penguins.ilearner"
    return path, write_ilearner(path, pipeline, manifest).sha256


def test_the_readme_classic_python_sample_runs_with_only_url_and_key_changed(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- classic-python-sample -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    path, sha256 = _penguins_model(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text("readme-sample-key-0123")
    sp = start_scorer(
        {"KSTUDIO_MODEL_URI": str(path), "KSTUDIO_MODEL_SHA256": sha256, "KSTUDIO_KEYS_DIR": str(keys)},
        tmp_path / "scorer",
    )
    try:
        url = f"{sp.url}/workspaces/penguins/services/default/execute?api-version=2.0&details=true"
        code, n_url = re.subn(r"(?m)^url = '.*'$", f"url = '{url}'", block)
        code, n_key = re.subn(r"(?m)^api_key = '[^']*'", "api_key = 'readme-sample-key-0123'", code)
        assert n_url == n_key == 1
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
    finally:
        sp.stop()
    printed = run.stdout.strip()
    assert printed.startswith("b'"), run.stdout + run.stderr
    value = json.loads(ast.literal_eval(printed))["Results"]["output1"]["value"]
    assert value["ColumnNames"] == [
        "Scored Labels",
        'Scored Probabilities for Class "Adelie"',
        'Scored Probabilities for Class "Chinstrap"',
        'Scored Probabilities for Class "Gentoo"',
    ]
    assert value["ColumnTypes"] == ["String", "Double", "Double", "Double"]
    assert len(value["Values"]) == 2 and value["Values"][0][0] in ("Adelie", "Chinstrap", "Gentoo")
