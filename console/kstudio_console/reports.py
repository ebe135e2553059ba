"""Reports, figures and charts for the pages, computed once and kept: verified reports by (uri, sha256),
which names immutable bytes; comparison figures by the two reports' sha256; run charts by their data.

Called from worker threads (storage reads and matplotlib block), hence the lock around each cache.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kstudio_console import charts
from kstudio_console.evaluations import ModelEvaluation, Renderer, Unreachable, load_evaluation

T = TypeVar("T")


class Lru(Generic[T]):
    """A small thread-safe least-recently-used map; `get_or_make` computes outside the lock."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    svg: bytes


class Reports:
    """The store to read reports from (None when storage is not configured: `store_problem` says why) and
    the injected renderer of comparison figures."""

    def __init__(self, store: Any, render: Renderer | None, store_problem: str = "") -> None:
        self.store = store
        self.render = render
        self.store_problem = store_problem
        self._evaluations: Lru[ModelEvaluation] = Lru(64)
        self._comparisons: Lru[list[Figure]] = Lru(32)
        self._charts: Lru[bytes] = Lru(256)

    def evaluation(self, model: dict[str, Any], *, required: bool = True) -> ModelEvaluation:
        """The model's verified report and figures (NothingToShow / Unreachable as load_evaluation)."""
        named = (model.get("status") or {}).get("evaluation") or {}
        if not named:  # nothing to read: load_evaluation says why without touching storage
            return load_evaluation(model, self.store, required=required)
        if self.store is None:
            raise Unreachable(f"cannot read the evaluation report of {_name(model)}: {self.store_problem}")
        loaded = self._evaluations.get_or_make(
            (named.get("uri"), named.get("sha256")), lambda: load_evaluation(model, self.store)
        )
        # Cached per report; the model around it is the one of this request.
        return dataclasses.replace(loaded, name=_name(model), model=model)

    def comparison(self, a: ModelEvaluation, b: ModelEvaluation) -> list[Figure]:
        """The figures of both reports with their curves overlaid (the one report's when only one has)."""
        named = [(e.name, e.report) for e in (a, b) if e.report is not None and e.ref is not None]
        if not named or self.render is None:
            return []
        key = tuple((e.name, e.ref.sha256) for e in (a, b) if e.ref is not None and e.report is not None)
        render = self.render
        return self._comparisons.get_or_make(
            key, lambda: [Figure(f.name, f.title, f.svg) for f in render(named)]
        )

    def run_chart(self, metric: str, points: list[tuple[int, float | None, str]]) -> bytes:
        return self._charts.get_or_make(
            (metric, tuple(points)), lambda: charts.run_history_svg(metric, points)
        )


def _name(model: dict[str, Any]) -> str:
    return str(model["metadata"]["name"])
