"""What the endpoints and the ASGI layers share, hung on app.state.kstudio (no module globals).

`ScorerState` holds the served models (their traffic split: model/traffic.py) and, once they are ready,
their micro-batchers and output projections; the mirror (mirror.py), the batch jobs, the sample logger,
the key ring, the metrics and the drain. app.py builds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from kstudio_core.exitcodes import EXIT_INPUT_ERROR
from kstudio_core.storage import ObjectStore
from kstudio_scorer.bes.jobs import JobManager
from kstudio_scorer.errors import ModelNotFoundError, ModelNotReadyError
from kstudio_scorer.http.drain import Drain
from kstudio_scorer.http.keys import KeyRing
from kstudio_scorer.http.metrics import ScorerMetrics
from kstudio_scorer.http.mirror import Mirror
from kstudio_scorer.http.samples import SampleLogger
from kstudio_scorer.model.columns import Columns
from kstudio_scorer.model.inflation import model_size_limit
from kstudio_scorer.model.microbatch import MicroBatcher
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ModelLoadError, Prediction, ScoringModel
from kstudio_scorer.model.traffic import Served, Split
from kstudio_scorer.settings import ScorerSettings


@dataclass
class ScorerState:
    """Everything the routes need."""

    settings: ScorerSettings
    split: Split
    metrics: ScorerMetrics
    store_factory: Callable[[], ObjectStore]
    drain: Drain
    keys: KeyRing | None = None
    mirror: Mirror | None = None
    jobs: JobManager | None = None
    samples: SampleLogger | None = None
    on_load_failure: Callable[[ModelLoadError], None] | None = None
    on_ready: Callable[[], None] | None = None
    load_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def model(self) -> ScoringModel:
        """The model answering most requests: what batch jobs, OpenAPI and the V2 metadata describe."""
        return self.split.primary.model

    @property
    def projection(self) -> OutputProjection | None:
        return self.split.primary.projection

    @property
    def ready(self) -> bool:
        """Every model (the mirror too) loaded, warmed up, and wired to its batcher: only then do scoring
        routes accept calls."""
        return self.split.ready and (self.mirror is None or self.mirror.ready)

    @property
    def reports_ready(self) -> bool:
        """What the readiness routes say: ready, and not draining (a draining pod still scores)."""
        return self.ready and not self.drain.active

    def not_ready_reason(self) -> str:
        waiting = next((m for m in self.models() if not m.ready), self.model)
        return f"model {waiting.name} is not ready: {waiting.error or 'the model is still loading'}"

    def ready_model(self) -> ScoringModel:
        if not self.ready:
            raise ModelNotReadyError(self.not_ready_reason())
        return self.model

    def choose(self, session: bytes | None) -> Served:
        """The model that answers a request (by its session header, or by weight)."""
        if not self.ready:
            raise ModelNotReadyError(self.not_ready_reason())
        return self.split.pick(session)

    def addressed(self, name: str, version: str | None, session: bytes | None) -> Served:
        """The model an OIP V2 path names: the endpoint's name is its split (a version picks one model of
        it by sha256); the name of a model of the split is that model."""
        endpoint = self.settings.model_name
        served = self.split.named(name) if name != endpoint else None
        if served is None and name != endpoint:
            raise ModelNotFoundError(f"no model named {name!r}; this endpoint serves {endpoint!r}")
        if version is not None:
            found = self.split.version(version)
            if found is None or (served is not None and found is not served):
                digests = ", ".join(s.model.digest for s in self.split.served)
                raise ModelNotFoundError(f"model {name!r} has no version {version!r}; it serves {digests}")
            served = found
        if not self.ready:
            raise ModelNotReadyError(self.not_ready_reason())
        return served if served is not None else self.split.pick(session)

    def models(self) -> list[ScoringModel | Mirror]:
        """Every model this process loads: its split, then its mirror."""
        return [*(s.model for s in self.split.served), *([self.mirror] if self.mirror else [])]

    def load_models(self) -> None:
        """Fetch, verify and load every model, one after the other, within one size limit (blocking).
        Raises the first ModelLoadError: a pod serves all of its split (and mirror) or nothing."""
        limit = model_size_limit(self.settings.max_model_bytes)
        for served in self.split.served:
            model = served.model
            if not model.ready:
                model.size_limit = limit
                try:
                    model.load()
                except ModelLoadError as exc:
                    exc.model = model.name
                    raise
            limit = limit.less(model.inflated_bytes, model.name)
        if self.mirror is None:
            return
        mirror = self.mirror
        mirror.load(limit)
        if mirror.task != self.model.task:
            raise ModelLoadError(
                f"the mirror {mirror.name} is a {mirror.task} model, the split's are {self.model.task}: "
                "a mirror's answers are compared with theirs",
                EXIT_INPUT_ERROR,
                mirror.name,
            )

    def models_became_ready(self) -> None:
        for served in self.split.served:
            m = served.model
            assert m.manifest is not None
            served.projection = OutputProjection.for_task(
                m.task, self.settings.output_columns, self.settings.output_include_inputs, m.output_columns
            )
            self.metrics.model_info.labels(m.name, m.digest, m.task).set(1)
            served.batcher = MicroBatcher(
                m.predict,
                self.settings.batch_max_rows,
                self.settings.batch_max_wait_ms / 1000.0,
                on_predict=self.metrics.predict_batch_rows.observe,
            )
        if (mirror := self.mirror) is not None:
            self.metrics.model_info.labels(mirror.name, mirror.digest, mirror.task).set(1)
        self.metrics.ready.set(1)
        if self.on_ready is not None:
            self.on_ready()

    def close(self) -> None:
        for served in self.split.served:
            if served.batcher is not None:
                served.batcher.close()
        if self.mirror is not None:
            self.mirror.close()

    def shadow(self, served: Served, route: str, columns: Columns, given: Prediction, request: bytes) -> None:
        """Hand a copy of an answered request to the mirror, if there is one (never waits)."""
        if self.mirror is not None:
            self.mirror.offer(served.model.name, route, columns, given, request)

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
