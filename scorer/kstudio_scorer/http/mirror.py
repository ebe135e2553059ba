"""Shadow scoring: a mirror model scores copies of answered requests, off the request path.

After a scoring endpoint has its answer, `Mirror.offer` draws whether this request is copied (`percent`)
and, if so, puts the validated columns and the answer on a bounded queue without waiting: when the queue is
full the copy is dropped and counted. The mirror model lives in a process of its own at the lowest
scheduling priority (model/shadow.py), so it shares no GIL with the answers and gets only the CPU they
leave free; its findings come back on a second queue, and a thread here turns them into Prometheus metrics
by mirror and answering model (classification: the share of equal labels; regression: the mean absolute
difference) and, with logging on, writes every copy that disagrees to object storage (the rows that
differ, both answers, the request) like the request samples. Its answers are never returned; a mirror
that fails on a copy only counts. The pod is ready only once the mirror is loaded too.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import random
import threading
from typing import Any

from kstudio_core.environment import MirrorModel
from kstudio_scorer.http.metrics import ScorerMetrics
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.model.columns import Columns
from kstudio_scorer.model.inflation import ModelSizeLimit
from kstudio_scorer.model.served_model import ModelLoadError, Prediction
from kstudio_scorer.model.shadow import Agreement, Copy, run_mirror
from kstudio_scorer.settings import ScorerSettings

log = logging.getLogger(__name__)

# How long the mirror's process may take to load its model (download, digest, load, warm-up).
LOAD_SECONDS = 600.0


class Mirror:
    """The mirror of a scorer: its process, the queues to and from it, and the metrics it feeds."""

    def __init__(
        self,
        source: MirrorModel,
        settings: ScorerSettings,
        metrics: ScorerMetrics,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.name = source.name
        self.digest = source.sha256
        self.percent = source.percent
        self.source = source
        self.settings = settings
        self.metrics = metrics
        self.samples: SampleLogger | None = None
        self.state = "loading"
        self.error: str | None = None
        self.task = ""
        self.inflated_bytes = 0
        self._random = rng or random.Random()  # which requests are copied: not a secret
        context = multiprocessing.get_context("spawn")  # a clean process: no lock or thread of ours in it
        self._copies: Any = context.Queue(maxsize=settings.mirror_queue_size)
        self._results: Any = context.Queue()
        self._process: Any = None
        self._context = context
        self._reader: threading.Thread | None = None
        # Running totals per answering model, for the gauges (the counters carry the same for PromQL).
        self._totals: dict[str, list[float]] = {}

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def load(self, limit: ModelSizeLimit) -> None:
        """Start the mirror's process and wait until it has loaded its model within `limit` (blocking).
        ModelLoadError when it cannot."""
        settings_doc = self.settings.model_dump(mode="json", exclude={"traffic", "mirror"})
        self._process = self._context.Process(
            target=run_mirror,
            args=(settings_doc, self.source, limit, self._copies, self._results),
            name=f"kstudio-mirror-{self.name}",
            daemon=True,
        )
        self._process.start()
        try:
            first = self._results.get(timeout=LOAD_SECONDS)
        except queue.Empty:
            first = ("failed", f"the mirror did not load within {LOAD_SECONDS:.0f} s", 75)
        if first[0] != "ready":
            _, message, exit_code = first
            self.state, self.error = "failed", message
            raise ModelLoadError(message, exit_code, self.name)
        _, self.task, self.inflated_bytes = first
        self.state = "ready"
        self._reader = threading.Thread(target=self._read, name="kstudio-mirror-results", daemon=True)
        self._reader.start()

    def offer(
        self, answered_by: str, route: str, columns: Columns, given: Prediction, request: bytes
    ) -> None:
        """Copy this answered request to the mirror (percent % of the time). Never blocks, never raises."""
        if not self.ready or self._random.random() * 100 >= self.percent:
            return
        copy = Copy(answered_by, route, columns, given, request if self.samples is not None else None)
        try:
            self._copies.put_nowait(copy)
        except queue.Full:
            self.metrics.mirror_requests.labels(self.name, "dropped").inc()

    def close(self, timeout: float = 10.0) -> None:
        if self._process is None:
            return
        with contextlib.suppress(queue.Full, ValueError, OSError):
            self._copies.put(None, timeout=timeout)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
        self._results.put(None)  # ends the reader
        if self._reader is not None:
            self._reader.join(timeout)

    def _read(self) -> None:
        while (message := self._results.get()) is not None:
            if message[0] == "error":
                self.metrics.mirror_requests.labels(self.name, "error").inc()
                log.debug("mirror %s could not score a copy: %s", self.name, message[1])
                continue
            _, answered_by, route, seconds, agreement, sample = message
            self.metrics.mirror_latency.labels(self.name).observe(seconds)
            self.metrics.mirror_requests.labels(self.name, "ok").inc()
            self._count(answered_by, agreement)
            if sample is not None and self.samples is not None:
                request = sample.pop("request")
                self.samples.record_disagreement(
                    route=route,
                    model=answered_by,
                    mirror=self.name,
                    rows=agreement.rows,
                    differing=len(agreement.differing),
                    sample=sample,
                    request=request,
                )

    def _count(self, answered_by: str, agreement: Agreement) -> None:
        m, mirror = self.metrics, self.name
        m.mirror_rows.labels(mirror, answered_by).inc(agreement.rows)
        totals = self._totals.setdefault(answered_by, [0.0, 0.0, 0.0])  # rows, equal labels, |difference|
        totals[0] += agreement.rows
        if self.task == "classification":
            m.mirror_labels_agreed.labels(mirror, answered_by).inc(agreement.equal_labels)
            totals[1] += agreement.equal_labels
            m.mirror_label_agreement.labels(mirror, answered_by).set(totals[1] / max(totals[0], 1))
        else:
            m.mirror_absolute_difference.labels(mirror, answered_by).inc(agreement.absolute_difference)
            totals[2] += agreement.absolute_difference
            m.mirror_mean_absolute_difference.labels(mirror, answered_by).set(totals[2] / max(totals[0], 1))
