"""Owner references: children are garbage-collected with the kstudio object that made them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def own(child: dict[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """Set `owner` as the controller of `child` (what kopf.adopt does, without touching labels/namespace)."""
    meta = owner.get("metadata") or {}
    child.setdefault("metadata", {})["ownerReferences"] = [
        {
            "apiVersion": owner.get("apiVersion"),
            "kind": owner.get("kind"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return child
