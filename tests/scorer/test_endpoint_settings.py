"""Endpoint settings that reach the scorer through KSTUDIO_* variables (issue 10 part 3): sample data in
the OpenAPI document. That every variable the operator's Deployment sets reaches ScorerSettings is
tests/unit/test_pod_environment.py's (from the rendered Deployment, by the names of the core's table)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from scorer_support import BuiltModel

Client = Callable[..., TestClient]


def _row_example(client: TestClient) -> tuple[dict[str, object], dict[str, object]]:
    doc = client.get("/openapi.json").json()
    rows = doc["components"]["schemas"]["ScoreRequest"]["properties"]["Inputs"]["properties"]["input1"]
    return rows["items"]["example"], rows["items"]["properties"]["island"]


def test_sample_data_off_keeps_training_values_out_of_the_openapi_document(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    client = make_client(models["classifier"])
    example, island = _row_example(client)
    assert example["island"] == "text" and "examples" not in str(island)
    assert "Biscoe" not in client.get("/openapi.json").text


def test_sample_data_on_shows_training_categories_as_examples(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    example, island = _row_example(make_client(models["classifier"], sample_data=True))
    assert example["island"] == "Biscoe"
    assert island["anyOf"][0]["examples"] == ["Biscoe", "Dream", "Torgersen"]
