"""Bounded inflation: the model-size limit (from the cgroup memory limit) and zip bombs refused within it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as skops_io
from sklearn.linear_model import LogisticRegression

from fixtures.zip_bombs import MIB, inner_bomb_payload, stored_member, write_bomb, zeros_member
from kstudio_core.ilearner import (
    MAX_MODEL_BYTES,
    ColumnSpec,
    DigestMismatchError,
    IlearnerManifest,
    InvalidArtifactError,
    sha256_file,
)
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_scorer.model.inflation import (
    ArtifactTooLargeError,
    ModelSizeLimit,
    cgroup_memory_limit,
    model_size_limit,
)

BOMB_MIB = 1811  # 1.9 GB of zeros, ~2 MB deflated
LIMIT = ModelSizeLimit(256 * MIB, "test limit")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_the_smallest_on_the_way_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(tmp_path / "self-cgroup", "0::/kubepods/pod1/ctr\n")
    _write(root / "kubepods" / "memory.max", "1073741824\n")
    _write(root / "kubepods" / "pod1" / "memory.max", "536870912\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "memory.max", "max\n")
    assert cgroup_memory_limit(tmp_path / "self-cgroup", root) == 512 * MIB


def test_cgroup_v1_limit_ignores_the_unlimited_sentinel(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(tmp_path / "self-cgroup", "4:cpu,cpuacct:/x\n5:memory:/kubepods/pod1\n0::/\n")
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    _write(root / "memory" / "kubepods" / "pod1" / "memory.limit_in_bytes", "268435456\n")
    assert cgroup_memory_limit(tmp_path / "self-cgroup", root) == 256 * MIB


def test_cgroup_namespace_root_holds_the_containers_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(tmp_path / "self-cgroup", "0::/\n")
    _write(root / "memory.max", "805306368\n")
    assert cgroup_memory_limit(tmp_path / "self-cgroup", root) == 768 * MIB


def test_no_cgroup_limit_is_none(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(tmp_path / "self-cgroup", "0::/user.slice\n")
    _write(root / "user.slice" / "memory.max", "max\n")
    assert cgroup_memory_limit(tmp_path / "self-cgroup", root) is None
    assert cgroup_memory_limit(tmp_path / "absent", root) is None


def test_default_limit_is_half_the_container_memory_and_capped() -> None:
    half = model_size_limit(None, container_limit=512 * MIB)
    assert half.bytes == 256 * MIB and "half the container's memory limit of 512 MiB" in half.source
    assert model_size_limit(None, container_limit=64 * 1024 * MIB).bytes == MAX_MODEL_BYTES
    assert model_size_limit(1234, container_limit=512 * MIB) == ModelSizeLimit(
        1234, "KSTUDIO_MAX_MODEL_BYTES"
    )


@pytest.fixture(scope="module")
def manifest_json() -> bytes:
    manifest = IlearnerManifest(
        task="classification", label="y", inputSchema=[ColumnSpec(name="x", type="number")], classes=[0, 1]
    )
    return manifest.model_dump_json().encode()


def test_bomb_declaring_its_size_is_refused_before_inflating(tmp_path: Path, manifest_json: bytes) -> None:
    path = tmp_path / "bomb.ilearner"
    sha = write_bomb(path, manifest_json, zeros_member("model.skops", BOMB_MIB))
    assert path.stat().st_size < 3 * MIB
    with pytest.raises(ArtifactTooLargeError, match=f"declares {BOMB_MIB * MIB} inflated bytes.*test limit"):
        load_ilearner(path, sha, LIMIT)


def test_bomb_lying_about_its_size_stops_at_the_declared_size(tmp_path: Path, manifest_json: bytes) -> None:
    path = tmp_path / "bomb.ilearner"
    sha = write_bomb(path, manifest_json, zeros_member("model.skops", BOMB_MIB, declared_size=1000))
    with pytest.raises(InvalidArtifactError, match=r"model\.skops is damaged: Bad CRC-32"):
        load_ilearner(path, sha, LIMIT)


def test_bomb_declaring_less_than_the_limit_stops_at_the_limit(tmp_path: Path, manifest_json: bytes) -> None:
    # zipfile itself stops at the declared size; with a declaration just under the limit the inflated
    # bytes are spooled to disk, never held in memory, and the member is refused as damaged.
    path = tmp_path / "bomb.ilearner"
    sha = write_bomb(path, manifest_json, zeros_member("model.skops", 64, declared_size=16 * MIB - 1))
    with pytest.raises(InvalidArtifactError, match="damaged"):
        load_ilearner(path, sha, ModelSizeLimit(16 * MIB, "test limit"))


def test_skops_payload_whose_members_inflate_past_the_limit_is_refused(
    tmp_path: Path, manifest_json: bytes
) -> None:
    path = tmp_path / "bomb.ilearner"
    sha = write_bomb(path, manifest_json, stored_member("model.skops", inner_bomb_payload(BOMB_MIB)))
    with pytest.raises(ArtifactTooLargeError, match=r"model.skops \(its members together\) declares"):
        load_ilearner(path, sha, LIMIT)


def test_bomb_with_the_wrong_digest_is_refused_before_its_zip_is_read(
    tmp_path: Path, manifest_json: bytes
) -> None:
    path = tmp_path / "bomb.ilearner"
    write_bomb(path, manifest_json, zeros_member("model.skops", BOMB_MIB))
    with pytest.raises(DigestMismatchError):
        load_ilearner(path, "ab" * 32, LIMIT)


def test_deflated_model_member_within_the_limit_loads(tmp_path: Path, manifest_json: bytes) -> None:
    """The trainer stores model.skops uncompressed (read in place); another writer may deflate it."""
    x = np.random.default_rng(0).normal(size=(60, 1))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = tmp_path / "deflated.ilearner"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest_json)
        zf.writestr("model.skops", skops_io.dumps(model))
    assert zipfile.ZipFile(path).getinfo("model.skops").compress_type == zipfile.ZIP_DEFLATED
    loaded = load_ilearner(path, sha256_file(path), LIMIT)
    np.testing.assert_array_equal(loaded.pipeline.predict(x), model.predict(x))
