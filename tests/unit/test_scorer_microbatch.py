"""Micro-batching merges concurrent requests into one predict call and isolates a bad request (pure)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from kstudio_scorer.model.columns import Columns
from kstudio_scorer.model.microbatch import MicroBatcher
from kstudio_scorer.model.served_model import Prediction


def cols(*values: float) -> Columns:
    return Columns({"x": np.array(values, dtype=np.float64)}, len(values))


def doubling(calls: list[int], gate: threading.Event | None = None) -> object:
    def predict(c: Columns) -> Prediction:
        if gate is not None:
            gate.wait(5)
        calls.append(c.n_rows)
        if np.isnan(c.arrays["x"]).any():
            raise ValueError("nan")
        return Prediction(values=c.arrays["x"] * 2)

    return predict


def test_concurrent_requests_share_one_predict_call() -> None:
    calls: list[int] = []
    gate = threading.Event()

    async def main() -> list[list[float]]:
        batcher = MicroBatcher(doubling(calls, gate), max_rows=100)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.submit(cols(1)))
        await asyncio.sleep(0.05)  # the first call is now running (held by the gate)
        rest = [asyncio.ensure_future(batcher.submit(cols(v, v))) for v in (2, 3, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        batcher.close()
        return [r.values.tolist() for r in results]  # type: ignore[union-attr]

    assert asyncio.run(main()) == [[2], [4, 4], [6, 6], [8, 8]]
    assert calls == [1, 6]


def test_batches_respect_max_rows() -> None:
    calls: list[int] = []
    gate = threading.Event()

    async def main() -> None:
        batcher = MicroBatcher(doubling(calls, gate), max_rows=4)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.submit(cols(0)))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit(cols(1, 1, 1))) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest)
        batcher.close()

    asyncio.run(main())
    assert calls == [1, 3, 3, 3]


def test_a_failing_request_does_not_fail_its_batch_neighbours() -> None:
    calls: list[int] = []
    gate = threading.Event()

    async def main() -> list[object]:
        batcher = MicroBatcher(doubling(calls, gate), max_rows=100)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.submit(cols(1)))
        await asyncio.sleep(0.05)
        good = asyncio.ensure_future(batcher.submit(cols(5)))
        bad = asyncio.ensure_future(batcher.submit(cols(float("nan"))))
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, good, bad, return_exceptions=True)
        batcher.close()
        return out

    first, good, bad = asyncio.run(main())
    assert good.values.tolist() == [10]  # type: ignore[attr-defined]
    assert isinstance(bad, ValueError)
    assert first.values.tolist() == [2]  # type: ignore[attr-defined]


def test_on_predict_is_told_the_rows_of_every_predict_call() -> None:
    calls: list[int] = []
    told: list[int] = []
    gate = threading.Event()

    async def main() -> None:
        predict = doubling(calls, gate)
        batcher = MicroBatcher(predict, max_rows=100, on_predict=told.append)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.submit(cols(1)))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit(cols(v, v))) for v in (2, float("nan"))]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest, return_exceptions=True)
        batcher.close()

    asyncio.run(main())
    # the merged call of 4 rows fails on the NaN and is retried request by request
    assert told == calls == [1, 4, 2, 2]
