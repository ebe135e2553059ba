"""The reconcile core's retry policy: one Backoff, used by a reconcile that raised and by a handler that
found a retryable condition."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import pytest

from kstudio_operator.runtime import Backoff, Key, Runtime, reconcile_loop
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


class _StopAfter:
    """A daemon's `stopped` flag that turns true after `n` reconciles."""

    def __init__(self, n: int) -> None:
        self.left = n

    def __bool__(self) -> bool:
        return self.left <= 0


def test_a_reconcile_that_raises_is_retried_by_the_same_policy(caplog: pytest.LogCaptureFixture) -> None:
    """Raise, raise, raise, succeed, raise: waits of 2, 4, 8 s, then 2 s again (the loop is woken at once
    here so that the test does not wait them)."""
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    outcomes = iter([RuntimeError, RuntimeError, RuntimeError, None, RuntimeError])
    stopped = _StopAfter(5)

    async def once() -> float | None:
        stopped.left -= 1
        rt.wake(KEY)
        failure = next(outcomes)
        if failure is not None:
            raise failure("boom")
        return None

    caplog.set_level(logging.ERROR, logger="kstudio_operator.runtime")
    asyncio.run(reconcile_loop(rt, KEY, cast(kopf.DaemonStopped, stopped), once))
    waits: list[Any] = [record.args[-1] for record in caplog.records if isinstance(record.args, tuple)]
    assert waits == [2.0, 4.0, 8.0, 2.0]
