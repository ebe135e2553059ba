"""TrainedModel: a reconcile that verifies the artifact once per generation and keeps `usedBy`
current from the index of WebServices/Endpoints; deletion blocked while the model is in use.

Verification streams: the artifact is downloaded to a private temp file while its sha256 is computed,
compared with spec.artifact.sha256, and only then is `manifest.json` read from it (kstudio_core.ilearner);
memory stays flat in the artifact's size, and at most four verifications run at once. Nothing is ever
deserialized here: the manifest is JSON; the pipeline is not loaded.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from kstudio_core.evaluation import REPORT_FILE, report_uri
from kstudio_core.ilearner import ArtifactError, DigestMismatchError, read_manifest
from kstudio_core.runresult import result_uri
from kstudio_core.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ObjectNotFoundError,
    S3Uri,
    StorageError,
    StorageUnavailableError,
)
from kstudio_operator import constants as c
from kstudio_operator.builders.trainedmodel import status_from_manifest
from kstudio_operator.decisions.trainedmodel import (
    RETRYABLE,
    Verification,
    decide_trained_model,
    in_use_condition,
    named_users,
    needs_verification,
    parse_spec,
    usage_fields,
)
from kstudio_operator.handlers.common import post_events
from kstudio_operator.indexes import values
from kstudio_operator.resources.common import get_condition
from kstudio_operator.resources.trainedmodel import TrainedModelSpec, TrainedModelStatus
from kstudio_operator.runtime import Body, Key, Runtime


def verify_artifact(
    store: Any, store_error: str | None, spec: TrainedModelSpec, now: datetime
) -> Verification:
    """Download (streaming digest), compare, read the manifest. Blocking: run it in a thread."""
    if store is None:
        return Verification(
            "Pending", "StorageNotConfigured", f"object storage is not configured: {store_error}"
        )
    uri, expected = spec.artifact.uri, spec.artifact.sha256
    with tempfile.TemporaryDirectory(prefix="kstudio-verify-") as tmp:
        path = Path(tmp) / "model.ilearner"
        try:
            actual = store.download(uri, path)
        except (ObjectNotFoundError, BucketNotFoundError):
            return Verification("Invalid", "ArtifactNotFound", f"{uri} does not exist")
        except AccessDeniedError as exc:
            return Verification("Pending", "AccessDenied", f"cannot read {uri}: {exc}")
        except (StorageUnavailableError, StorageError) as exc:
            return Verification("Pending", "StorageUnavailable", f"cannot read {uri}: {exc}")
        if actual != expected:
            return Verification(
                "Invalid",
                "DigestMismatch",
                f"the sha256 of {uri} is {actual}, not spec.artifact.sha256 {expected}: "
                "the file was changed or is not the recorded artifact",
            )
        size = path.stat().st_size
        try:
            manifest = read_manifest(path, expected)
        except DigestMismatchError as exc:  # changed between download and read: cannot happen, say so
            return Verification("Invalid", "DigestMismatch", str(exc))
        except ArtifactError as exc:
            return Verification("Invalid", "UnreadableArtifact", f"{uri} is not a readable .ilearner: {exc}")
    fields = status_from_manifest(manifest, size, now)
    return Verification(
        "Ready",
        "Verified",
        f"sha256 verified, {manifest.task} model" + (f" of {manifest.label}" if manifest.label else ""),
        fields,
    )


def remove_report(store: Any, spec: TrainedModelSpec) -> None:
    """The run's evaluation report and figures: its folder next to the artifact. Blocking. A report kept
    anywhere else (named by hand) is not the model's to delete."""
    if spec.evaluation is None or spec.evaluation.uri != report_uri(spec.artifact.uri):
        return
    report = S3Uri.parse(spec.evaluation.uri)
    folder = report.key.removesuffix(REPORT_FILE)  # "<artifact key>.evaluation/": only this run's files
    for key in store.list_keys(report.bucket, folder):
        store.remove(S3Uri(report.bucket, key))


def users_of(model_users: Any, namespace: str, name: str) -> list[str]:
    return sorted(set(values(model_users, (namespace, name))))


async def reconcile_trained_model(rt: Runtime, key: Key, body: Body) -> float | None:
    model_users = rt.indexes["model_users"]
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 1)
    status = rt.current_status(key, body)
    verification = None
    spec, _ = parse_spec(dict(body.get("spec") or {}))
    if spec is not None and needs_verification(status, generation):
        async with rt.verify_slots:
            verification = await asyncio.to_thread(
                verify_artifact, rt.store, rt.store_error, spec, datetime.now(UTC)
            )
    decision = decide_trained_model(
        dict(body.get("spec") or {}), status, generation, verification, users_of(model_users, namespace, name)
    )
    await post_events(rt.kube, body, decision.events)
    await rt.write_status(key, body, c.TRAINED_MODELS, decision.status)
    if verification is not None and verification.reason in RETRYABLE:
        # Retryable: back off exponentially (2 s, 4 s, ... 5 min) instead of re-downloading every tick.
        return rt.backoff(key, base=2.0, cap=300.0)
    rt.succeeded(key)
    return None


# While a model in use is being deleted, look again this often (its users' changes wake it sooner).
IN_USE_RECHECK = 5.0


async def release_trained_model(rt: Runtime, key: Key, body: Body) -> float | None:
    """The cleanup of a TrainedModel being deleted (finalizer.py): blocked (seconds until it looks again)
    while a WebService or Endpoint references it, saying so in its InUse condition and an Event; then its
    artifact, run result and evaluation report go with it under artifactDeletionPolicy Delete (None: done)."""
    model_users = rt.indexes["model_users"]
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 1)
    users = users_of(model_users, namespace, name)
    if users:
        message = f"deletion is blocked: in use by {named_users(users)}"
        previous = TrainedModelStatus.model_validate(rt.current_status(key, body))
        before = get_condition(previous.conditions, "InUse")
        conditions = in_use_condition(previous.conditions, users, generation, True)
        wire = previous.to_wire() | usage_fields(users) | {"conditions": [x.to_wire() for x in conditions]}
        await rt.write_status(key, body, c.TRAINED_MODELS, wire)
        said = f"used by {named_users(users)}"
        if before is None or before.reason != "DeletionBlocked" or before.message != said:
            await rt.kube.event(body, "Warning", "DeletionBlocked", message)
        return IN_USE_RECHECK
    spec, _ = parse_spec(dict(body.get("spec") or {}))
    if spec is not None and spec.artifact_deletion_policy == "Delete" and rt.store is not None:
        try:
            await asyncio.to_thread(remove_report, rt.store, spec)
            await asyncio.to_thread(rt.store.remove, spec.artifact.uri)
            await asyncio.to_thread(rt.store.remove, result_uri(spec.artifact.uri))
        except ObjectNotFoundError:
            pass
        except StorageError as exc:
            raise kopf.TemporaryError(f"cannot delete {spec.artifact.uri}: {exc}", delay=15) from exc
    return None
