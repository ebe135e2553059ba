"""The reconcile core: one retry policy (Backoff) for a reconcile that raised and for a handler that found
a retryable condition; a worker queues the next reconcile at the delay asked for, else at the resync."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from kstudio_operator.runtime import Backoff, Body, Key, Runtime, reconcile_once, trim_after_bursts, work
from kstudio_operator.settings import OperatorConfig

KEY: Key = ("TrainedModel", "ns", "m")


def test_backoff_doubles_from_its_base_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(base=2.0, cap=30.0)
    assert [backoff.failed() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.succeeded()
    assert backoff.failed() == 2.0
    assert Backoff(base=5.0).failed() == 5.0


def test_backoff_stays_at_its_cap_however_long_the_failures_last() -> None:
    """2.0 * 2**1024 overflows a float: the old policy raised OverflowError at the 1025th failure in a row
    (about 85 hours of an unreachable store at the 300 s cap), and the loop's except-branch with it."""
    backoff = Backoff()
    delays = [backoff.failed() for _ in range(5000)]
    assert delays[:3] == [2.0, 4.0, 8.0] and set(delays[8:]) == {300.0}


def test_each_object_backs_off_by_itself_until_it_succeeds() -> None:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    other: Key = ("Experiment", "ns", "e")
    assert [rt.backoff(KEY) for _ in range(3)] == [2.0, 4.0, 8.0]
    assert [rt.backoff(other, base=5.0) for _ in range(2)] == [5.0, 10.0]
    rt.succeeded(KEY)
    assert rt.backoff(KEY) == 2.0 and rt.backoff(other, base=5.0) == 20.0


def test_a_reconcile_that_raises_is_retried_by_the_same_policy(caplog: pytest.LogCaptureFixture) -> None:
    """Raise, raise, raise, succeed, raise: waits of 2, 4, 8 s, then 2 s again."""
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    outcomes = iter([RuntimeError, RuntimeError, RuntimeError, None, RuntimeError])

    async def once() -> float | None:
        failure = next(outcomes)
        if failure is not None:
            raise failure("boom")
        return None

    async def five() -> list[float | None]:
        return [await reconcile_once(rt, KEY, once) for _ in range(5)]

    caplog.set_level(logging.ERROR, logger="kstudio_operator.runtime")
    assert asyncio.run(five()) == [2.0, 4.0, 8.0, None, 2.0]
    waits: list[Any] = [record.args[-1] for record in caplog.records if isinstance(record.args, tuple)]
    assert waits == [2.0, 4.0, 8.0, 2.0]


def test_a_worker_queues_the_next_reconcile_at_the_delay_asked_for_and_the_resync_otherwise() -> None:
    rt = Runtime(config=OperatorConfig.from_env({"KSTUDIO_RESYNC_SECONDS": "0.2"}), store=None)
    other: Key = ("TrainedModel", "ns", "other")
    runs: list[tuple[Key, float]] = []
    delays = {KEY: 0.05, other: None}

    async def reconcile(rt: Runtime, key: Key, body: Body) -> float | None:
        runs.append((key, asyncio.get_running_loop().time()))
        return delays[key]

    async def main() -> None:
        for key in (KEY, other):
            rt.object_changed(key, kopf.Body({"metadata": {"resourceVersion": "1"}}), None)
        worker = asyncio.create_task(work(rt, "TrainedModel", reconcile))
        await asyncio.sleep(0.33)
        worker.cancel()

    asyncio.run(main())
    mine = [t for key, t in runs if key == KEY]
    theirs = [t for key, t in runs if key == other]
    assert len(mine) >= 5  # every 0.05 s
    assert len(theirs) == 2  # now and at the 0.2 s resync


def test_the_heap_is_trimmed_once_after_a_burst_and_never_while_idle() -> None:
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    trims: list[int] = []

    async def main() -> None:
        trimmer = asyncio.create_task(
            trim_after_bursts(rt, every=0.05, trim=lambda pad: trims.append(pad) or 1)
        )
        await asyncio.sleep(0.2)  # idle
        assert trims == []
        rt.object_changed(KEY, kopf.Body({"metadata": {"resourceVersion": "1"}}), None)  # queued
        await asyncio.sleep(0.2)
        assert trims == []  # not while work is queued
        rt.queues.clear()  # done
        await asyncio.sleep(0.2)
        trimmer.cancel()

    asyncio.run(main())
    assert trims == [0]
