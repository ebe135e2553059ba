"""The console's picture of the cluster: every watched object in memory, kept current by one watch per
kind (watch.py). Pages read only from here, so a page view costs no API request, whatever the number of
objects; controller-runtime's informer cache and kopf's indexes are the same idea.

What is watched (KINDS): the five kstudio kinds, Events, and of Pods and Services only kstudio's (by
label). Never Secrets: the console has no right to read them, and the Test form's key comes from the user.

Each namespace has a revision, the value of a counter taken at its latest change: a page shows it, and the
page's script asks for it every two seconds to know when to refresh itself (app.py, static/live.js).

Single-threaded by design: the watch tasks and the page handlers all run on one asyncio event loop, so a
page always reads a consistent state; work done in threads gets copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kstudio_core.labels import (
    APP_NAME,
    BATCH_JOBS,
    ENDPOINTS,
    EXPERIMENTS,
    GROUP_VERSION,
    LABEL_COMPONENT,
    LABEL_NAME,
    TRAINED_MODELS,
    WEB_SERVICES,
)


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    plural: str
    selector: str | None = None  # label selector: only these objects of the kind


EXPERIMENT: Final = Kind("Experiment", GROUP_VERSION, EXPERIMENTS)
TRAINED_MODEL: Final = Kind("TrainedModel", GROUP_VERSION, TRAINED_MODELS)
WEB_SERVICE: Final = Kind("WebService", GROUP_VERSION, WEB_SERVICES)
ENDPOINT: Final = Kind("Endpoint", GROUP_VERSION, ENDPOINTS)
BATCH_JOB: Final = Kind("BatchJob", GROUP_VERSION, BATCH_JOBS)
EVENT: Final = Kind("Event", "v1", "events")
POD: Final = Kind("Pod", "v1", "pods", selector=f"{LABEL_NAME}={APP_NAME}")
# An Endpoint's Service: the Test form calls the endpoint through it.
SERVICE: Final = Kind("Service", "v1", "services", selector=f"{LABEL_COMPONENT}=scorer")
KINDS: Final = (EXPERIMENT, TRAINED_MODEL, WEB_SERVICE, ENDPOINT, BATCH_JOB, EVENT, POD, SERVICE)

# Events live an hour in the API server; a namespace busy enough to have more keeps its newest.
MAX_EVENTS_PER_NAMESPACE: Final = 2000
# Big and of no use to a page: kept out of memory.
_LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"


def event_time(event: Mapping[str, Any]) -> str:
    """When an Event last happened, as an RFC 3339 string (sorts as time)."""
    meta = event.get("metadata") or {}
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
        or ""
    )


def _trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return {**obj, "metadata": meta}


class ObjectCache:
    """Objects by kind (plural), namespace and name, and a revision per namespace."""

    def __init__(self, max_events: int = MAX_EVENTS_PER_NAMESPACE) -> None:
        self._objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = {k.plural: {} for k in KINDS}
        self._changes = 0
        self._revision: dict[str, int] = {}
        self._max_events = max_events
        # (plural, namespace or "" for all): listed at least once / the last watch error, if any.
        self.synced: set[tuple[str, str]] = set()
        self.errors: dict[tuple[str, str], str] = {}

    # --- written by the watches -----------------------------------------------------------------------
    def replace(self, plural: str, scope: str, items: Iterable[dict[str, Any]]) -> None:
        """The result of a LIST: every object of `plural` in `scope` (a namespace, or "" for all)."""
        by_ns = self._objects[plural]
        old_namespaces = set(by_ns) if not scope else {scope}
        for ns in old_namespaces:
            by_ns.pop(ns, None)
        for obj in items:
            ns, name = _key(obj)
            by_ns.setdefault(ns, {})[name] = _trimmed(obj)
        for ns in old_namespaces | set(by_ns if not scope else ()):
            self._touch(ns)
        if plural == EVENT.plural:
            for ns in list(by_ns):
                self._bound_events(ns)
        self.synced.add((plural, scope))

    def apply(self, plural: str, event_type: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED (others are not about an object)."""
        ns, name = _key(obj)
        by_ns = self._objects[plural]
        if event_type == "DELETED":
            objects = by_ns.get(ns)
            if objects is None or objects.pop(name, None) is None:
                return
            if not objects:
                del by_ns[ns]
        elif event_type in {"ADDED", "MODIFIED"}:
            by_ns.setdefault(ns, {})[name] = _trimmed(obj)
            if plural == EVENT.plural:
                self._bound_events(ns)
        else:
            return
        self._touch(ns)

    def _touch(self, namespace: str) -> None:
        self._changes += 1
        self._revision[namespace] = self._changes

    def _bound_events(self, namespace: str) -> None:
        events = self._objects[EVENT.plural].get(namespace) or {}
        if len(events) > self._max_events:
            # Drop a tenth at once, so that a busy namespace does not sort on every new Event.
            keep = sorted(events.values(), key=event_time)[len(events) - self._max_events * 9 // 10 :]
            self._objects[EVENT.plural][namespace] = {o["metadata"]["name"]: o for o in keep}

    # --- read by the pages ---------------------------------------------------------------------------
    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return (self._objects[kind.plural].get(namespace) or {}).get(name)

    def objects(self, kind: Kind, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects of `kind`, by name."""
        objects = self._objects[kind.plural].get(namespace) or {}
        return [objects[name] for name in sorted(objects)]

    def count(self, kind: Kind, namespace: str) -> int:
        return len(self._objects[kind.plural].get(namespace) or {})

    def namespaces(self) -> list[str]:
        """Namespaces holding any kstudio object."""
        found: set[str] = set()
        for kind in (EXPERIMENT, TRAINED_MODEL, WEB_SERVICE, ENDPOINT):
            found |= {ns for ns, objects in self._objects[kind.plural].items() if objects}
        return sorted(found)

    def revision(self, namespace: str) -> int:
        return self._revision.get(namespace, 0)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
