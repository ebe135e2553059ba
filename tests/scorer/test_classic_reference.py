"""Our classic answers against Microsoft's published ones (classic_reference.py names each source): the
request-response shapes of the documentation and the generated samples, and the error envelope with the
classes and codes of classic's REST API error reference. The BES reference is test_classic_jobs.py's."""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from classic_reference import (
    COLUMN_TYPES_ONLY_WITH_DETAILS,
    ERROR_CLASSES,
    ERROR_DETAILS,
    PORTAL_RECORDS_REQUEST,
    PORTAL_TABLE_REQUEST,
    RRS_SAMPLE_REQUEST,
    RRS_SAMPLE_RESPONSE,
    shape,
)
from fastapi.testclient import TestClient
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from fixtures.local_cluster import wait_until

Client = Callable[..., TestClient]
EXECUTE = "/workspaces/ws/services/svc/execute"


def as_text(value: Any) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def table_like_the_sample(model: BuiltModel, n: int) -> dict[str, Any]:
    """The published sample request with this model's columns and rows, every value a string as sent."""
    frame = model.frame.head(n)
    body = {
        "Inputs": {
            "input1": {
                "ColumnNames": list(frame.columns),
                "Values": [[as_text(v) for v in row] for row in frame.itertuples(index=False)],
            }
        },
        "GlobalParameters": {},
    }
    assert shape(body) == shape(RRS_SAMPLE_REQUEST)
    return body


def test_a_table_request_is_answered_in_the_published_response_shape(
    models: dict[str, BuiltModel], make_client: Client
) -> None:
    m = models["classifier"]
    client = make_client(m)
    r = client.post(EXECUTE + "?api-version=2.0&details=true", json=table_like_the_sample(m, 3))
    assert r.status_code == 200, r.text
    ours = r.json()
    # The sample's top-level GlobalParameters is in no response users recorded from the service.
    assert shape(ours["Results"]) == shape(RRS_SAMPLE_RESPONSE["Results"])
    table = ours["Results"]["output1"]["value"]
    assert len(table["ColumnNames"]) == len(table["ColumnTypes"]) == len(table["Values"][0])
    assert len(table["Values"]) == 3

    plain = client.post(EXECUTE + "?api-version=2.0", json=table_like_the_sample(m, 1)).json()
    assert COLUMN_TYPES_ONLY_WITH_DETAILS and "ColumnTypes" not in plain["Results"]["output1"]["value"]


@pytest.mark.parametrize("sample", [PORTAL_RECORDS_REQUEST, PORTAL_TABLE_REQUEST], ids=["records", "table"])
def test_the_requests_the_portal_generated_are_scored_with_this_models_columns(
    models: dict[str, BuiltModel], make_client: Client, sample: dict[str, Any]
) -> None:
    """The generated samples send every value as a string; only the column names are the service's."""
    m = models["classifier"]
    client = make_client(m)
    row = {k: as_text(v) for k, v in m.frame.head(1).to_dict(orient="records")[0].items()}
    body = copy.deepcopy(sample)
    table = isinstance(sample["Inputs"]["input1"], dict)
    if table:
        body["Inputs"]["input1"] = {"ColumnNames": list(row), "Values": [list(row.values())]}
    else:
        body["Inputs"]["input1"] = [row]
    assert shape(body["Inputs"]["input1"]).__class__ is shape(sample["Inputs"]["input1"]).__class__
    query = "?api-version=2.0" + ("" if table else "&format=swagger")
    r = client.post(EXECUTE + query, json=body)
    assert r.status_code == 200, r.text
    output = r.json()["Results"]["output1"]
    answered = output["value"]["Values"][0] if table else list(output[0].values())
    assert str(m.pipeline.predict(m.frame.head(1))[0]) in answered


def assert_reference_error(
    r: httpx.Response, status: int, error_class: str, detail_code: str, target: str | None = None
) -> dict[str, Any]:
    """The envelope of classic's errors, with the class and detail code its error reference gives the case
    (the class's HTTP status too, where classic answered this case with a status of its own)."""
    assert r.status_code == status, r.text
    doc = r.json()
    assert shape(doc) == {
        "error": {
            "code": "str",
            "message": "str",
            "details": [repr({"code": "str", "target": "str", "message": "str"})],
        }
    }, doc
    error = doc["error"]
    assert error["code"] == error_class and error_class in ERROR_CLASSES, error
    assert ERROR_DETAILS[detail_code][0] == error_class
    assert error["details"][0]["code"] == detail_code, error
    if status in (400, 401, 404, 503):
        assert ERROR_CLASSES[error_class] == status
    if target is not None:
        assert error["details"][0]["target"] == target
    return dict(error)


def test_errors_have_the_envelope_classes_and_codes_of_classics_error_reference(
    models: dict[str, BuiltModel], make_client: Client, tmp_path: Path
) -> None:
    m = models["classifier"]
    client = make_client(m)
    r = client.post(EXECUTE + "?api-version=3.0", json=table_like_the_sample(m, 1))
    assert_reference_error(r, 400, "BadArgument", "BadVersionCall", "api-version")
    r = client.post(
        EXECUTE + "?api-version=2.0", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_reference_error(r, 400, "BadArgument", "RequestBodyInvalid")
    bad = table_like_the_sample(m, 2)
    bad["Inputs"]["input1"]["Values"][1][0] = "twelve"  # bill_length_mm
    r = client.post(EXECUTE + "?api-version=2.0", json=bad)
    # 422 is ours (README); classic answered a value that does not parse as this class and code.
    error = assert_reference_error(r, 422, "BadUserArgument", "InputParseError", "bill_length_mm")
    assert "row 1" in error["message"] and "twelve" in error["message"]

    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text("k-primary")
    protected = make_client(m, auth_enabled=True, keys_dir=keys)
    r = protected.post(EXECUTE + "?api-version=2.0", json=table_like_the_sample(m, 1))
    assert_reference_error(r, 401, "Unauthorized", "ScoreRequestUnauthorized")


@pytest.fixture
def one_call_scorer(models: dict[str, BuiltModel], tmp_path: Path) -> Iterator[ScorerProcess]:
    m = models["classifier"]
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_AUTH_ENABLED": "false",
        "KSTUDIO_MAX_CONCURRENT_CALLS": "1",
    }
    sp = start_scorer(env, tmp_path / "scorer")
    yield sp
    sp.stop()


def test_a_call_over_the_concurrency_limit_is_refused_in_the_envelope_with_classics_throttling_code(
    models: dict[str, BuiltModel], one_call_scorer: ScorerProcess
) -> None:
    """One call is in flight (its body half sent), so the next is over the limit of 1: 429 (ours, with
    Retry-After), the class and code classic's reference gives a throttled call."""
    body = httpx.Request("POST", "http://x/", json=table_like_the_sample(models["classifier"], 1)).content
    head = (
        f"POST {EXECUTE}?api-version=2.0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", one_call_scorer.port)) as held:
        held.sendall(head + body[:10])
        with one_call_scorer.client() as c:

            def refused() -> httpx.Response | None:
                r = c.post(
                    EXECUTE + "?api-version=2.0", content=body, headers={"content-type": "application/json"}
                )
                return r if r.status_code == 429 else None

            r = wait_until("a call over the limit (the held one has the slot)", refused, timeout=30)
            assert r.headers.get("retry-after")
            assert_reference_error(r, 429, "ServiceUnavailable", "TooManyConcurrentRequests")
        held.sendall(body[10:])
        held.settimeout(30)
        assert held.recv(12) == b"HTTP/1.1 200"
