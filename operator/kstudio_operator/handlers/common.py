"""What every handler needs: the per-operator context (from kopf's memo) and status diffing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from kstudio_operator.kube import Kube
from kstudio_operator.settings import OperatorConfig


@dataclass
class Context:
    """Created once at operator startup and handed to handlers through kopf's memo."""

    kube: Kube
    config: OperatorConfig
    store: Any | None  # kstudio_core.storage.ObjectStore; None when storage is not configured
    store_error: str | None = None


def context(memo: kopf.Memo) -> Context:
    ctx = memo.get("ctx")
    if not isinstance(ctx, Context):
        raise kopf.TemporaryError("operator context is not initialised yet", delay=2)
    return ctx


def write_status(patch: kopf.Patch, current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Merge-patch the status keys whose value changed (None removes a key). Returns whether any did."""
    changed = False
    for key in sorted(set(current) | set(desired)):
        new = desired.get(key)
        if current.get(key) != new:
            patch.status[key] = new
            changed = True
    return changed


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: 'spec.algorithm.name: Input should be ...'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"spec.{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)
