"""Deletion in the reconciles (finalizer.py): what a reconcile does first by the object's finalizers and
deletion, the patch that adds or removes ours without losing anyone else's, kopf's retry semantics of a
failing cleanup, and that kopf is left with no handler that would make it write (a hot standby runs it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from kstudio_operator import constants as c
from kstudio_operator import main
from kstudio_operator.finalizer import finalizer_step, finalizers_patch, finalizing, while_alive
from kstudio_operator.runtime import Body, Key, Runtime
from kstudio_operator.settings import OperatorConfig

KEY: Key = ("Experiment", "ns", "e")
OTHER = "example.com/keep-me"


def meta(*finalizers: str, deleting: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"name": "e", "namespace": "ns"}
    if finalizers:
        found["finalizers"] = list(finalizers)
    if deleting:
        found["deletionTimestamp"] = "2026-12-04T20:00:00Z"
    return found


def test_the_finalizer_is_added_first_then_the_object_is_reconciled_and_finalized_when_deleted() -> None:
    assert finalizer_step(meta()) == "add"
    assert finalizer_step(meta(OTHER)) == "add"
    assert finalizer_step(meta(c.FINALIZER, OTHER)) == "reconcile"
    assert finalizer_step(meta(OTHER, c.FINALIZER, deleting=True)) == "finalize"
    # Being deleted without our finalizer (released already, or made when no operator ran): nothing to do.
    assert finalizer_step(meta(OTHER, deleting=True)) == "released"
    assert finalizer_step(meta(deleting=True)) == "released"


def test_the_finalizer_patch_only_applies_to_the_finalizers_the_cache_saw() -> None:
    assert finalizers_patch(meta(), add=True) == [
        {"op": "test", "path": "/metadata/finalizers", "value": None},  # none yet
        {"op": "add", "path": "/metadata/finalizers", "value": [c.FINALIZER]},
    ]
    assert finalizers_patch(meta(OTHER), add=True) == [
        {"op": "test", "path": "/metadata/finalizers", "value": [OTHER]},
        {"op": "add", "path": "/metadata/finalizers", "value": [OTHER, c.FINALIZER]},
    ]
    assert finalizers_patch(meta(OTHER, c.FINALIZER), add=False) == [
        {"op": "test", "path": "/metadata/finalizers", "value": [OTHER, c.FINALIZER]},
        {"op": "add", "path": "/metadata/finalizers", "value": [OTHER]},
    ]
    assert finalizers_patch(meta(c.FINALIZER), add=False)[-1]["value"] == []


def _runtime(body: Body) -> Runtime:
    """No client: a reconcile that reached the API server would raise 'not logged in'."""
    rt = Runtime(config=OperatorConfig.from_env({}), store=None)
    rt.objects[KEY] = body
    return rt


async def _never(rt: Runtime, key: Key, body: Body) -> float | None:
    raise AssertionError("a deleted object is not reconciled")


def test_a_cleanup_that_raises_is_retried_by_kopfs_rules_and_given_up_at_its_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """retries=3, backoff=5: a TemporaryError waits its own delay, another exception 5 s; the third
    failure in a row gives up and goes on to remove the finalizer (here: reaching for the API server)."""
    body: Body = {"kind": "Experiment", "metadata": meta(c.FINALIZER, deleting=True)}
    rt = _runtime(body)
    failures = iter([kopf.TemporaryError("not yet", delay=30), RuntimeError("boom"), RuntimeError("again")])

    async def cleanup(rt: Runtime, key: Key, body: Body) -> float | None:
        raise next(failures)

    reconcile = finalizing(_never, cleanup, retries=3, backoff=5)
    caplog.set_level(logging.INFO, logger="kstudio_operator.finalizer")
    delays = []
    for _ in range(2):
        with pytest.raises(kopf.TemporaryError) as raised:
            asyncio.run(reconcile(rt, KEY, body))
        delays.append(raised.value.delay)
    assert delays == [30, 5]
    with pytest.raises(kopf.TemporaryError, match="not logged in"):  # the release's patch
        asyncio.run(reconcile(rt, KEY, body))
    assert "cleanup failed 3 times, the last: again; releasing it" in caplog.text


def test_without_retries_a_failing_cleanup_is_retried_forever_and_one_not_done_says_when_to_look_again() -> (
    None
):
    body: Body = {"kind": "TrainedModel", "metadata": meta(c.FINALIZER, deleting=True)}
    rt = _runtime(body)
    outcomes: list[Any] = [RuntimeError("storage down")] * 50 + [5.0]

    async def cleanup(rt: Runtime, key: Key, body: Body) -> float | None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return float(outcome)

    reconcile = finalizing(_never, cleanup, retries=None, backoff=5)
    for _ in range(50):
        with pytest.raises(kopf.TemporaryError):
            asyncio.run(reconcile(rt, KEY, body))
    assert asyncio.run(reconcile(rt, KEY, body)) == 5.0  # in use: blocked, look again in 5 s


def test_objects_being_deleted_without_our_finalizer_are_left_to_the_api_server() -> None:
    deleting: Body = {"kind": "WebService", "metadata": meta(deleting=True)}
    rt = _runtime(deleting)
    assert asyncio.run(while_alive(_never)(rt, KEY, deleting)) is None
    assert asyncio.run(finalizing(_never, _never, retries=None, backoff=5)(rt, KEY, deleting)) is None


def test_kopf_is_given_no_handler_that_would_make_it_write() -> None:
    """Only event and index handlers: for those kopf adds no finalizer and stores no progress or
    diff-base (main.py); and the finalizer kopf would remove is not ours."""
    registry = kopf.get_default_registry()
    assert main.RECONCILERS  # the registrations are imported
    assert not registry._changing.get_all_handlers()  # on.create/update/delete/resume/field
    assert not registry._spawning.get_all_handlers()  # daemons, timers
    assert registry._watching.get_all_handlers() and registry._indexing.get_all_handlers()
    assert main.KOPF_FINALIZER != c.FINALIZER


def test_a_standby_starts_its_workers_when_it_leads_with_every_cached_object_queued_once() -> None:
    """A hot standby (cli.run_elected) keeps its cache and queues but no worker; leading starts them and
    queues every cached object once, next to those its events queued already."""
    from kstudio_operator import metrics
    from kstudio_operator.runtime import stop_workers

    async def scenario() -> tuple[list[str], list[Key], set[str]]:
        rt = Runtime(config=OperatorConfig.from_env({}), store=None)
        keys: list[Key] = [("Experiment", "ns", "e"), ("Endpoint", "ns", "ep"), ("TrainedModel", "ns", "m")]
        for key in keys:
            rt.objects[key] = {"metadata": {"namespace": key[1], "name": key[2]}}
        rt.wake(keys[1])  # its watch event came while standing by
        leading = asyncio.Event()
        metrics.LEADER.set(0)
        rt.workers.append(asyncio.create_task(main._stand_by(leading, rt), name="standing by"))
        await asyncio.sleep(0.01)
        standing_by = sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())
        leading.set()
        await asyncio.sleep(0)  # _stand_by starts the workers; none has taken a key yet
        queued = sorted(k for q in rt.queues.values() for k in q.queued())
        await asyncio.sleep(0)  # the standby's trimmer ends
        names = {
            t.get_name().rsplit(" ", 1)[0] for t in asyncio.all_tasks() if t is not asyncio.current_task()
        }
        await stop_workers(rt)
        return standing_by, queued, names

    standing_by, queued, names = asyncio.run(scenario())
    assert standing_by == ["standby heap trimmer", "standing by"]  # no worker
    assert [name for _, _, name in queued] == ["ep", "e", "m"]  # each once, by kind
    assert names == {f"reconcile {kind}" for kind in main.RECONCILERS} | {"heap"}  # "heap trimmer"
    assert metrics.LEADER._value.get() == 1
