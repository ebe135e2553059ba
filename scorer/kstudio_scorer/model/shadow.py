"""The mirror's own process: load the mirror model, score copies of answered requests, compare.

http/mirror.py starts `run_mirror` in a child process (spawned, so it shares no lock and no GIL with the
process that answers) and lowers its scheduling priority to the least there is: on a busy core it runs
only in the time the answers leave free, and an answer that arrives takes the CPU back at once. It loads
the mirror exactly as the answering models are loaded (digest checked before anything is read, within
what is left of the pod's model-size limit), then takes copies from one queue and puts its findings on
another: one message per copy, never its answers to anyone but the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np

from kstudio_core.environment import MirrorModel, TrafficModel
from kstudio_scorer.model.columns import Columns
from kstudio_scorer.model.inflation import ModelSizeLimit
from kstudio_scorer.model.served_model import ModelLoadError, Prediction, ScoringModel
from kstudio_scorer.settings import ScorerSettings

# Rows of a disagreeing copy kept as its sample at most (the rows that differ are all counted).
SAMPLE_ROWS = 100


@dataclass(frozen=True)
class Agreement:
    """How a mirror's answer compares with the one given, over `rows` rows."""

    rows: int
    equal_labels: int = 0  # classification
    absolute_difference: float = 0.0  # regression: the sum over the rows
    differing: tuple[int, ...] = ()  # the rows whose labels or values differ


def compare(given: Prediction, mirrored: Prediction) -> Agreement:
    """The mirror's answer against the given one, row by row. ValueError when they cannot be compared
    (other row counts, or one has labels where the other has values)."""
    if given.labels is not None and mirrored.labels is not None:
        a, b = np.asarray(given.labels), np.asarray(mirrored.labels)
        if a.shape != b.shape:
            raise ValueError(f"{len(b)} mirrored rows for {len(a)} answered")
        equal = a == b
        return Agreement(len(a), int(equal.sum()), differing=tuple(np.flatnonzero(~equal).tolist()))
    if given.values is not None and mirrored.values is not None:
        x = np.asarray(given.values, dtype=np.float64)
        y = np.asarray(mirrored.values, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"{len(y)} mirrored rows for {len(x)} answered")
        diff = np.abs(x - y)
        return Agreement(
            len(x), absolute_difference=float(diff.sum()), differing=tuple(np.flatnonzero(diff > 0).tolist())
        )
    raise ValueError("the mirror's answer is of another kind than the one given")


@dataclass(frozen=True)
class Copy:
    """One answered request, as the parent hands it over."""

    answered_by: str
    route: str
    columns: Columns
    given: Prediction
    request: bytes | None  # only when disagreements are logged


def _values(prediction: Prediction, rows: list[int]) -> list[Any]:
    values = prediction.labels if prediction.labels is not None else prediction.values
    return [] if values is None else np.asarray(values)[rows].tolist()


def lowest_priority() -> None:
    """Linux SCHED_IDLE for this process (nice 19 where that is refused); and die with the parent."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_mirror(
    settings_doc: dict[str, Any], source: MirrorModel, limit: ModelSizeLimit, copies: Any, results: Any
) -> None:
    """The child's entry point: `copies` and `results` are the parent's multiprocessing queues.

    Messages on `results`: ("ready", task, inflated bytes) or ("failed", message, exit code) first, then
    per copy ("scored", answered_by, route, seconds, Agreement, sample or None) or ("error", message)."""
    lowest_priority()
    alone = TrafficModel(name=source.name, uri=source.uri, sha256=source.sha256)
    # Given explicitly, the models win over the pod's environment, which this process inherited.
    settings = ScorerSettings.model_validate(
        {**settings_doc, "model_uri": None, "model_sha256": None, "traffic": [alone], "mirror": None}
    )
    model = ScoringModel(settings, source=alone)
    model.size_limit = limit
    try:
        model.load()
    except ModelLoadError as exc:
        results.put(("failed", str(exc), exc.exit_code))
        return
    results.put(("ready", model.task, model.inflated_bytes))
    import time

    while (copy := copies.get()) is not None:
        started = time.perf_counter()
        try:
            mirrored = model.predict(copy.columns)
            agreement = compare(copy.given, mirrored)
        except Exception as exc:  # the mirror's failure is counted, never anyone else's
            results.put(("error", f"{type(exc).__name__}: {exc}"))
            continue
        sample = None
        if agreement.differing and copy.request is not None:
            rows = list(agreement.differing[:SAMPLE_ROWS])
            sample = {
                "differingRows": rows,
                "answer": _values(copy.given, rows),
                "mirrorAnswer": _values(mirrored, rows),
                "request": copy.request,
            }
        results.put(
            ("scored", copy.answered_by, copy.route, time.perf_counter() - started, agreement, sample)
        )
