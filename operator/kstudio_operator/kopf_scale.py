"""Two changes to kopf's internals for thousands of objects: its index pre-population barrier without
quadratic wake-ups, and a bound on its own concurrent object patches.

1. On start, kopf holds every listed object until all indexes are filled: each object gets a toggle in one
`ToggleSet`, every object's worker waits on the set's condition, and every toggle added or dropped calls
`notify_all()`, which wakes every waiting worker to re-check a state that did not change. With N objects
that is N² wake-ups: at 1,000 TrainedModels + 1,000 Endpoints, 800,000 wake-ups and 60 s of one core
before the first reconcile (bench/README.md, the cProfile of a cold start); a restart at 1,000 WebServices
(5,000 watched objects) took 90 s.

`install()` makes adding and dropping toggles notify only when the set's state flips (the only change a
waiter of the set can be waiting for; a member toggle's own waiters are woken by `Toggle.turn_to`, which
is unchanged).

2. kopf patched an object itself (its finalizer, its last-handled-configuration annotation) from that
object's own worker while deletion was a kopf `on.delete` handler (now it patches nothing, main.py; the
bound stays for any kopf patch to come), and its HTTP client has no connection limit: a cold start with
1,000 TrainedModels opened 1,000 connections to the API server at once (1,038 file descriptors) and held
300 MB of request buffers (RSS 430 MB, bench/README.md). `install()` lets at most PATCH_SLOTS of those
patches run at once; the others wait their turn (our own client has a pool of 32 connections, kube.py).

kopf's behaviour is otherwise the same. Written for kopf 1.x (`ToggleSet._toggles`, `._condition`;
`kopf._cogs.clients.patching.patch_obj`), checked at install: a kopf that changed them keeps its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import patching

log = logging.getLogger(__name__)
PATCH_SLOTS = 16


async def _make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self: Any, toggle: Any) -> None:
    await _drop_toggles(self, [toggle])


def _bounded(patch_obj: Callable[..., Awaitable[Any]], slots: asyncio.Semaphore) -> Callable[..., Any]:
    async def patch_obj_in_turn(**kwargs: Any) -> Any:
        async with slots:
            return await patch_obj(**kwargs)

    patch_obj_in_turn.bounded = True  # type: ignore[attr-defined]
    return patch_obj_in_turn


def install() -> bool:
    """Both changes; False (and nothing changed) if kopf's internals are not the ones this was written
    for."""
    probe = aiotoggles.ToggleSet(all)
    known = hasattr(probe, "_toggles") and hasattr(probe, "_condition") and hasattr(probe, "drop_toggles")
    if not known or not hasattr(patching, "patch_obj"):
        log.warning("kopf's internals changed: its start-up barrier and patches stay as they are")
        return False
    aiotoggles.ToggleSet.make_toggle = _make_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    if not getattr(patching.patch_obj, "bounded", False):
        patching.patch_obj = _bounded(patching.patch_obj, asyncio.Semaphore(PATCH_SLOTS))
    return True
