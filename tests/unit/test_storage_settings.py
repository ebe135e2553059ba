"""S3 URIs and storage settings: pure parsing, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from kstudio_core.storage import ObjectStore, S3Uri, StorageError, StorageSettings


def test_s3_uri_parses_bucket_and_nested_key() -> None:
    uri = S3Uri.parse("s3://models/penguins/penguins-3.ilearner")
    assert (uri.bucket, uri.key) == ("models", "penguins/penguins-3.ilearner")
    assert str(uri) == "s3://models/penguins/penguins-3.ilearner"
    assert str(uri.with_suffix(".result.json")) == "s3://models/penguins/penguins-3.ilearner.result.json"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://b/k", "not an s3:// URI"),
        ("s3:///k", "no bucket"),
        ("s3://bucket", "no object key"),
        ("s3://bucket/", "no object key"),
        ("s3://bucket/dir/", "no object key"),
        ("s3://b/k", "invalid bucket name 'b'"),
        ("s3://My_Bucket/k", "invalid bucket name 'My_Bucket'"),
    ],
)
def test_bad_s3_uri_names_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        S3Uri.parse(text)


def test_settings_from_env_variables() -> None:
    s = StorageSettings.from_env(
        {
            "KSTUDIO_S3_ENDPOINT": "minio.kstudio.svc:9000",
            "KSTUDIO_S3_ACCESS_KEY": "ak",
            "KSTUDIO_S3_SECRET_KEY": "sk",
            "KSTUDIO_S3_SECURE": "true",
        }
    )
    assert (s.endpoint, s.access_key, s.secret_key, s.secure, s.region) == (
        "minio.kstudio.svc:9000",
        "ak",
        "sk",
        True,
        "us-east-1",
    )


def test_settings_from_mounted_secret_directory(tmp_path: Path) -> None:
    (tmp_path / "accessKey").write_text("ak-from-file\n")
    (tmp_path / "secretKey").write_text("sk-from-file\n")
    s = StorageSettings.from_env(
        {"KSTUDIO_S3_ENDPOINT": "http://10.244.0.1:9000/", "KSTUDIO_S3_CREDENTIALS_DIR": str(tmp_path)}
    )
    assert (s.endpoint, s.access_key, s.secret_key, s.secure) == (
        "10.244.0.1:9000",
        "ak-from-file",
        "sk-from-file",
        False,
    )


def test_https_endpoint_implies_secure() -> None:
    s = StorageSettings.from_env(
        {
            "KSTUDIO_S3_ENDPOINT": "https://s3.example:443",
            "KSTUDIO_S3_ACCESS_KEY": "a",
            "KSTUDIO_S3_SECRET_KEY": "b",
        }
    )
    assert s.secure and s.endpoint == "s3.example:443"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "KSTUDIO_S3_ENDPOINT is not set"),
        ({"KSTUDIO_S3_ENDPOINT": "h:1"}, "KSTUDIO_S3_ACCESS_KEY and KSTUDIO_S3_SECRET_KEY not set"),
        ({"KSTUDIO_S3_ENDPOINT": "h:1", "KSTUDIO_S3_ACCESS_KEY": "a"}, "KSTUDIO_S3_SECRET_KEY not set"),
        (
            {"KSTUDIO_S3_ENDPOINT": "h:1", "KSTUDIO_S3_CREDENTIALS_DIR": "/nonexistent"},
            "cannot read credentials",
        ),
    ],
)
def test_missing_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        StorageSettings.from_env(env)


def test_keys_never_appear_in_reprs() -> None:
    s = StorageSettings(endpoint="h:1", access_key="AKIA-visible?", secret_key="s3cr3t-value")
    for text in (repr(s), str(s), repr(ObjectStore(s))):
        assert "s3cr3t-value" not in text
        assert "AKIA-visible?" not in text


def test_to_env_round_trips() -> None:
    s = StorageSettings(endpoint="h:1", access_key="a", secret_key="b", secure=True, region="eu-1")
    assert StorageSettings.from_env(s.to_env()) == s
