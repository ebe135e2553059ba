"""What the endpoints and the ASGI layers share, hung on app.state.kstudio (no module globals).

`ScorerState` holds the served model and, once it is ready, the micro-batcher and the output projection;
the batch jobs, the sample logger, the key ring, the metrics and the drain. app.py builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from kstudio_core.storage import ObjectStore
from kstudio_scorer.bes.jobs import JobManager
from kstudio_scorer.errors import ModelNotFoundError, ModelNotReadyError
from kstudio_scorer.http.drain import Drain
from kstudio_scorer.http.keys import KeyRing
from kstudio_scorer.http.metrics import ScorerMetrics
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.model.microbatch import MicroBatcher
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
from kstudio_scorer.settings import ScorerSettings


@dataclass
class ScorerState:
    """Everything the routes need."""

    settings: ScorerSettings
    model: ScoringModel
    metrics: ScorerMetrics
    store_factory: Callable[[], ObjectStore]
    drain: Drain
    keys: KeyRing | None = None
    batcher: MicroBatcher | None = None
    jobs: JobManager | None = None
    samples: SampleLogger | None = None
    projection: OutputProjection | None = None
    on_load_failure: Callable[[ModelLoadError], None] | None = None
    on_ready: Callable[[], None] | None = None
    load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, and wired to the batcher: only then do scoring routes accept calls."""
        return self.model.ready and self.batcher is not None

    @property
    def reports_ready(self) -> bool:
        """What the readiness routes say: ready, and not draining (a draining pod still scores)."""
        return self.ready and not self.drain.active

    def ready_model(self) -> ScoringModel:
        if not self.ready:
            reason = self.model.error or "the model is still loading"
            raise ModelNotReadyError(f"model {self.model.name} is not ready: {reason}")
        return self.model

    def named_model(self, name: str) -> ScoringModel:
        if name != self.model.name:
            raise ModelNotFoundError(f"no model named {name!r}; this endpoint serves {self.model.name!r}")
        return self.ready_model()

    def model_became_ready(self) -> None:
        m = self.model
        assert m.manifest is not None
        self.projection = OutputProjection.for_task(
            m.task, self.settings.output_columns, self.settings.output_include_inputs
        )
        self.metrics.model_info.labels(m.name, m.digest, m.task).set(1)
        self.metrics.ready.set(1)
        self.batcher = MicroBatcher(
            m.predict,
            self.settings.batch_max_rows,
            self.settings.batch_max_wait_ms / 1000.0,
            on_predict=self.metrics.predict_batch_rows.observe,
        )
        if self.on_ready is not None:
            self.on_ready()

    def record_error(self, route: str, status: int, request: bytes | None, message: str) -> None:
        """A failed call, for the sample logger (level Error or All)."""
        if self.samples is not None:
            self.samples.record(route=route, status=status, request=request, response=None, error=message)

    def record_success(self, route: str, request: bytes, response: bytes) -> None:
        if self.samples is not None and self.samples.level == "All":
            self.samples.record(route=route, status=200, request=request, response=response)


def state_of(request: Request) -> ScorerState:
    state: ScorerState = request.app.state.kstudio
    return state
