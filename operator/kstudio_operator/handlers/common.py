"""What every handler shares: posting a decision's Events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kstudio_operator.decisions import Event
    from kstudio_operator.kube import Kube


async def post_events(kube: Kube, obj: Mapping[str, Any], events: list[Event]) -> None:
    for event in events:
        await kube.event(obj, event.type, event.reason, event.message)
