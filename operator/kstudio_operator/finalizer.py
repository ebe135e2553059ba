"""Deletion in the reconciles: the operator's finalizer (`kstudio.io/finalizer`) on Experiments and
TrainedModels, added and removed by their own reconciles.

Why not kopf's `on.delete`: kopf writes for such a handler (it adds and removes its finalizer, keeps its
progress in annotations) from every process that runs it, and a hot standby (cli.py) runs kopf's watches
without reconciling: it must write nothing. With only `on.event` and index handlers kopf writes nothing at
all (main.py says how that is checked). The finalizer keeps its name, so objects made by earlier versions
keep working: their finalizer is this one.

What kopf's `on.delete(retries=..., backoff=...)` did, and this keeps:
- an object without the finalizer gets it before anything else is done for it;
- once it is being deleted, its cleanup runs; when it is done, the finalizer is removed (the API server
  then deletes the object). A cleanup that is not done yet (a model still in use) says when to look again;
- a cleanup that raises is retried: after its `kopf.TemporaryError`'s delay, or `backoff` seconds for
  any other exception; with `retries=N` the N-th failure in a row gives up (logged as an error) and the
  finalizer is removed all the same, as kopf did on its HandlerRetriesError; `retries=None` tries forever.
  The failures are counted by this process (kopf counted them in an annotation, which a standby could not
  write): a restart or a failover gives a failing cleanup up to N more tries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import kopf

from kstudio_operator import constants as c
from kstudio_operator.kube import ApiError, object_path
from kstudio_operator.runtime import Body, Key, Reconcile, Runtime

log = logging.getLogger(__name__)
Step = Literal["add", "reconcile", "finalize", "released"]
# One cleanup of an object being deleted: None when done (the finalizer goes), else seconds until the next.
Cleanup = Callable[[Runtime, Key, Body], Awaitable[float | None]]
CONFLICT_DELAY = 1.0  # someone else changed the finalizers since the cache saw them: look again soon


def finalizer_step(meta: Mapping[str, Any], finalizer: str = c.FINALIZER) -> Step:
    """What the reconcile of an object with this metadata does first (pure)."""
    held = finalizer in (meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        return "finalize" if held else "released"
    return "reconcile" if held else "add"


def finalizers_patch(
    meta: Mapping[str, Any], add: bool, finalizer: str = c.FINALIZER
) -> list[dict[str, Any]]:
    """A JSON patch adding or removing `finalizer`, valid only while the object's finalizers are still the
    ones the cache saw (a `test` of the list): the API server refuses it if another writer changed them, so
    nobody else's finalizer is ever lost (pure)."""
    seen = list(meta.get("finalizers") or [])
    wanted = [*seen, finalizer] if add else [f for f in seen if f != finalizer]
    # None: none yet (the API server stores no empty list; its JSON patch's `test` of a missing member
    # against null passes).
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": seen or None},
        {"op": "add", "path": "/metadata/finalizers", "value": wanted},
    ]


async def write_finalizers(rt: Runtime, body: Body, add: bool) -> bool:
    """Add or remove our finalizer; False when the finalizers changed meanwhile (try again later)."""
    patch = finalizers_patch(body["metadata"], add)
    try:
        await rt.kube.request("PATCH", object_path(body), patch, content_type="application/json-patch+json")
    except ApiError as exc:
        if exc.status == 404 and not add:
            return True  # gone already: nothing left to release
        if exc.status in (409, 422):  # the test failed: the cache is behind, its next event is coming
            log.debug("%s/%s: finalizers changed meanwhile: %s", body["kind"], body["metadata"]["name"], exc)
            return False
        raise
    return True


def finalizing(reconcile: Reconcile, cleanup: Cleanup, *, retries: int | None, backoff: float) -> Reconcile:
    """The reconcile of a kind with a finalizer: `reconcile` while the object lives (the finalizer added
    first), `cleanup` once it is being deleted, with kopf's retry semantics (module docstring)."""
    failures: dict[Key, int] = {}  # cleanups that raised, in a row, by object

    async def reconcile_or_finalize(rt: Runtime, key: Key, body: Body) -> float | None:
        for gone in [k for k in failures if k not in rt.objects]:
            del failures[gone]
        step = finalizer_step(body["metadata"])
        if step == "released":  # being deleted, nothing of ours holds it: the API server finishes
            return None
        if step == "add" and not await write_finalizers(rt, body, add=True):
            return CONFLICT_DELAY
        if step != "finalize":
            return await reconcile(rt, key, body)
        try:
            again = await cleanup(rt, key, body)
        except Exception as exc:
            failures[key] = tries = failures.get(key, 0) + 1
            if retries is None or tries < retries:
                if isinstance(exc, kopf.TemporaryError):
                    raise  # reconcile_once retries it after its delay
                log.exception("%s/%s/%s: cleanup failed (try %d), again in %.0fs", *key, tries, backoff)
                raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=backoff) from exc
            log.error("%s/%s/%s: cleanup failed %d times, the last: %s; releasing it", *key, tries, exc)
            again = None
        if again is not None:
            return again
        if not await write_finalizers(rt, body, add=False):
            return CONFLICT_DELAY
        failures.pop(key, None)
        return None

    return reconcile_or_finalize


def while_alive(reconcile: Reconcile) -> Reconcile:
    """The reconcile of a kind without a finalizer: nothing to do once the object is being deleted (its
    children go with it by their owner references)."""

    async def unless_deleting(rt: Runtime, key: Key, body: Body) -> float | None:
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return await reconcile(rt, key, body)

    return unless_deleting
