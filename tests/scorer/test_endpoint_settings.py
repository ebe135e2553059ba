"""Endpoint settings that reach the scorer through KSTUDIO_* variables (issue 10 part 3): sample data in
the OpenAPI document, and the exact names the operator's Deployment sets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from scorer_support import BuiltModel

from kstudio_scorer.settings import ScorerSettings

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


def test_endpoint_settings_are_read_from_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "KSTUDIO_MODEL_URI": "s3://models/m.ilearner",
        "KSTUDIO_MODEL_SHA256": "ab" * 32,
        "KSTUDIO_AUTH_ENABLED": "false",
        "KSTUDIO_LOGGING_LEVEL": "Error",
        "KSTUDIO_LOGGING_URI": "s3://logs/ep2",
        "KSTUDIO_SAMPLE_DATA": "true",
        "KSTUDIO_MAX_CONCURRENT_CALLS": "7",
        "KSTUDIO_MAX_ROWS": "1000",
        "KSTUDIO_MAX_BODY_BYTES": "1048576",
        "KSTUDIO_DRAIN_SECONDS": "12",
        "KSTUDIO_SHUTDOWN_GRACE_SECONDS": "20",
        "KSTUDIO_MAX_MODEL_BYTES": "268435456",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = ScorerSettings()  # type: ignore[call-arg]
    assert (s.logging_level, s.logging_uri, s.sample_data) == ("Error", "s3://logs/ep2", True)
    assert (s.max_concurrent_calls, s.max_rows, s.max_body_bytes) == (7, 1000, 1048576)
    assert (s.drain_seconds, s.shutdown_grace_seconds, s.max_model_bytes) == (12.0, 20.0, 268435456)
