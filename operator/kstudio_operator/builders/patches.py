"""The one rule for writing part of an object with a JSON merge patch (RFC 7386).

The API server merges maps and replaces everything else (lists, scalars). So a key that the new value drops
must be sent as null, at every depth where both sides are maps, or it stays: a new rollout would keep the
finishedAt of the previous one, scorer pods would stay pinned to a node label their spec no longer names.
Every merge patch the operator sends (statuses, the scorer Deployment, a default Endpoint's scheduling) is
computed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(
    current: Mapping[str, Any], desired: Mapping[str, Any], *, full: bool = False
) -> dict[str, Any]:
    """The merge patch that turns `current` into `desired`; lists are replaced whole.

    By default values that did not change are left out ({} when the two are equal): right when `current`
    is what we wrote last (a status). With `full`, every desired value is sent and only the dropped keys
    come from `current`: for a child whose observed copy may lag our own last write, where leaving out a
    value that looks unchanged could leave it wrong.
    """
    patch: dict[str, Any] = {}
    for key in [*desired, *(k for k in current if k not in desired)]:
        old, new = current.get(key), desired.get(key)
        if old == new and not full:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            patch[key] = merge_patch(old, new, full=full)
        else:
            patch[key] = new
    return patch
