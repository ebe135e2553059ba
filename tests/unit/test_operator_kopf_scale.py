"""kopf at scale (kopf_scale.install): the objects waiting for the index pre-population barrier are
released when the last toggle goes, as before, but woken once instead of at every toggle added or
dropped; kopf's own object patches run at most PATCH_SLOTS at a time."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from kstudio_operator import kopf_scale


async def barrier(objects: int) -> tuple[int, bool]:
    """`objects` workers wait for a ToggleSet(all) holding one toggle per object, as kopf's do; then every
    toggle is dropped. Returns (how often the waiters were woken, whether all of them passed)."""
    indexed = aiotoggles.ToggleSet(all)
    toggles = [await indexed.make_toggle(name=str(i)) for i in range(objects)]
    checks = 0

    def is_on() -> bool:
        nonlocal checks
        checks += 1
        return all(t.is_on() for t in indexed)

    indexed.is_on = is_on  # type: ignore[method-assign]  # count the waiters' re-checks
    waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(objects)]
    await asyncio.sleep(0)
    checks = 0
    for toggle in toggles:
        await indexed.drop_toggle(toggle)
        await asyncio.sleep(0)
    done, _ = await asyncio.wait(waiters, timeout=5)
    return checks, len(done) == objects


def test_the_barrier_releases_every_object_with_linear_not_quadratic_wake_ups() -> None:
    assert kopf_scale.install()
    checks, released = asyncio.run(barrier(300))
    assert released
    # Each drop checks the state before and after (2 x 300) and the waiters re-check once when it flips;
    # kopf's own methods re-check every waiter at every drop (300 x 300 / 2 on average).
    assert checks <= 3 * 300, checks


def test_a_toggle_turned_on_by_itself_still_wakes_its_waiters() -> None:
    async def main() -> bool:
        paused = aiotoggles.ToggleSet(any)
        toggle = await paused.make_toggle(name="conflict")
        waiter = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await toggle.turn_to(True)
        await asyncio.wait_for(waiter, 1)
        return paused.is_on()

    assert kopf_scale.install()
    assert asyncio.run(main())


def test_kopf_patches_objects_at_most_patch_slots_at_a_time() -> None:
    from kopf._cogs.clients import patching

    assert kopf_scale.install()
    assert kopf_scale.install()  # twice: still one bound, not two nested
    running = peak = 0

    async def patch_obj(**_: object) -> tuple[None, None]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return None, None

    bounded = kopf_scale._bounded(patch_obj, asyncio.Semaphore(kopf_scale.PATCH_SLOTS))

    async def main() -> None:
        await asyncio.gather(*(bounded(name=str(i)) for i in range(200)))

    asyncio.run(main())
    assert peak == kopf_scale.PATCH_SLOTS
    assert getattr(patching.patch_obj, "bounded", False)
