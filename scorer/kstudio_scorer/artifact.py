"""Loading a verified `.ilearner` into a scikit-learn pipeline: the scorer's half of the artifact format.

The container (layout, manifest, digest rules) is `kstudio_core.ilearner`. Here the file is opened once,
its sha256 computed by streaming that open file, and only then is anything inside parsed, from the same
open file: replacing the path after the check changes nothing. Memory stays flat in the artifact's size
and bounded by `ModelSizeLimit` (inflation.py): the stored skops payload is read in place, never copied.

The pipeline is loaded by skops with an explicit trusted list (skops_trust.py + TRUSTED_TYPES); skops
builds the whole object tree and refuses any other type before constructing anything. We never
unpickle: skops cannot run `__reduce__` payloads, which is why joblib/pickle is not offered at all.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from kstudio_core.ilearner import (
    MODEL_MEMBER,
    TRUSTED_TYPES,
    IlearnerManifest,
    InvalidArtifactError,
    UntrustedContentError,
    check_members,
    check_sha256,
    parse_manifest,
    verify_digest,
)
from kstudio_scorer import skops_trust
from kstudio_scorer.inflation import ModelSizeLimit, check_inner_sizes, model_size_limit, open_model_member

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LoadedModel:
    manifest: IlearnerManifest
    pipeline: Any


@cache
def _skops_io() -> ModuleType:
    """skops.io, imported only after skops_trust has put our trusted lists in place."""
    skops_trust.install()
    import skops.io

    module: ModuleType = skops.io
    return module


def load_ilearner(
    path: str | os.PathLike[str], expected_sha256: str, limit: ModelSizeLimit | None = None
) -> LoadedModel:
    """Verify, then load manifest and pipeline.

    `limit` bounds the inflated model (default: `model_size_limit()`, from the container's memory).
    Raises DigestMismatchError (checked before anything is parsed), InvalidArtifactError (its subclass
    ArtifactTooLargeError past the limit), UntrustedContentError (types outside the trusted list;
    nothing constructed).
    """
    expected = check_sha256(expected_sha256)
    limit = limit or model_size_limit()
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below, after the digest check
    except OSError as exc:
        raise InvalidArtifactError(f"cannot read artifact {path}: {exc.strerror or exc}") from exc
    with raw:
        verify_digest(_sha256_of(raw), expected, Path(path).name)
        raw.seek(0)
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidArtifactError(f"artifact is not a zip archive: {exc}") from exc
        with archive:
            check_members(archive)
            manifest = parse_manifest(archive)
            with open_model_member(raw, archive, MODEL_MEMBER, limit) as payload:
                check_inner_sizes(payload, MODEL_MEMBER, limit)
                pipeline = _load_pipeline(payload)
    if not callable(getattr(pipeline, "predict", None)):
        raise InvalidArtifactError(
            f"{MODEL_MEMBER} holds a {type(pipeline).__name__}, which has no predict()"
        )
    return LoadedModel(manifest=manifest, pipeline=pipeline)


def _sha256_of(raw: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := raw.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _load_pipeline(payload: IO[bytes]) -> Any:
    skops_io = _skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return skops_io.load(payload, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise UntrustedContentError(
            f"{MODEL_MEMBER} contains types outside the trusted list, refusing to load it: {exc}"
        ) from exc
    except Exception as exc:  # skops raises assorted errors on malformed input
        raise InvalidArtifactError(f"{MODEL_MEMBER} could not be loaded: {exc}") from exc
