"""TrainedModel handlers: verify the artifact once, keep `usedBy` current, block deletion while in use.

Verification downloads the .ilearner, compares its sha256 with spec.artifact.sha256 *before* reading
anything inside, then reads the manifest through kstudio_scorer.artifact (which checks the digest again).
Nothing is ever deserialized here: the manifest is JSON; the pipeline is not loaded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
from pydantic import ValidationError

from kstudio_core.ilearner import ArtifactError, DigestMismatchError, read_manifest
from kstudio_core.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from kstudio_operator import constants as c
from kstudio_operator.builders.trainedmodel import referrers, status_from_manifest
from kstudio_operator.handlers.common import Context, context, describe_validation_error, write_status
from kstudio_operator.resources.common import ConditionStatus, get_condition, set_condition
from kstudio_operator.resources.trainedmodel import TrainedModelSpec, TrainedModelStatus

# Reasons after which verification is tried again on later ticks (the cause may go away by itself).
RETRYABLE = {"ArtifactNotFound", "StorageUnavailable", "AccessDenied", "StorageNotConfigured"}


@dataclass(frozen=True)
class Verification:
    phase: str  # Ready | Invalid | Pending
    reason: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def verify_artifact(ctx: Context, spec: TrainedModelSpec, now: datetime) -> Verification:
    if ctx.store is None:
        return Verification(
            "Pending", "StorageNotConfigured", f"object storage is not configured: {ctx.store_error}"
        )
    uri, expected = spec.artifact.uri, spec.artifact.sha256
    with tempfile.TemporaryDirectory(prefix="kstudio-verify-") as tmp:
        path = Path(tmp) / "model.ilearner"
        try:
            actual = ctx.store.download(uri, path)
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
        "Ready", "Verified", f"sha256 verified, {manifest.task} model of {manifest.label}", fields
    )


def _in_use_condition(conditions: list[Any], users: list[str], generation: int, deleting: bool) -> list[Any]:
    if users:
        reason = "DeletionBlocked" if deleting else "Referenced"
        return set_condition(conditions, "InUse", "True", reason, "used by " + ", ".join(users), generation)
    return set_condition(
        conditions, "InUse", "False", "NotReferenced", "no WebService or Endpoint uses it", generation
    )


def _users(ctx: Context, namespace: str, name: str) -> list[str]:
    return referrers(
        name, ctx.kube.list_custom(namespace, c.WEB_SERVICES), ctx.kube.list_custom(namespace, c.ENDPOINTS)
    )


def reconcile_trained_model(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    name: str | None,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    assert name is not None and namespace is not None
    ctx = context(memo)
    now = datetime.now(UTC)
    generation = int(meta.get("generation") or 1)
    current = dict(status)
    previous = TrainedModelStatus.model_validate(current)
    desired = previous.model_copy()

    try:
        parsed = TrainedModelSpec.model_validate(dict(spec))
    except ValidationError as exc:
        message = describe_validation_error(exc)
        desired = desired.model_copy(
            update={
                "phase": "Invalid",
                "reason": "InvalidSpec",
                "message": message,
                "observed_generation": generation,
                "conditions": set_condition(
                    desired.conditions, "Ready", "False", "InvalidSpec", message, generation
                ),
            }
        )
        write_status(patch, current, desired.to_wire())
        return

    stale = previous.observed_generation != generation or previous.phase is None
    if stale or (previous.phase != "Ready" and previous.reason in RETRYABLE):
        outcome = verify_artifact(ctx, parsed, now)
        ready: ConditionStatus = "True" if outcome.phase == "Ready" else "False"
        update: dict[str, Any] = {
            "phase": outcome.phase,
            "reason": outcome.reason,
            "message": outcome.message,
            "observed_generation": generation,
            "conditions": set_condition(
                desired.conditions, "Ready", ready, outcome.reason, outcome.message, generation
            ),
        }
        desired = desired.model_copy(update=update)
        if outcome.phase == "Ready":
            # The manifest's fields arrive in wire form (camelCase); validate them into the model.
            desired = TrainedModelStatus.model_validate({**desired.to_wire(), **outcome.fields})
        if previous.phase != outcome.phase or previous.reason != outcome.reason:
            if outcome.phase == "Ready":
                ctx.kube.event(
                    body, "Normal", reason="Verified", message=f"{parsed.artifact.uri}: {outcome.message}"
                )
            else:
                ctx.kube.event(body, "Warning", reason=outcome.reason, message=outcome.message)

    users = _users(ctx, namespace, name)
    desired = desired.model_copy(
        update={
            "used_by": users,
            "conditions": _in_use_condition(desired.conditions, users, generation, False),
        }
    )
    write_status(patch, current, desired.to_wire())


def delete_trained_model(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    name: str | None,
    namespace: str | None,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Blocks deletion (keeps the finalizer) while a WebService or Endpoint references the model."""
    assert name is not None and namespace is not None
    ctx = context(memo)
    generation = int(meta.get("generation") or 1)
    users = _users(ctx, namespace, name)
    previous = TrainedModelStatus.model_validate(dict(status))
    if users:
        message = f"deletion is blocked: in use by {', '.join(users)}"
        before = get_condition(previous.conditions, "InUse")
        conditions = _in_use_condition(previous.conditions, users, generation, True)
        write_status(
            patch,
            {"usedBy": dict(status).get("usedBy"), "conditions": dict(status).get("conditions")},
            {"usedBy": users, "conditions": [cond.to_wire() for cond in conditions]},
        )
        if (
            before is None
            or before.reason != "DeletionBlocked"
            or before.message != "used by " + ", ".join(users)
        ):
            ctx.kube.event(body, "Warning", reason="DeletionBlocked", message=message)
        raise kopf.TemporaryError(message, delay=5)
    try:
        parsed = TrainedModelSpec.model_validate(dict(spec))
    except ValidationError:
        return
    if parsed.artifact_deletion_policy == "Delete" and ctx.store is not None:
        try:
            ctx.store.remove(parsed.artifact.uri)
            ctx.store.remove(parsed.artifact.uri + ".result.json")
        except ObjectNotFoundError:
            pass
        except StorageError as exc:
            raise kopf.TemporaryError(f"cannot delete {parsed.artifact.uri}: {exc}", delay=15) from exc
