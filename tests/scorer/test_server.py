"""Real `kstudio serve` processes (uvicorn) with models in real MinIO: download + digest check, auth with
primary/secondary/rotated keys, limits (very large body, concurrency), graceful shutdown, exit codes."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from fixtures.local_cluster import wait_until
from kstudio_core.storage import ObjectStore


def rows(model: BuiltModel, n: int) -> dict[str, Any]:
    return {"Inputs": {"input1": orjson.loads(model.frame.head(n).to_json(orient="records"))}}


def write_keys(keys_dir: Path, primary: str, secondary: str) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name, value in (("primaryKey", primary), ("secondaryKey", secondary)):
        tmp = keys_dir / f".{name}.tmp"
        tmp.write_text(value)
        os.replace(tmp, keys_dir / name)  # a new inode, like a Secret volume update


@pytest.fixture(scope="module")
def uploaded(models: dict[str, BuiltModel], object_store: ObjectStore) -> dict[str, str]:
    object_store.ensure_bucket("models")
    uris = {}
    for name, m in models.items():
        uri = f"s3://models/scorer-tests/{name}.ilearner"
        assert object_store.upload(m.path, uri) == m.sha256
        uris[name] = uri
    return uris


def test_model_from_minio_with_primary_secondary_and_rotated_keys(
    models: dict[str, BuiltModel],
    uploaded: dict[str, str],
    minio_server: Any,
    tmp_path: Path,
    scorer_processes: list[ScorerProcess],
) -> None:
    primary, secondary = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    keys = tmp_path / "keys"
    write_keys(keys, primary, secondary)
    env = {
        "KSTUDIO_MODEL_URI": uploaded["classifier"],
        "KSTUDIO_MODEL_SHA256": models["classifier"].sha256,
        "KSTUDIO_KEYS_DIR": str(keys),
        "KSTUDIO_KEYS_RELOAD_SECONDS": "0.1",
        **minio_server.settings.to_env(),
    }
    sp = start_scorer(env, tmp_path / "scorer")
    scorer_processes.append(sp)
    m = models["classifier"]
    with sp.client() as c:
        assert (tmp_path / "scorer" / "model" / f"{m.sha256}.ilearner").exists()
        assert (
            c.post("/score", json=rows(m, 2), headers={"Authorization": f"Bearer {primary}"}).status_code
            == 200
        )
        assert (
            c.post("/score", json=rows(m, 2), headers={"Authorization": f"Bearer {secondary}"}).status_code
            == 200
        )
        refused = [
            c.post("/score", json=rows(m, 2), headers=h)
            for h in (
                {},
                {"Authorization": "Bearer nope"},
                {"Authorization": f"Basic {primary}"},
                {"Authorization": f"Bearer {primary}x"},
            )
        ]
        assert {r.status_code for r in refused} == {401}
        assert len({r.content for r in refused}) == 1, "a 401 must not say which key failed"
        assert refused[0].headers["www-authenticate"] == "Bearer"
        # every scoring route is protected; health and metrics are not
        assert c.post("/v2/models/model/infer", json={"inputs": []}).status_code == 401
        assert c.post("/jobs", json={"input": "s3://a1/b.csv", "output": "s3://a1/c.csv"}).status_code == 401
        assert c.get("/jobs/x").status_code == 401
        assert c.get("/readyz").status_code == 200 and c.get("/metrics").status_code == 200

        # rotate the secondary key: the old one stops working, the new one works, primary unaffected
        rotated = secrets.token_urlsafe(24)
        write_keys(keys, primary, rotated)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (
                c.post(
                    "/score", json=rows(m, 1), headers={"Authorization": f"Bearer {secondary}"}
                ).status_code
                == 401
            ):
                break
            time.sleep(0.05)
        assert (
            c.post("/score", json=rows(m, 1), headers={"Authorization": f"Bearer {secondary}"}).status_code
            == 401
        )
        assert (
            c.post("/score", json=rows(m, 1), headers={"Authorization": f"Bearer {rotated}"}).status_code
            == 200
        )
        assert (
            c.post("/score", json=rows(m, 1), headers={"Authorization": f"Bearer {primary}"}).status_code
            == 200
        )
    log = sp.log()
    for key in (primary, secondary, rotated, minio_server.secret_key):
        assert key not in log


def test_digest_mismatch_exits_2_and_says_why(
    models: dict[str, BuiltModel],
    uploaded: dict[str, str],
    minio_server: Any,
    tmp_path: Path,
    scorer_processes: list[ScorerProcess],
) -> None:
    wrong = "ab" * 32
    env = {
        "KSTUDIO_MODEL_URI": uploaded["classifier"],
        "KSTUDIO_MODEL_SHA256": wrong,
        "KSTUDIO_AUTH_ENABLED": "false",
        **minio_server.settings.to_env(),
    }
    sp = start_scorer(env, tmp_path / "scorer", wait=False)
    scorer_processes.append(sp)
    assert sp.proc.wait(timeout=60) == 2
    reason = (tmp_path / "scorer" / "termination-log").read_text()
    assert models["classifier"].sha256 in reason and wrong in reason and "refusing" in reason
    assert not (tmp_path / "scorer" / "model" / f"{wrong}.ilearner").exists()


def test_missing_model_object_exits_2(
    uploaded: dict[str, str], minio_server: Any, tmp_path: Path, scorer_processes: list[ScorerProcess]
) -> None:
    env = {
        "KSTUDIO_MODEL_URI": "s3://models/scorer-tests/absent.ilearner",
        "KSTUDIO_MODEL_SHA256": "cd" * 32,
        "KSTUDIO_AUTH_ENABLED": "false",
        **minio_server.settings.to_env(),
    }
    sp = start_scorer(env, tmp_path / "scorer", wait=False)
    scorer_processes.append(sp)
    assert sp.proc.wait(timeout=60) == 2
    assert "absent.ilearner" in (tmp_path / "scorer" / "termination-log").read_text()


def test_auth_must_be_disabled_explicitly(
    models: dict[str, BuiltModel], tmp_path: Path, scorer_processes: list[ScorerProcess]
) -> None:
    m = models["classifier"]
    env = {"KSTUDIO_MODEL_URI": str(m.path), "KSTUDIO_MODEL_SHA256": m.sha256}
    sp = start_scorer(env, tmp_path / "scorer", wait=False)
    scorer_processes.append(sp)
    assert sp.proc.wait(timeout=60) == 2
    assert "KSTUDIO_AUTH_ENABLED=false" in sp.log()


@pytest.fixture(scope="module")
def limited_scorer(models: dict[str, BuiltModel], tmp_path_factory: pytest.TempPathFactory) -> Any:
    m = models["forest"]
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_AUTH_ENABLED": "false",
        "KSTUDIO_MAX_BODY_BYTES": str(1024 * 1024),
        "KSTUDIO_MAX_CONCURRENT_CALLS": "2",
        "KSTUDIO_RETRY_AFTER_SECONDS": "3",
    }
    sp = start_scorer(env, tmp_path_factory.mktemp("limited"))
    yield sp
    sp.stop()


def _read_status(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_very_large_body_is_refused_with_413_and_memory_stays_flat(
    limited_scorer: ScorerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    sp = limited_scorer
    before = sp.peak_rss_mib()
    # 1) declared: 10 GB Content-Length, refused before a byte of body is sent
    with socket.create_connection(("127.0.0.1", sp.port)) as s:
        s.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        head = _read_status(s)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    # 2) chunked, no length: up to 256 MiB streamed; the server stops reading after 1 MiB
    sent = 0
    chunk = b"7" * (1024 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", sp.port)) as s:
        s.sendall(
            b"POST /v2/models/model/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        s.settimeout(10)
        try:
            while sent < 256 * 1024 * 1024:
                s.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        head = _read_status(s)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    after = sp.peak_rss_mib()
    with capsys.disabled():
        print(
            f"\nlarge body: sent {sent / 2**20:.0f} MiB before the server closed; "
            f"peak RSS {before:.0f} -> {after:.0f} MiB"
        )
    assert sent < 200 * 1024 * 1024, "the server kept reading a body far over its limit"
    assert after - before < 32, f"peak RSS grew by {after - before:.0f} MiB"
    with httpx.Client(base_url=sp.url) as c:
        assert c.get("/healthz").status_code == 200


def test_concurrency_limit_answers_429_with_retry_after(
    models: dict[str, BuiltModel], limited_scorer: ScorerProcess
) -> None:
    m = models["forest"]
    x = m.frame.sample(7_000, replace=True, random_state=0).to_numpy()
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}
    )
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    refusals: list[dict[str, Any]] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=limited_scorer.url, timeout=60) as c:
            r = c.post("/v2/models/model/infer", content=body)
        with lock:  # asserted below: an assert in a thread would only warn
            statuses[r.status_code] += 1
            if r.status_code == 429:
                retry_after.add(r.headers["retry-after"])
                refusals.append(r.json())

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses[429] >= 1 and statuses[200] >= 2 and set(statuses) <= {200, 429}, statuses
    assert retry_after == {"3"}
    assert {r["code"] for r in refusals} == {"too_many_requests"}, refusals
    with httpx.Client(base_url=limited_scorer.url) as c:
        metrics = c.get("/metrics").text
    # labelled with its route although the limits layer answered before any endpoint ran
    assert (
        'kstudio_scorer_requests_total{method="POST",route="/v2/models/{name}/infer",status="429"}' in metrics
    )


def test_sigterm_finishes_in_flight_requests_then_exits_0(
    models: dict[str, BuiltModel], tmp_path: Path, scorer_processes: list[ScorerProcess]
) -> None:
    m = models["forest"]
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_AUTH_ENABLED": "false",
    }
    sp = start_scorer(env, tmp_path / "scorer")
    scorer_processes.append(sp)
    x = m.frame.sample(2_000, replace=True, random_state=0).to_numpy()
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}
    )
    with socket.create_connection(("127.0.0.1", sp.port)) as s:
        # The request is in flight when SIGTERM arrives: its headers and half its body are sent, and the
        # server has answered a request on a later connection (it accepts and reads them in order).
        s.sendall(
            b"POST /v2/models/model/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        with httpx.Client(base_url=sp.url, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
        sp.proc.send_signal(signal.SIGTERM)  # no drain here (KSTUDIO_DRAIN_SECONDS=0): shutdown begins

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", sp.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until("the listener to close", lambda: not listening(), timeout=30, interval=0.05)
        assert sp.proc.poll() is None, "the scorer quit with a request in flight"
        s.sendall(body[len(body) // 2 :])
        s.settimeout(30)
        response = b""
        while chunk := s.recv(1 << 16):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert orjson.loads(payload)["outputs"][0]["shape"] == [2_000]
    assert sp.proc.wait(timeout=30) == 0
