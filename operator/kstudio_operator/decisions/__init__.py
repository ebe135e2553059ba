"""Pure decisions, one module per kind (and run_history.py, the runs of an Experiment):
`decide(spec, status, observed, now) -> Decision`.

No I/O here: a handler observes (from indexes and, where it must, object storage), calls its decide
function, applies the actions, posts the events and writes the status. Unit tests cover every decision
without a cluster; the cluster tier proves the wiring.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass
class Decision:
    """What a reconcile must do: `actions` in order, then post `events`, then write `status` (wire form).
    `requeue`: seconds until the object wants another look without any change (None: only on changes)."""

    status: dict[str, Any]
    actions: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: 'spec.algorithm.name: Input should be ...' (what an
    InvalidSpec condition says)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"spec.{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def first_progress(
    written: Mapping[str, Any], desired: Mapping[str, Any], progressing: Collection[str]
) -> bool:
    """Whether `desired` is a new object's first status that only says it is on its way: nothing written
    yet (no phase), Pending, and its Ready condition's reason one of `progressing` (no failure, nothing
    the user must do). Such a status may wait a few seconds in memory (Runtime.write_status) for the
    Ready that usually follows, so a new object is written once, not Pending and then Ready."""
    if written.get("phase") or desired.get("phase") != "Pending":
        return False
    return condition_reason(desired, "Ready") in progressing


def condition_reason(status: Mapping[str, Any], type_: str) -> str | None:
    """The reason of the condition `type_` in a status (wire form), None when it has none."""
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == type_:
            return str(condition.get("reason"))
    return None
