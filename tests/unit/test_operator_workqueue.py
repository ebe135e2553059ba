"""The reconcile work queue: one entry per key however many times it is added, never one key in two
workers at once, a key added during its reconcile runs once more, and of two delays the earlier wins."""

from __future__ import annotations

import asyncio

import pytest

from kstudio_operator.workqueue import WorkQueue


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def drain(queue: WorkQueue[str]) -> list[str]:
    """The keys a worker would take now, each marked done at once."""
    taken = []
    while queue.pending():
        key = await queue.get()
        taken.append(key)
        queue.done(key)
    return taken


def test_a_burst_of_adds_for_one_key_is_one_entry_in_the_order_first_added() -> None:
    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a", "c", "b"):
            queue.add(key)
        assert queue.pending() == 3
        assert await drain(queue) == ["a", "b", "c"]

    run(main())


def test_a_key_added_while_a_worker_has_it_waits_and_then_runs_once_more() -> None:
    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")
        queue.add("a")
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        assert not second.done()  # no second worker gets "a" while the first has it
        queue.done(key)
        assert await asyncio.wait_for(second, 1) == "a"
        queue.done("a")
        assert queue.pending() == 0 and queue.active() == 0

    run(main())


def test_of_two_delays_the_earlier_wins_and_forget_drops_it() -> None:
    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 30)
        queue.add_after("a", 0.05)
        queue.add_after("a", 60)  # later than what is pending: no change
        assert queue.delayed() == 1 and queue.pending() == 0
        assert await asyncio.wait_for(queue.get(), 1) == "a"
        queue.done("a")
        queue.add_after("b", 0.05)
        queue.forget("b")
        await asyncio.sleep(0.1)
        assert queue.pending() == 0 and queue.delayed() == 0

    run(main())


@pytest.mark.parametrize("delay", [0, -1])
def test_no_delay_queues_at_once(delay: float) -> None:
    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", delay)
        assert queue.pending() == 1 and queue.delayed() == 0

    run(main())
