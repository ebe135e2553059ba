"""Writing a trained pipeline as an `.ilearner` (container rules: kstudio_core.ilearner)."""

from __future__ import annotations

import os
import platform
import zipfile
from typing import Any

import skops.io as skops_io

from kstudio_core.ilearner import (
    MODEL_MEMBER,
    TRUSTED_TYPES,
    ArtifactDigest,
    IlearnerManifest,
    InvalidArtifactError,
    UntrustedContentError,
    write_container,
)


def framework_versions() -> dict[str, str]:
    """Versions recorded in every manifest (the scorer reports them; a mismatch is worth a warning)."""
    import numpy
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "skops": str(skops.__version__),
        "numpy": numpy.__version__,
    }


def write_ilearner(path: str | os.PathLike[str], pipeline: Any, manifest: IlearnerManifest) -> ArtifactDigest:
    """Serialize `pipeline` with `manifest` to `path` (written atomically) and return its digest.

    Refuses (UntrustedContentError) a pipeline that readers would refuse, so a trainer never produces
    an artifact that cannot be loaded.
    """
    payload = skops_io.dumps(pipeline, compression=zipfile.ZIP_DEFLATED)
    try:
        found = skops_io.get_untrusted_types(data=payload)
    except Exception as exc:  # skops raises assorted errors on malformed input
        raise InvalidArtifactError(f"{MODEL_MEMBER} is not a readable skops payload: {exc}") from exc
    untrusted = sorted(set(found) - set(TRUSTED_TYPES))
    if untrusted:
        raise UntrustedContentError(
            "pipeline contains types outside the trusted list, readers would refuse it: "
            + ", ".join(untrusted)
        )
    return write_container(path, manifest, payload)
