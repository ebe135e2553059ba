"""The console's Test form against a real `kstudio serve` process: the form's row, typed by the model's
input schema, comes back scored; a missing or wrong key is the scorer's 401 and a value that does not fit
its column the scorer's 422 naming the column, shown as the endpoint returned them; nothing is logged
with the key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from kstudio_console import testform

KEY = "console-test-key-0123456789"


@pytest.fixture(scope="module")
def scorer(
    models: dict[str, BuiltModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScorerProcess]:
    work = tmp_path_factory.mktemp("console-test-form")
    keys = work / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text(KEY)
    model = models["classifier"]
    sp = start_scorer(
        {
            "KSTUDIO_MODEL_URI": str(model.path),
            "KSTUDIO_MODEL_SHA256": model.sha256,
            "KSTUDIO_KEYS_DIR": str(keys),
        },
        work / "scorer",
    )
    yield sp
    sp.stop()


def schema(model: BuiltModel) -> list[dict[str, str]]:
    return [{"name": c.name, "type": c.type} for c in model.manifest.inputSchema]


def ask(scorer: ScorerProcess, key: str, values: dict[str, str], model: BuiltModel) -> testform.TestAnswer:
    request = testform.score_request(schema(model), values)
    return asyncio.run(testform.call_endpoint(scorer.url, key, request))


ROW = {"bill_length_mm": "51.3", "flipper_count": "4", "island": "Dream", "male": "false"}


def test_the_form_row_comes_back_scored(scorer: ScorerProcess, models: dict[str, BuiltModel]) -> None:
    model = models["classifier"]
    answer = ask(scorer, KEY, ROW, model)
    assert answer.status == 200 and answer.problem == ""
    [row] = answer.rows
    frame = model.frame.iloc[:1].copy()
    frame.loc[frame.index[0], ["bill_length_mm", "flipper_count", "island", "male"]] = [
        51.3,
        4.0,
        "Dream",
        False,
    ]
    assert row["Scored Labels"] == model.pipeline.predict(frame)[0]
    assert set(row["Scored Probabilities"]) == set(model.manifest.classes)


@pytest.mark.parametrize("key", ["", "not-the-key"])
def test_a_missing_or_wrong_key_is_the_endpoints_401(
    scorer: ScorerProcess, models: dict[str, BuiltModel], key: str
) -> None:
    answer = ask(scorer, key, ROW, models["classifier"])
    assert answer.status == 401 and answer.rows == []
    assert answer.shown  # the endpoint's own words, as it sent them


def test_a_value_that_does_not_fit_is_the_endpoints_422_naming_the_column(
    scorer: ScorerProcess, models: dict[str, BuiltModel]
) -> None:
    answer = ask(scorer, KEY, {**ROW, "bill_length_mm": "long"}, models["classifier"])
    assert answer.status == 422 and answer.rows == []
    assert "bill_length_mm" in answer.shown


def test_an_unreachable_endpoint_says_where_it_was_looked_for(tmp_path: Path) -> None:
    answer = asyncio.run(testform.call_endpoint("http://127.0.0.1:9", KEY, {"Inputs": {}}))
    assert answer.status == 0 and answer.problem.startswith(
        "could not reach the endpoint at http://127.0.0.1:9"
    )
    assert KEY not in answer.problem


def test_the_key_is_not_in_the_scorers_log(scorer: ScorerProcess) -> None:
    assert KEY not in scorer.log()
