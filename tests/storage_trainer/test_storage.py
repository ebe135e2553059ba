"""ObjectStore against a real MinIO server: streaming, digests, and each failure with its own error."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.minio_server import MinioServer, free_port
from kstudio_core.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ObjectNotFoundError,
    ObjectStore,
    S3Uri,
    StorageSettings,
    StorageUnavailableError,
)


@pytest.fixture(scope="module")
def bucket(object_store: ObjectStore) -> str:
    object_store.ensure_bucket("storage-tests")
    return "storage-tests"


def test_ensure_bucket_is_idempotent(object_store: ObjectStore) -> None:
    assert object_store.ensure_bucket("idempotent") is True
    assert object_store.ensure_bucket("idempotent") is False
    assert object_store.bucket_exists("idempotent")


def test_upload_download_round_trip_with_streaming_digest(
    object_store: ObjectStore, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024 + 3)  # above the 5 MiB multipart threshold
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    uri = S3Uri(bucket, "nested/dir/blob.bin")

    assert object_store.upload(src, uri) == expected
    info = object_store.stat(uri)
    assert (info.size_bytes, info.sha256) == (len(data), expected)

    dst = tmp_path / "out" / "blob.bin"
    assert object_store.download(uri, dst) == expected
    assert dst.read_bytes() == data
    assert [p.name for p in dst.parent.iterdir()] == ["blob.bin"]  # no temp file left behind


def test_bytes_and_stream(object_store: ObjectStore, bucket: str) -> None:
    text = b"".join(f"{i},row {i}\n".encode() for i in range(50_000))
    uri = f"s3://{bucket}/lines.csv"
    assert object_store.put_bytes(text, uri) == hashlib.sha256(text).hexdigest()
    assert object_store.get_bytes(uri) == text
    with object_store.open_stream(uri) as stream:
        assert stream.readline() == b"0,row 0\n"
        rest = stream.read()
    assert b"0,row 0\n" + rest == text
    assert object_store.exists(uri)
    assert object_store.list_keys(bucket, "lines") == ["lines.csv"]
    object_store.remove(uri)
    assert not object_store.exists(uri)


def test_missing_object_is_named(object_store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match=f"s3://{bucket}/nope.csv: object does not exist"):
        object_store.download(f"s3://{bucket}/nope.csv", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.iterdir())
    assert object_store.exists(f"s3://{bucket}/nope.csv") is False


def test_missing_bucket_is_named(object_store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(BucketNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        object_store.get_bytes("s3://no-such-bucket/k")
    with pytest.raises(BucketNotFoundError):
        object_store.put_bytes(b"x", "s3://no-such-bucket/k")
    assert object_store.exists("s3://no-such-bucket/k") is False


def test_bad_credentials_are_access_denied(minio_server: MinioServer, bucket: str) -> None:
    wrong = ObjectStore(minio_server.settings.model_copy(update={"secret_key": "wrong-secret"}))
    with pytest.raises(AccessDeniedError, match="check the storage credentials") as err:
        wrong.get_bytes(f"s3://{bucket}/anything")
    assert "wrong-secret" not in str(err.value)
    unknown = ObjectStore(minio_server.settings.model_copy(update={"access_key": "nobody"}))
    with pytest.raises(AccessDeniedError):
        unknown.put_bytes(b"x", f"s3://{bucket}/k")


def _fast(endpoint: str) -> StorageSettings:
    return StorageSettings(
        endpoint=endpoint,
        access_key="a",
        secret_key="b",
        connect_timeout=0.5,
        read_timeout=0.5,
        retries=2,
        backoff=0.05,
    )


def _budget(settings: StorageSettings) -> float:
    """The longest one call may take by its settings: every attempt timing out, and the backoffs between."""
    attempts = settings.retries + 1
    backoffs = sum(settings.backoff * 2**i for i in range(settings.retries))
    return attempts * (settings.connect_timeout + settings.read_timeout) + backoffs


# Scheduling noise on shared cores; far below what a call without timeouts (botocore: 60 s reads) takes.
SLACK_SECONDS = 5.0


def test_unreachable_server_fails_fast_with_unavailable() -> None:
    port = free_port()  # nothing listens here
    settings = _fast(f"127.0.0.1:{port}")
    store = ObjectStore(settings)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port} unreachable after 2 retries"):
        store.get_bytes("s3://bucket/k")
    assert time.monotonic() - started < _budget(settings) + SLACK_SECONDS
    with pytest.raises(StorageUnavailableError):
        store.ensure_bucket("bucket")


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Accepts TCP connections and never answers: the case that hangs clients without timeouts. Yields its
    address and the connections it accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}", conns
    finally:
        stop.set()
        t.join(timeout=5)
        for c in conns:
            c.close()
        srv.close()


def test_server_that_never_answers_times_out_with_unavailable(
    silent_server: tuple[str, list[socket.socket]],
) -> None:
    """Each attempt ends at the read timeout and the next one opens a new connection: three connections
    (two retries), in about the time the settings allow, not the minutes of a client without timeouts."""
    endpoint, accepted = silent_server
    settings = _fast(endpoint)
    store = ObjectStore(settings)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        store.get_bytes("s3://bucket/k")
    assert time.monotonic() - started < _budget(settings) + SLACK_SECONDS
    assert len(accepted) == settings.retries + 1


@pytest.fixture
def failing_server() -> Iterator[tuple[str, list[str]]]:
    """Answers every request with 503, as an overloaded or starting S3 endpoint does."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _fail(self) -> None:
            seen.append(self.command)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = _fail

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.timeout(30)
def test_server_errors_are_retried_then_unavailable(failing_server: tuple[str, list[str]]) -> None:
    endpoint, seen = failing_server
    store = ObjectStore(_fast(endpoint))
    with pytest.raises(StorageUnavailableError, match=r"HTTP 503 .* \(after 2 retries"):
        store.get_bytes("s3://bucket/k")
    assert seen == ["GET"] * 3
    seen.clear()
    with pytest.raises(StorageUnavailableError, match="after 2 retries"):
        store.put_bytes(b"data", "s3://bucket/k")
    assert seen == ["PUT"] * 3
