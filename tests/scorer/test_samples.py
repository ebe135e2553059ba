"""Endpoint logging to real MinIO: level All stores request/response samples, level Error only failures;
API keys never reach storage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from scorer_support import BuiltModel, ScorerProcess, start_scorer

from kstudio_core.storage import ObjectStore

KEY = "sample-logging-key-5f3c"


def _samples(store: ObjectStore, bucket: str, prefix: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = []
        for key in store.list_keys(bucket, prefix):
            data = store.get_bytes(f"s3://{bucket}/{key}")
            assert KEY.encode() not in data
            records += [orjson.loads(line) for line in data.splitlines() if line]
        if len(records) >= want:
            return records
        time.sleep(0.2)
    return records


@pytest.mark.parametrize("level", ["All", "Error"])
def test_samples_reach_object_storage_without_keys(
    level: str,
    models: dict[str, BuiltModel],
    minio_server: Any,
    object_store: ObjectStore,
    tmp_path: Path,
    scorer_processes: list[ScorerProcess],
) -> None:
    object_store.ensure_bucket("endpoint-logs")
    m = models["classifier"]
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text(KEY)
    prefix = f"ep-{level.lower()}"
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_KEYS_DIR": str(keys),
        "KSTUDIO_LOGGING_LEVEL": level,
        "KSTUDIO_LOGGING_URI": f"s3://endpoint-logs/{prefix}",
        "KSTUDIO_LOGGING_FLUSH_SECONDS": "0.2",
        **minio_server.settings.to_env(),
    }
    sp = start_scorer(env, tmp_path / "scorer")
    scorer_processes.append(sp)
    row = orjson.loads(m.frame.head(1).to_json(orient="records"))[0]
    auth = {"Authorization": f"Bearer {KEY}"}
    with sp.client() as c:
        assert c.post("/score", json={"Inputs": {"input1": [row]}}, headers=auth).status_code == 200
        bad = dict(row, island=3)
        assert c.post("/score", json={"Inputs": {"input1": [bad]}}, headers=auth).status_code == 422
    records = _samples(object_store, "endpoint-logs", prefix + "/", 2 if level == "All" else 1)
    by_status = {r["status"]: r for r in records}
    assert 422 in by_status and "island" in by_status[422]["error"]
    if level == "All":
        assert by_status[200]["request"]["Inputs"]["input1"] == [row]
        assert "Scored Labels" in by_status[200]["response"]["Results"]["output1"][0]
    else:
        assert set(by_status) == {422} and "request" not in by_status[422]
    for r in records:
        assert "authorization" not in orjson.dumps(r).decode().lower()
