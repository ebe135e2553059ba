"""What every handler shares: posting a decision's Events, and naming the fields of a validation error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from kstudio_operator.decisions import Event
    from kstudio_operator.kube import Kube


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: 'spec.algorithm.name: Input should be ...'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"spec.{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


async def post_events(kube: Kube, obj: Mapping[str, Any], events: list[Event]) -> None:
    for event in events:
        await kube.event(obj, event.type, event.reason, event.message)
