"""The `.ilearner` container: the one place that knows its layout, its manifest and its digest rules.

An `.ilearner` is a zip holding exactly two members:

- `manifest.json` — what the model is: format name and version, task, label, input schema, classes,
  metrics, framework versions, the experiment snapshot and run that produced it (a `transform`, which
  only prepares data, has no label, classes or metrics, and names the columns it answers with);
- `model.skops` — the fitted scikit-learn pipeline, serialized with skops.

Readers always get an expected sha256 (from the TrainedModel) and check the *whole file* against it
before anything inside is parsed. This module has no scikit-learn or skops in it: the trainer serializes
the pipeline (`kstudio_trainer.artifact_writer`), the scorer loads it (`kstudio_scorer.model.artifact`),
both with TRUSTED_TYPES below, and the operator reads only the manifest (`read_manifest`, streaming:
memory stays flat in the artifact's size).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

FORMAT_NAME: Final = "kstudio.ilearner"
FORMAT_VERSION: Final = 1
MANIFEST_MEMBER = "manifest.json"
MODEL_MEMBER = "model.skops"
SERIALIZATION: Final = "skops"

# Upper bounds on what a reader will inflate, so a crafted zip cannot exhaust memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_MODEL_BYTES = 2 * 1024 * 1024 * 1024

_CHUNK = 1024 * 1024
# A sha256 as every kstudio document spells it (TrainedModel, run result, scorer settings): 64 lower hex.
SHA256_HEX: Final = r"^[0-9a-f]{64}$"
_SHA256_RE = re.compile(SHA256_HEX)

# Types trusted beyond skops' defaults (skops already trusts builtins, numpy arrays/scalars, scipy sparse
# matrices and every public sklearn estimator). Checked with scikit-learn 1.9.1 + skops 0.16.0 on every
# estimator of the trainer's allowlist fitted on penguins and diabetes (tests/unit/test_artifact_trust.py
# keeps that true). Adding a name here is a security decision: it must be a data-only type whose
# construction cannot run arbitrary code.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "numpy.number",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # k-nearest neighbours: the fitted search tree and its distance metric.
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
)


class ArtifactError(Exception):
    """Base class: the artifact cannot be used. The message names the reason."""


class DigestMismatchError(ArtifactError):
    """The file's sha256 is not the expected one: it is corrupt or not the artifact that was recorded."""


class UntrustedContentError(ArtifactError):
    """The serialized pipeline contains types outside TRUSTED_TYPES; nothing was constructed."""


class InvalidArtifactError(ArtifactError):
    """The file is not a well-formed .ilearner (not a zip, missing members, bad or unknown manifest)."""


# The column types of an input schema (manifest, run result, TrainedModel status, the scorer's coercion).
ColumnType = Literal["number", "integer", "string", "boolean"]
# `transform`: preprocessing only (imputation, scaling, encoding, column selection): it predicts nothing and
# answers with its transformed columns (manifest.outputColumns).
Task = Literal["classification", "regression", "transform"]
ClassLabel = bool | int | float | str


class ColumnSpec(BaseModel):
    """One input column the model expects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    type: ColumnType
    # For string columns, the categories seen in training (sorted), if known. Purely informative: the
    # pipeline's one-hot encoder ignores unseen values.
    categories: list[str] | None = None


class IlearnerManifest(BaseModel):
    """`manifest.json` of an .ilearner. Field names are the JSON keys (camelCase, as in the CRDs)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["kstudio.ilearner"] = FORMAT_NAME
    formatVersion: Literal[1] = FORMAT_VERSION
    serialization: Literal["skops"] = SERIALIZATION
    task: Task
    label: str | None = Field(default=None, min_length=1)
    inputSchema: list[ColumnSpec] = Field(min_length=1)
    outputColumns: list[str] = Field(default_factory=list)
    classes: list[ClassLabel] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    frameworks: dict[str, str] = Field(default_factory=dict)
    experiment: dict[str, Any] = Field(default_factory=dict)
    run: int | None = None
    createdAt: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.inputSchema]

    @pydantic.model_validator(mode="after")
    def _task_fields(self) -> IlearnerManifest:
        if self.task == "transform" and not self.outputColumns:
            raise ValueError("a transform names the columns it answers with (outputColumns)")
        if self.task != "transform" and self.label is None:
            raise ValueError(f"a {self.task} model names its label")
        return self


@dataclass(frozen=True)
class ArtifactDigest:
    sha256: str
    size_bytes: int


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_container(
    path: str | os.PathLike[str], manifest: IlearnerManifest, payload: bytes
) -> ArtifactDigest:
    """Write `manifest` and the serialized pipeline `payload` to `path` atomically; return its digest.

    The caller (the trainer) has already checked that `payload` holds only TRUSTED_TYPES.
    """
    # Keys a model has no use for are left out (a transform's outputColumns, a label a transform lacks), so
    # a scorer of a release before transforms, which refuses unknown keys, reads a new trainer's models.
    unused = {key for key in ("label", "outputColumns") if not getattr(manifest, key)}
    manifest_bytes = manifest.model_dump_json(indent=2, exclude=unused).encode()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".ilearner-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
            # Fixed member timestamps: the outer zip adds no wall-clock noise (skops' payload has its own).
            zf.writestr(_member(MANIFEST_MEMBER), manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(_member(MODEL_MEMBER), payload, compress_type=zipfile.ZIP_STORED)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ArtifactDigest(sha256=sha256_file(target), size_bytes=target.stat().st_size)


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info


def check_sha256(expected_sha256: str) -> str:
    """The expected digest normalised to lower case; ArtifactError unless it is 64 hex characters."""
    expected = expected_sha256.strip().lower()
    if not _SHA256_RE.match(expected):
        raise ArtifactError(f"expected sha256 must be 64 hex characters, got {expected_sha256!r}")
    return expected


def verify_digest(actual: str, expected: str, what: str) -> None:
    """DigestMismatchError unless `actual` equals `expected` (constant-time compare)."""
    if not hmac.compare_digest(actual, expected):
        raise DigestMismatchError(
            f"artifact {what} has sha256 {actual}, expected {expected}; refusing to read it"
        )


@contextmanager
def verified_file(path: str | os.PathLike[str], expected_sha256: str) -> Iterator[BinaryIO]:
    """The artifact opened once, its sha256 streamed and checked, then rewound: every later read goes
    through this same open file, so a file swapped after the check cannot be read. Memory stays flat.

    Raises ArtifactError (bad expected digest), InvalidArtifactError (unreadable), DigestMismatchError.
    """
    expected = check_sha256(expected_sha256)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InvalidArtifactError(f"cannot read artifact {path}: {exc.strerror or exc}") from exc
    with raw:
        digest = hashlib.sha256()
        while chunk := raw.read(_CHUNK):
            digest.update(chunk)
        verify_digest(digest.hexdigest(), expected, Path(path).name)
        raw.seek(0)
        yield raw


def open_zip(raw: BinaryIO) -> zipfile.ZipFile:
    """The .ilearner zip over a verified file, with exactly the two expected members."""
    try:
        archive = zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArtifactError(f"artifact is not a zip archive: {exc}") from exc
    try:
        check_members(archive)
    except InvalidArtifactError:
        archive.close()
        raise
    return archive


def read_manifest(path: str | os.PathLike[str], expected_sha256: str) -> IlearnerManifest:
    """Verify the file against `expected_sha256`, then parse its manifest; the pipeline is not read.

    Streams: only `manifest.json` is inflated (at most MAX_MANIFEST_BYTES), so memory stays flat
    whatever the artifact's size.
    """
    with verified_file(path, expected_sha256) as raw, open_zip(raw) as archive:
        return parse_manifest(archive)


def check_members(archive: zipfile.ZipFile) -> None:
    """InvalidArtifactError unless the archive holds exactly the manifest and the model."""
    names = set(archive.namelist())
    expected_names = {MANIFEST_MEMBER, MODEL_MEMBER}
    if names != expected_names:
        missing = sorted(expected_names - names)
        extra = sorted(names - expected_names)
        raise InvalidArtifactError(
            f"artifact must hold exactly {sorted(expected_names)}; missing {missing}, unexpected {extra}"
        )


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise InvalidArtifactError(f"{name} declares {info.file_size} bytes, more than the {limit} allowed")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidArtifactError(f"{name} is damaged: {exc}") from exc
    if len(data) > limit:
        raise InvalidArtifactError(f"{name} inflates to more than the {limit} bytes allowed")
    return data


def parse_manifest(archive: zipfile.ZipFile) -> IlearnerManifest:
    raw = read_member(archive, MANIFEST_MEMBER, MAX_MANIFEST_BYTES)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArtifactError(f"{MANIFEST_MEMBER} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArtifactError(f"{MANIFEST_MEMBER} must be a JSON object")
    if doc.get("format") != FORMAT_NAME:
        raise InvalidArtifactError(f"unknown artifact format {doc.get('format')!r}, expected {FORMAT_NAME!r}")
    if doc.get("formatVersion") != FORMAT_VERSION:
        raise InvalidArtifactError(
            f"unsupported {FORMAT_NAME} formatVersion {doc.get('formatVersion')!r}; "
            f"this reader knows {FORMAT_VERSION}"
        )
    try:
        return IlearnerManifest.model_validate(doc)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidArtifactError(f"{MANIFEST_MEMBER} is invalid: {problems}") from exc
