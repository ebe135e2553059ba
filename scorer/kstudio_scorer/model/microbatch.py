"""Adaptive micro-batching: concurrent requests share one predict call, run off the event loop.

One worker thread runs predictions. A request that arrives while the worker is idle is scored at once
(no added latency at low load). Requests that arrive while a prediction runs queue up; when the worker
frees, everything queued (up to `max_rows`) is merged into one call, so the batch size adapts to the
load. `max_wait_s` optionally holds a non-full batch a little longer, bounded, to gather more rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kstudio_scorer.model.columns import Columns, concat
from kstudio_scorer.model.served_model import Prediction


@dataclass
class _Pending:
    columns: Columns
    future: asyncio.Future[Prediction]


class MicroBatcher:
    """Merge concurrent `submit()` calls into few `predict_fn` calls on a single worker thread.

    `on_predict(rows)` is told the rows of every predict call (the scorer observes a histogram with it).
    """

    def __init__(
        self,
        predict_fn: Callable[[Columns], Prediction],
        max_rows: int = 256,
        max_wait_s: float = 0.0,
        *,
        on_predict: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict_fn
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kstudio-predict")
        self._on_predict = on_predict or (lambda rows: None)
        self._predicted = False  # max_wait_s holds batches only once a predict has succeeded

    async def submit(self, columns: Columns) -> Prediction:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Prediction] = loop.create_future()
        self._queue.append(_Pending(columns, fut))
        if not self._busy:
            self._busy = True
            self._drainer = loop.create_task(self._drain())
        return await fut

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        rows = batch[0].columns.n_rows
        while self._queue and rows + self._queue[0].columns.n_rows <= self._max_rows:
            item = self._queue.popleft()
            rows += item.columns.n_rows
            batch.append(item)
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self._max_wait_s > 0 and self._predicted and len(self._queue) > 0:
                    deadline = time.monotonic() + self._max_wait_s
                    while sum(p.columns.n_rows for p in self._queue) < self._max_rows:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        await asyncio.sleep(min(left, 0.0005))
                batch = self._take_batch()
                batch = [p for p in batch if not p.future.cancelled()]
                if not batch:
                    continue
                merged = concat([p.columns for p in batch])
                try:
                    result = await self._run_predict(loop, merged)
                except BaseException as exc:
                    if len(batch) == 1:
                        _settle_error(batch[0], exc)
                    else:
                        # one bad request must not fail its neighbours: score them one by one
                        for p in batch:
                            try:
                                single = await self._run_predict(loop, p.columns)
                            except BaseException as single_exc:
                                _settle_error(p, single_exc)
                            else:
                                _settle(p, single)
                    continue
                self._predicted = True
                start = 0
                for p in batch:
                    stop = start + p.columns.n_rows
                    _settle(p, result if len(batch) == 1 else result.slice(start, stop))
                    start = stop
        finally:
            self._busy = False

    async def _run_predict(self, loop: asyncio.AbstractEventLoop, columns: Columns) -> Prediction:
        self._on_predict(columns.n_rows)
        return await loop.run_in_executor(self._executor, self._predict, columns)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _settle(p: _Pending, result: Prediction) -> None:
    if not p.future.done():
        p.future.set_result(result)


def _settle_error(p: _Pending, exc: BaseException) -> None:
    if not p.future.done():
        p.future.set_exception(exc)
