"""The scorer's traffic split: which model answers a request, by weight or by session."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kstudio_core.environment import TrafficModel
from kstudio_scorer.model.served_model import ScoringModel
from kstudio_scorer.model.traffic import Served, Split, session_bucket
from kstudio_scorer.settings import ScorerSettings


def split(*weights: int, seed: int = 0) -> Split:
    models = [
        TrafficModel(name=f"m-{i}", uri=f"/models/m-{i}.ilearner", sha256=f"{i:x}" * 64, weight=w)
        for i, w in enumerate(weights, start=1)
    ]
    settings = ScorerSettings(traffic=models, auth_enabled=False, termination_log=None)  # type: ignore[call-arg]
    return Split([Served(ScoringModel(settings, source=m)) for m in models], rng=random.Random(seed))


def test_requests_without_a_session_go_to_each_model_by_weight() -> None:
    s = split(90, 10)
    counts = Counter(s.pick(None).model.name for _ in range(20_000))
    assert abs(counts["m-1"] / 20_000 - 0.90) < 0.01 and abs(counts["m-2"] / 20_000 - 0.10) < 0.01


def test_a_session_gets_the_same_model_every_time_and_sessions_spread_by_weight() -> None:
    s = split(70, 30)
    for session in (b"alice", b"bob", b"carol"):
        assert len({s.pick(session).model.name for _ in range(50)}) == 1
    counts = Counter(s.pick(f"user-{i}".encode()).model.name for i in range(5_000))
    assert abs(counts["m-1"] / 5_000 - 0.70) < 0.03


def test_a_sessions_bucket_is_the_same_in_every_process() -> None:
    # blake2b, not Python's salted hash(): another pod, another run, the same bucket.
    assert session_bucket(b"alice") == 29 and session_bucket(b"") == session_bucket(b"")


def test_a_weight_change_moves_only_the_sessions_of_the_range_that_changed_hands() -> None:
    before, after = split(90, 10), split(80, 20)
    sessions = [f"user-{i}".encode() for i in range(2_000)]
    moved = [x for x in sessions if before.pick(x).model.name != after.pick(x).model.name]
    assert all(before.pick(x).model.name == "m-1" for x in moved)
    assert all(80 <= session_bucket(x) < 90 for x in moved)


def test_the_primary_model_is_the_heaviest_and_a_zero_weight_is_never_picked() -> None:
    s = split(30, 70, 0)
    assert s.primary.model.name == "m-2"
    assert "m-3" not in {s.pick(None).model.name for _ in range(2_000)}
    assert s.named("m-3") is not None and s.version("3" * 64) is s.named("m-3")


def test_weights_that_do_not_sum_to_100_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to 60, not 100"):
        ScorerSettings(  # type: ignore[call-arg]
            traffic=[TrafficModel(name="a", uri="/a", sha256="a" * 64, weight=60)],
            auth_enabled=False,
        )
    with pytest.raises(ValueError, match="listed twice: a"):
        ScorerSettings(  # type: ignore[call-arg]
            traffic=[TrafficModel(name="a", uri="/a", sha256="a" * 64, weight=50)] * 2,
            auth_enabled=False,
        )


def test_a_mirrors_answer_is_compared_row_by_row() -> None:
    import numpy as np

    from kstudio_scorer.model.served_model import Prediction
    from kstudio_scorer.model.shadow import compare

    labels = compare(
        Prediction(labels=np.array(["a", "b", "c"])), Prediction(labels=np.array(["a", "x", "c"]))
    )
    assert (labels.rows, labels.equal_labels, labels.differing) == (3, 2, (1,))
    values = compare(Prediction(values=np.array([1.0, 2.0])), Prediction(values=np.array([1.5, 2.0])))
    assert (values.rows, values.absolute_difference, values.differing) == (2, 0.5, (0,))
    with pytest.raises(ValueError, match="another kind"):
        compare(Prediction(labels=np.array([1])), Prediction(values=np.array([1.0])))
