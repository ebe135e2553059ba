"""Classic BES wire format (pure): connection strings, relative locations, create bodies, status documents."""

from __future__ import annotations

import orjson
import pytest

from kstudio_scorer.bes.classic_bes import (
    ClassicJobRequestError,
    job_from_request,
    status_document,
    storage_from_connection_string,
    uri_of_relative_location,
)
from kstudio_scorer.bes.jobs import new_job

SECRET = "c2VjcmV0LWtleS1ub3QtdG8tbGVhaw=="
CONN = f"DefaultEndpointsProtocol=http;AccountName=minio-user;AccountKey={SECRET};BlobEndpoint=http://10.0.0.5:9000/"


def body(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "Inputs": {"input1": {"ConnectionString": CONN, "RelativeLocation": "/inbox/day/1.csv"}},
        "Outputs": {"output1": {"ConnectionString": CONN, "RelativeLocation": "/outbox/day/1-scored.csv"}},
        "GlobalParameters": {},
    }
    doc.update(overrides)
    return orjson.dumps(doc)


def test_azure_connection_string_with_an_s3_blob_endpoint_gives_credentials() -> None:
    settings, base = storage_from_connection_string(CONN, "Inputs.input1.ConnectionString")
    assert (settings.endpoint, settings.access_key, settings.secret_key) == (
        "10.0.0.5:9000",
        "minio-user",
        SECRET,
    )
    assert settings.secure is False and base == "http://10.0.0.5:9000/"
    secure, _ = storage_from_connection_string(
        f"AccountName=a;AccountKey={SECRET};BlobEndpoint=https://s3.example.test", "x"
    )
    assert secure.secure is True and secure.endpoint == "s3.example.test"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET}", "has no BlobEndpoint"),
        (f"AccountKey={SECRET};BlobEndpoint=http://h:9000/", "has no AccountName"),
        ("AccountName=acct;BlobEndpoint=http://h:9000/", "has no AccountKey"),
        (f"AccountName=acct;AccountKey={SECRET};BlobEndpoint=ftp://h/", "must be http(s)"),
        (
            "AccountName=acct;pasted-secret-without-its-name;BlobEndpoint=http://h:9000/",
            "part 2 is not Key=Value",
        ),
        ("", "must be a connection string"),
    ],
)
def test_bad_connection_strings_say_what_is_missing_and_never_quote_the_key(text: str, words: str) -> None:
    with pytest.raises(ClassicJobRequestError) as info:
        storage_from_connection_string(text, "Inputs.input1.ConnectionString")
    assert words in info.value.message and info.value.target == "Inputs.input1.ConnectionString"
    assert SECRET not in info.value.message and "pasted-secret" not in info.value.message


def test_relative_location_is_container_then_blob_path() -> None:
    uri = uri_of_relative_location("/inbox/2026/12/day.csv", "where")
    assert (uri.bucket, uri.key) == ("inbox", "2026/12/day.csv")
    for bad in ("/", "/only-container", "/Bad_Bucket/x.csv", 7):
        with pytest.raises(ClassicJobRequestError):
            uri_of_relative_location(bad, "Outputs.output1.RelativeLocation")


def test_create_body_becomes_a_job_with_credentials_kept_out_of_its_public_form() -> None:
    job = job_from_request(body())
    assert (job.input, job.output) == ("s3://inbox/day/1.csv", "s3://outbox/day/1-scored.csv")
    assert job.credentials["output"].secret_key == SECRET
    assert SECRET not in orjson.dumps(job.to_dict()).decode() and SECRET not in repr(job)
    job.state = "Succeeded"
    doc = status_document(job)
    assert doc["StatusCode"] == "Finished" and doc["Details"] is None
    assert doc["Results"] == {
        "output1": {
            "ConnectionString": None,
            "RelativeLocation": "/outbox/day/1-scored.csv",
            "BaseLocation": "http://10.0.0.5:9000/",
            "SasBlobToken": "",
        }
    }
    assert SECRET not in orjson.dumps(doc).decode()


def test_create_body_errors_name_the_field() -> None:
    cases = [
        (b"[1]", "body"),
        (body(Outputs={}), "Outputs"),
        (body(Inputs={"a": {}, "b": {}}), "Inputs"),
        (body(GlobalParameters=[1]), "GlobalParameters"),
        (
            body(Inputs={"input1": {"ConnectionString": CONN, "RelativeLocation": "/inbox/data.txt"}}),
            "Inputs.input1.RelativeLocation",
        ),
    ]
    for raw, target in cases:
        with pytest.raises(ClassicJobRequestError) as info:
            job_from_request(raw)
        assert info.value.target == target, info.value.message


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("Created", "NotStarted"),
        ("Queued", "NotStarted"),
        ("Running", "Running"),
        ("Failed", "Failed"),
        ("Cancelled", "Cancelled"),
    ],
)
def test_states_map_to_classic_status_codes(state: str, code: str) -> None:
    job = job_from_request(body())
    job.state = state  # type: ignore[assignment]
    job.error = "why" if state == "Failed" else None
    doc = status_document(job)
    assert doc["StatusCode"] == code and doc["Results"] is None
    assert doc["Details"] == ("why" if state == "Failed" else None)


def test_a_kstudio_job_read_on_the_classic_route_names_its_output_as_a_relative_location() -> None:
    job = new_job("s3://inbox/a.csv", "s3://outbox/run/a-scored.parquet", None, None)
    job.state = "Succeeded"
    output = status_document(job)["Results"]["output1"]
    assert output["RelativeLocation"] == "/outbox/run/a-scored.parquet" and output["BaseLocation"] is None
