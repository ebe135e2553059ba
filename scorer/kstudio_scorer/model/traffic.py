"""An endpoint's traffic split inside one scorer process: every model it serves and which one answers.

Every pod of an endpoint loads all of its models (each verified by its sha256 before anything in it is
read, all of them within the pod's one model-size limit) and sends each request to one of them by weight
(the weights sum to 100). A request carrying the header `x-kstudio-session` goes to the same model for as
long as the split stays the same, in every pod: the session is hashed (blake2b: the same in every process,
unlike Python's `hash`) onto 0..99, and the weights cut that range in the split's order, so a change of
weights moves only the sessions of the part of the range that changed hands.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kstudio_scorer.model.microbatch import MicroBatcher
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ScoringModel

BUCKETS = 100


def session_bucket(session: bytes) -> int:
    """Where a session falls on 0..BUCKETS-1: the same in every pod and every process."""
    return int.from_bytes(hashlib.blake2b(session, digest_size=8).digest(), "big") % BUCKETS


@dataclass
class Served:
    """One model of the split; once it is loaded, its micro-batcher and output projection."""

    model: ScoringModel
    batcher: MicroBatcher | None = None
    projection: OutputProjection | None = None

    @property
    def ready(self) -> bool:
        return self.model.ready and self.batcher is not None


class Split:
    """The models of one scorer, in the order of the endpoint's traffic list."""

    def __init__(self, served: Sequence[Served], rng: random.Random | None = None) -> None:
        if not served:
            raise ValueError("a split needs at least one model")
        self.served = tuple(served)
        self._random = rng or random.Random()  # spreading load, not a secret
        # bucket -> model: the weights cut 0..99 in the split's order.
        self._by_bucket: list[Served] = []
        for s in self.served:
            self._by_bucket += [s] * s.model.weight
        if len(self._by_bucket) != BUCKETS:
            total = sum(s.model.weight for s in self.served)
            raise ValueError(f"the weights of a split sum to {BUCKETS}, these to {total}")
        # The model answering most requests (the first of the heaviest): what batch jobs, the OpenAPI
        # document and the model metadata describe.
        self.primary = max(self.served, key=lambda s: s.model.weight)

    def __iter__(self) -> Iterator[Served]:
        return iter(self.served)

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.served)

    def pick(self, session: bytes | None) -> Served:
        """The model that answers a request: by its session when it has one, else at random by weight."""
        bucket = session_bucket(session) if session else self._random.randrange(BUCKETS)
        return self._by_bucket[bucket]

    def named(self, name: str) -> Served | None:
        """The model of this TrainedModel name, or None."""
        return next((s for s in self.served if s.model.name == name), None)

    def version(self, sha256: str) -> Served | None:
        """The model of this sha256 (OIP V2's model version), or None."""
        return next((s for s in self.served if s.model.digest == sha256), None)
