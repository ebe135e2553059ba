"""Loading a verified `.ilearner` into a scikit-learn pipeline: the scorer's half of the artifact format.

The container (layout, manifest, digest rules) is `kstudio_core.ilearner`. Here the file is read into
memory once and its sha256 checked before anything inside is parsed; every later step works on those same
bytes, so a file swapped after the check cannot be loaded. The pipeline is then loaded by skops with the
fixed TRUSTED_TYPES list; any other type in the payload is refused before construction. We never
unpickle: skops cannot run `__reduce__` payloads, which is why joblib/pickle is not offered at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import skops.io as skops_io
from skops.io.exceptions import UntrustedTypesFoundException

from kstudio_core.ilearner import (
    MAX_MODEL_BYTES,
    MODEL_MEMBER,
    TRUSTED_TYPES,
    IlearnerManifest,
    InvalidArtifactError,
    UntrustedContentError,
    open_verified,
    parse_manifest,
    read_member,
)


@dataclass(frozen=True)
class LoadedModel:
    manifest: IlearnerManifest
    pipeline: Any


def untrusted_types_in(payload: bytes) -> list[str]:
    """Types in a skops payload that TRUSTED_TYPES and skops' defaults do not cover (nothing is loaded)."""
    try:
        found = skops_io.get_untrusted_types(data=payload)
    except Exception as exc:  # skops raises assorted errors on malformed input
        raise InvalidArtifactError(f"{MODEL_MEMBER} is not a readable skops payload: {exc}") from exc
    return sorted(set(found) - set(TRUSTED_TYPES))


def load_ilearner(path: str | os.PathLike[str], expected_sha256: str) -> LoadedModel:
    """Verify, then load manifest and pipeline.

    Raises DigestMismatchError (checked before anything is parsed), InvalidArtifactError,
    UntrustedContentError (payload types outside TRUSTED_TYPES; nothing constructed).
    """
    archive = open_verified(path, expected_sha256)
    with archive:
        manifest = parse_manifest(archive)
        payload = read_member(archive, MODEL_MEMBER, MAX_MODEL_BYTES)
    untrusted = untrusted_types_in(payload)
    if untrusted:
        raise UntrustedContentError(
            f"{MODEL_MEMBER} contains types outside the trusted list, refusing to load: "
            + ", ".join(untrusted)
        )
    try:
        pipeline = skops_io.loads(payload, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise UntrustedContentError(f"{MODEL_MEMBER} refused by skops: {exc}") from exc
    except Exception as exc:
        raise InvalidArtifactError(f"{MODEL_MEMBER} could not be loaded: {exc}") from exc
    if not callable(getattr(pipeline, "predict", None)):
        raise InvalidArtifactError(
            f"{MODEL_MEMBER} holds a {type(pipeline).__name__}, which has no predict()"
        )
    return LoadedModel(manifest=manifest, pipeline=pipeline)
