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

import os
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import IO, Any

from kstudio_core.ilearner import (
    MODEL_MEMBER,
    TRUSTED_TYPES,
    IlearnerManifest,
    InvalidArtifactError,
    UntrustedContentError,
    open_zip,
    parse_manifest,
    verified_file,
)
from kstudio_scorer.model import skops_trust
from kstudio_scorer.model.inflation import (
    ModelSizeLimit,
    check_inner_sizes,
    model_size_limit,
    open_model_member,
)


@dataclass(frozen=True)
class LoadedModel:
    manifest: IlearnerManifest
    pipeline: Any
    inflated_bytes: int = 0  # what the serialized pipeline's members declare: its share of the size limit


@cache
def _skops_io() -> ModuleType:
    """skops.io, imported only after skops_trust has put our trusted lists in place."""
    skops_trust.install()
    import skops.io

    module: ModuleType = skops.io
    return module


def import_model_libraries() -> None:
    """Import skops and the scikit-learn it needs now rather than at the first load (a process that wants
    them imported under conditions of its own: the shard runner, without pandas)."""
    _skops_io()


def load_ilearner(
    path: str | os.PathLike[str], expected_sha256: str, limit: ModelSizeLimit | None = None
) -> LoadedModel:
    """Verify, then load manifest and pipeline.

    `limit` bounds the inflated model (default: `model_size_limit()`, from the container's memory).
    Raises DigestMismatchError (checked before anything is parsed), InvalidArtifactError (its subclass
    ArtifactTooLargeError past the limit), UntrustedContentError (types outside the trusted list;
    nothing constructed).
    """
    limit = limit or model_size_limit()
    with verified_file(path, expected_sha256) as raw, open_zip(raw) as archive:
        manifest = parse_manifest(archive)
        with open_model_member(raw, archive, MODEL_MEMBER, limit) as payload:
            inflated = check_inner_sizes(payload, MODEL_MEMBER, limit)
            pipeline = _load_pipeline(payload)
    needs = "transform" if manifest.task == "transform" else "predict"
    if not callable(getattr(pipeline, needs, None)):
        raise InvalidArtifactError(
            f"{MODEL_MEMBER} holds a {type(pipeline).__name__}, which has no {needs}()"
        )
    return LoadedModel(manifest=manifest, pipeline=pipeline, inflated_bytes=inflated)


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
