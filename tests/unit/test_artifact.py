"""The .ilearner format: round trip, digest before anything, refusal of untrusted content."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as skops_io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from kstudio_core.ilearner import (
    ArtifactError,
    ColumnSpec,
    DigestMismatchError,
    IlearnerManifest,
    InvalidArtifactError,
    UntrustedContentError,
    read_manifest,
    sha256_file,
)
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_scorer.model.inflation import ArtifactTooLargeError, ModelSizeLimit
from kstudio_trainer import artifact_writer
from kstudio_trainer.artifact_writer import write_ilearner


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    n = 120
    x = pd.DataFrame(
        {
            "size": rng.normal(10, 2, n),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    x.loc[::17, "size"] = np.nan
    y = pd.Series(np.where(x["size"].fillna(10) > 10, "big", "small"), name="kind")
    return x, y


@pytest.fixture(scope="module")
def pipeline(frame: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    x, y = frame
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                ["size"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", RandomForestClassifier(n_estimators=5, random_state=0))]).fit(
        x, y
    )


def _manifest(**overrides: Any) -> IlearnerManifest:
    fields: dict[str, Any] = {
        "task": "classification",
        "label": "kind",
        "inputSchema": [ColumnSpec(name="size", type="number"), ColumnSpec(name="colour", type="string")],
        "classes": ["big", "small"],
        "metrics": {"accuracy": 0.9},
        "frameworks": artifact_writer.framework_versions(),
        "experiment": {"label": "kind"},
        "run": 3,
    }
    fields.update(overrides)
    return IlearnerManifest(**fields)


def _assemble(
    path: Path, manifest: dict[str, Any] | bytes, payload: bytes, extra: dict[str, bytes] | None = None
) -> str:
    """Build an .ilearner by hand (as an attacker could) and return its true sha256."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", manifest if isinstance(manifest, bytes) else json.dumps(manifest))
        zf.writestr("model.skops", payload)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return sha256_file(path)


class WritesMarker:
    """Writes a marker file whenever Python would run its code during deserialization."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.marker).write_text, ("pwned",))

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("pwned")
        self.__dict__.update(state)


def test_round_trip_predictions_and_manifest(
    tmp_path: Path, pipeline: Pipeline, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    path = tmp_path / "m.ilearner"
    digest = write_ilearner(path, pipeline, _manifest())
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size_bytes == path.stat().st_size
    assert zipfile.ZipFile(path).namelist() == ["manifest.json", "model.skops"]

    loaded = load_ilearner(path, digest.sha256)
    x, _ = frame
    np.testing.assert_array_equal(loaded.pipeline.predict(x), pipeline.predict(x))
    np.testing.assert_allclose(loaded.pipeline.predict_proba(x), pipeline.predict_proba(x))
    m = loaded.manifest
    assert (m.format, m.formatVersion, m.serialization) == ("kstudio.ilearner", 1, "skops")
    assert m.feature_names == ["size", "colour"]
    assert m.classes == ["big", "small"]
    assert m.frameworks["sklearn"] == "1.9.1"
    assert m.run == 3
    assert read_manifest(path, digest.sha256) == m


def test_expected_digest_is_case_insensitive(tmp_path: Path, pipeline: Pipeline) -> None:
    digest = write_ilearner(tmp_path / "m.ilearner", pipeline, _manifest())
    assert read_manifest(tmp_path / "m.ilearner", digest.sha256.upper()).label == "kind"


@pytest.mark.parametrize("offset", [0, 100, -1, "middle"])
def test_flipped_byte_is_refused_before_anything_is_parsed(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, offset: int | str
) -> None:
    path = tmp_path / "m.ilearner"
    digest = write_ilearner(path, pipeline, _manifest())
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset == "middle" else int(offset)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("deserialization attempted before the digest check")

    monkeypatch.setattr(skops_io, "loads", must_not_run)
    monkeypatch.setattr(skops_io, "get_untrusted_types", must_not_run)
    monkeypatch.setattr(zipfile, "ZipFile", must_not_run)
    monkeypatch.setattr(json, "loads", must_not_run)
    with pytest.raises(DigestMismatchError, match=f"expected {digest.sha256}"):
        load_ilearner(path, digest.sha256)
    with pytest.raises(DigestMismatchError):
        read_manifest(path, digest.sha256)


def test_read_manifest_does_not_deserialize_the_pipeline(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = write_ilearner(tmp_path / "m.ilearner", pipeline, _manifest())

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("pipeline deserialized")

    monkeypatch.setattr(skops_io, "loads", must_not_run)
    assert read_manifest(tmp_path / "m.ilearner", digest.sha256).task == "classification"


def test_pickle_reduce_payload_with_matching_digest_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(WritesMarker(str(marker)))
    # Sanity: this payload really would write the marker if anyone unpickled it.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(WritesMarker(str(probe))))
    assert probe.exists()

    path = tmp_path / "evil.ilearner"
    sha = _assemble(path, json.loads(_manifest().model_dump_json()), payload)
    with pytest.raises(InvalidArtifactError, match="not a readable skops payload"):
        load_ilearner(path, sha)
    assert not marker.exists()


def test_manifest_claiming_pickle_serialization_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    doc = json.loads(_manifest().model_dump_json())
    doc["serialization"] = "pickle"
    path = tmp_path / "evil.ilearner"
    sha = _assemble(path, doc, pickle.dumps(WritesMarker(str(marker))))
    with pytest.raises(InvalidArtifactError, match="serialization"):
        load_ilearner(path, sha)
    assert not marker.exists()


def test_skops_payload_with_untrusted_object_is_refused_and_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = skops_io.dumps({"model": WritesMarker(str(marker))})
    path = tmp_path / "evil.ilearner"
    sha = _assemble(path, json.loads(_manifest().model_dump_json()), payload)
    with pytest.raises(UntrustedContentError, match="WritesMarker"):
        load_ilearner(path, sha)
    assert not marker.exists()


def test_pipeline_calling_os_system_is_refused_on_write_and_on_load(
    tmp_path: Path, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    evil = Pipeline([("f", FunctionTransformer(os.system))])
    with pytest.raises(UntrustedContentError, match="system"):
        write_ilearner(tmp_path / "refused.ilearner", evil, _manifest())
    assert not (tmp_path / "refused.ilearner").exists()

    path = tmp_path / "evil.ilearner"
    sha = _assemble(path, json.loads(_manifest().model_dump_json()), skops_io.dumps(evil))
    with pytest.raises(UntrustedContentError, match="system"):
        load_ilearner(path, sha)


def test_not_a_zip_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "x.ilearner"
    path.write_bytes(b"hello")
    with pytest.raises(InvalidArtifactError, match="not a zip"):
        load_ilearner(path, sha256_file(path))


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifactError, match="cannot read artifact"):
        load_ilearner(tmp_path / "absent.ilearner", "0" * 64)


def test_malformed_expected_digest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="64 hex"):
        load_ilearner(tmp_path / "whatever", "abc")


def test_unexpected_member_is_refused(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "x.ilearner"
    sha = _assemble(
        path,
        json.loads(_manifest().model_dump_json()),
        skops_io.dumps(pipeline),
        extra={"run.sh": b"rm -rf /"},
    )
    with pytest.raises(InvalidArtifactError, match=r"unexpected \['run.sh'\]"):
        load_ilearner(path, sha)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "onnx"}, "unknown artifact format 'onnx'"),
        ({"formatVersion": 99}, "unsupported kstudio.ilearner formatVersion 99"),
        ({"task": "clustering"}, "task"),
        ({"inputSchema": []}, "inputSchema"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_manifest_is_refused_with_its_reason(
    tmp_path: Path, pipeline: Pipeline, change: dict[str, Any], message: str
) -> None:
    doc = json.loads(_manifest().model_dump_json())
    doc.update(change)
    path = tmp_path / "x.ilearner"
    sha = _assemble(path, doc, skops_io.dumps(pipeline))
    with pytest.raises(InvalidArtifactError, match=message):
        read_manifest(path, sha)


def test_manifest_that_is_not_json_is_refused(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "x.ilearner"
    sha = _assemble(path, b"{not json", skops_io.dumps(pipeline))
    with pytest.raises(InvalidArtifactError, match="not valid JSON"):
        read_manifest(path, sha)


def test_oversized_member_is_refused_by_its_declared_size_before_reading_it(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    """The trainer's member is stored, not deflated: the declaration in the zip's directory is what is
    refused (the payload's own members are never opened; they would say "its members together")."""
    digest = write_ilearner(tmp_path / "m.ilearner", pipeline, _manifest())
    size = zipfile.ZipFile(tmp_path / "m.ilearner").getinfo("model.skops").file_size
    assert size > 1000
    with pytest.raises(
        ArtifactTooLargeError, match=rf"^model\.skops declares {size} inflated bytes, more than "
    ):
        load_ilearner(tmp_path / "m.ilearner", digest.sha256, ModelSizeLimit(1000, "test"))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, pipeline: Pipeline) -> None:
    write_ilearner(tmp_path / "out" / "m.ilearner", pipeline, _manifest())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.ilearner"]


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    """A 256 MiB file (sparse: no disk, no write time) is hashed with a few MiB of Python memory."""
    size = 256 * 1024 * 1024 + 7
    with open(tmp_path / "big", "wb") as f:
        f.truncate(size)
    expected = hashlib.sha256()
    zeros = bytes(1024 * 1024)
    for _ in range(size // len(zeros)):
        expected.update(zeros)
    expected.update(bytes(size % len(zeros)))
    tracemalloc.start()
    try:
        actual = sha256_file(tmp_path / "big")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert actual == expected.hexdigest()
    assert peak < 8 * 1024 * 1024, f"hashing allocated {peak / 2**20:.0f} MiB at once"


def test_manifest_json_keys_are_camel_case(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "m.ilearner"
    write_ilearner(path, pipeline, _manifest())
    doc = json.load(io.BytesIO(zipfile.ZipFile(path).read("manifest.json")))
    assert {"format", "formatVersion", "inputSchema", "createdAt", "classes", "metrics", "frameworks"} <= set(
        doc
    )
