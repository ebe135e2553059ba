"""The operator verifies a 500 MB artifact from a real MinIO with flat memory: the sha256 is computed while
the object streams to a private file, and only manifest.json is inflated."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from fixtures.minio_server import MinioServer
from kstudio_core.ilearner import MANIFEST_MEMBER, MODEL_MEMBER, ColumnSpec, IlearnerManifest
from kstudio_core.storage import ObjectStore

SIZE = 500 * 1024 * 1024
CHUNK = 4 * 1024 * 1024

PROBE = """
import json, resource, sys
from datetime import UTC, datetime
from kstudio_core.storage import ObjectStore, StorageSettings
from kstudio_operator.handlers.trainedmodel import verify_artifact
from kstudio_operator.resources.trainedmodel import TrainedModelSpec
args = json.loads(sys.argv[1])
store = ObjectStore(StorageSettings(endpoint=args["endpoint"], access_key=args["ak"], secret_key=args["sk"]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
spec = TrainedModelSpec.model_validate({"artifact": {"uri": args["uri"], "sha256": args["sha"]}})
outcome = verify_artifact(store, None, spec, datetime.now(UTC))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"phase": outcome.phase, "reason": outcome.reason, "size": outcome.fields.get("sizeBytes"),
                  "base_mb": base / 1024, "peak_mb": peak / 1024}))
"""


def big_ilearner(path: Path) -> str:
    """A well-formed .ilearner whose model member is 500 MB (stored, not compressed); its sha256."""
    manifest = IlearnerManifest(
        task="regression", label="y", inputSchema=[ColumnSpec(name="x", type="number")]
    ).model_dump_json()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MANIFEST_MEMBER, manifest)
        with zf.open(zipfile.ZipInfo(MODEL_MEMBER), "w", force_zip64=True) as member:
            block = bytes(CHUNK)
            for _ in range(SIZE // CHUNK):
                member.write(block)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def test_verifying_a_500_mb_artifact_keeps_memory_flat(
    tmp_path: Path, minio_server: MinioServer, object_store: ObjectStore
) -> None:
    path = tmp_path / "big.ilearner"
    sha = big_ilearner(path)
    object_store.ensure_bucket("models")
    uri = "s3://models/memory/big.ilearner"
    object_store.upload(path, uri)
    path.unlink()
    args = {
        "endpoint": minio_server.endpoint,
        "ak": minio_server.access_key,
        "sk": minio_server.secret_key,
        "uri": uri,
        "sha": sha,
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["phase"], result["reason"]) == ("Ready", "Verified"), result
    assert result["size"] > SIZE
    # The artifact is 500 MB; verification may add a few buffers to the interpreter's own footprint.
    grown = result["peak_mb"] - result["base_mb"]
    rss = f"RSS {result['base_mb']:.0f} -> {result['peak_mb']:.0f} MB"
    print(f"\nverification of a {SIZE >> 20} MB artifact: {rss}")
    assert grown < 64, result
