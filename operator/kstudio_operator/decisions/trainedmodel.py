"""The TrainedModel decision: verify once per generation (retry only retryable failures), track usage.

Verification itself is I/O (download + digest + manifest) done by the handler when `needs_verification`
says so; this module turns its outcome and the users found in the index into status and Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kstudio_operator.decisions import Decision, Event, describe_validation_error
from kstudio_operator.resources.common import Condition, ConditionStatus, set_condition
from kstudio_operator.resources.trainedmodel import LISTED_USERS, TrainedModelSpec, TrainedModelStatus

# Reasons after which verification is tried again later (the cause may go away by itself).
RETRYABLE = frozenset({"ArtifactNotFound", "StorageUnavailable", "AccessDenied", "StorageNotConfigured"})


@dataclass(frozen=True)
class Verification:
    phase: str  # Ready | Invalid | Pending
    reason: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_spec(raw: dict[str, Any]) -> tuple[TrainedModelSpec | None, str]:
    try:
        return TrainedModelSpec.model_validate(dict(raw)), ""
    except ValidationError as exc:
        return None, describe_validation_error(exc)


def needs_verification(status: dict[str, Any], generation: int) -> bool:
    """A new generation (or never verified), or a retryable failure."""
    previous = TrainedModelStatus.model_validate(status)
    if previous.observed_generation != generation or previous.phase is None:
        return True
    return previous.phase != "Ready" and previous.reason in RETRYABLE


NAMED_USERS = 10  # in the InUse condition's message and Events; status.usedBy lists more


def named_users(users: list[str]) -> str:
    """ "A, B, C" or "A, ..., J and 990 more": a message stays short however many use the model."""
    more = f" and {len(users) - NAMED_USERS} more" if len(users) > NAMED_USERS else ""
    return ", ".join(users[:NAMED_USERS]) + more


def usage_fields(users: list[str]) -> dict[str, Any]:
    """The status fields (wire form) that say who uses the model."""
    return {"usedBy": users[:LISTED_USERS], "usedByCount": len(users)}


def in_use_condition(
    conditions: list[Condition], users: list[str], generation: int, deleting: bool
) -> list[Condition]:
    if users:
        reason = "DeletionBlocked" if deleting else "Referenced"
        return set_condition(conditions, "InUse", "True", reason, f"used by {named_users(users)}", generation)
    return set_condition(
        conditions, "InUse", "False", "NotReferenced", "no WebService or Endpoint uses it", generation
    )


def decide_trained_model(
    spec_raw: dict[str, Any],
    status: dict[str, Any],
    generation: int,
    verification: Verification | None,
    users: list[str],
) -> Decision:
    """`verification`: the outcome of a verification run now, or None when none was needed."""
    previous = TrainedModelStatus.model_validate(status)
    desired = previous.model_copy()
    decision = Decision(status={})
    spec, problem = parse_spec(spec_raw)
    if spec is None:
        desired = desired.model_copy(
            update={
                "phase": "Invalid",
                "reason": "InvalidSpec",
                "message": problem,
                "observed_generation": generation,
                "conditions": set_condition(
                    desired.conditions, "Ready", "False", "InvalidSpec", problem, generation
                ),
            }
        )
    elif verification is not None:
        ready: ConditionStatus = "True" if verification.phase == "Ready" else "False"
        desired = desired.model_copy(
            update={
                "phase": verification.phase,
                "reason": verification.reason,
                "message": verification.message,
                "observed_generation": generation,
                "conditions": set_condition(
                    desired.conditions, "Ready", ready, verification.reason, verification.message, generation
                ),
            }
        )
        if verification.phase == "Ready":
            # The manifest's fields arrive in wire form (camelCase); validate them into the model. The
            # report is named once the model it describes is verified (its own bytes: by each reader).
            desired = TrainedModelStatus.model_validate({**desired.to_wire(), **verification.fields})
            desired.evaluation = spec.evaluation
        if previous.phase != verification.phase or previous.reason != verification.reason:
            if verification.phase == "Ready":
                decision.events.append(
                    Event("Normal", "Verified", f"{spec.artifact.uri}: {verification.message}")
                )
            else:
                decision.events.append(Event("Warning", verification.reason, verification.message))
    desired = desired.model_copy(
        update={
            "conditions": in_use_condition(desired.conditions, users, generation, False),
        }
    )
    decision.status = desired.to_wire() | usage_fields(users)
    return decision
