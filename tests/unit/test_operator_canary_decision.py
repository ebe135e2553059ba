"""The canary step of a WebService's promotion: the pure decision (decisions/canary.py), and the WebService
decision that starts it, moves its traffic and records every step (decisions/webservice.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kstudio_core.serving import model_request_counts
from kstudio_operator.decisions.canary import (
    CHECK_SECONDS,
    ROLLOUT_SECONDS,
    CanaryReading,
    decide_canary,
    split_of,
)
from kstudio_operator.decisions.webservice import WebServiceObserved, decide_web_service
from kstudio_operator.resources.webservice import Canary

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SPLIT = "m-1:90,m-2:10"
WS_OWNER = {
    "apiVersion": "kstudio.io/v1alpha1",
    "kind": "WebService",
    "metadata": {"name": "svc", "uid": "u"},
}


def canary(**kw: Any) -> Canary:
    base: dict[str, Any] = {
        "model": "m-2",
        "from": "m-1",
        "weight": 10,
        "durationSeconds": 60,
        "maxErrorRate": 0.05,
        "minRequests": 20,
        "startedAt": T0,
    }
    return Canary.model_validate(base | kw)


def serving(**kw: Any) -> Canary:
    return canary(servingSince=T0 + timedelta(seconds=30), **kw)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_clock_starts_only_when_the_ready_pods_serve_the_split() -> None:
    waiting = decide_canary(canary(), "RollingOut", "m-1:100", None, at(10))
    assert waiting.step is None and waiting.verdict is None and waiting.requeue == CHECK_SECONDS
    assert waiting.canary.serving_since is None
    started = decide_canary(canary(), "Ready", SPLIT, None, at(30))
    assert started.step == "CanaryServing" and started.verdict is None
    assert started.canary.serving_since == at(30)
    assert split_of(canary()) == SPLIT


def test_a_healthy_candidate_is_promoted_when_the_duration_has_elapsed() -> None:
    meanwhile = decide_canary(serving(), "Ready", SPLIT, CanaryReading(40, 1), at(60))
    assert meanwhile.verdict is None and meanwhile.canary.requests == 40 and meanwhile.canary.errors == 1
    assert meanwhile.requeue == CHECK_SECONDS
    # Never later than the deadline: the last look is at the end of the duration.
    assert decide_canary(serving(), "Ready", SPLIT, CanaryReading(40, 1), at(88)).requeue == 2
    done = decide_canary(serving(), "Ready", SPLIT, CanaryReading(100, 2), at(90))
    assert done.verdict == "promoted" and done.step == "CanaryPromoted"
    assert done.reason == "error rate 0.0200 (2/100 answers) <= maxErrorRate 0.05 over 60s at 10%"


def test_an_error_rate_over_the_bound_removes_the_candidate_at_once_with_the_reason() -> None:
    failing = decide_canary(serving(), "Ready", SPLIT, CanaryReading(25, 5), at(40))
    assert failing.verdict == "refused" and failing.step == "CanaryRefused"
    assert failing.reason == "error rate 0.2000 (5/25 answers) > maxErrorRate 0.05"
    assert (failing.canary.requests, failing.canary.errors) == (25, 5)


def test_too_few_answers_are_no_verdict_before_the_end_and_a_refusal_at_it() -> None:
    """Rule: the error rate is judged once the candidate gave minRequests answers (a first error out of
    three is no evidence); at the end, fewer than minRequests means the rate is unknown, so no promotion."""
    early = decide_canary(serving(), "Ready", SPLIT, CanaryReading(3, 3), at(40))
    assert early.verdict is None
    late = decide_canary(serving(), "Ready", SPLIT, CanaryReading(3, 0), at(90))
    assert late.verdict == "refused"
    assert late.reason == "it answered 3 request(s) in 60s, fewer than minRequests 20"
    unread = decide_canary(serving(), "Ready", SPLIT, None, at(90))
    assert unread.verdict == "refused" and "could not be read" in unread.reason
    none_needed = decide_canary(serving(minRequests=0), "Ready", SPLIT, CanaryReading(0, 0), at(90))
    assert none_needed.verdict == "promoted"


def test_a_split_whose_pods_do_not_come_up_is_refused() -> None:
    stalled = decide_canary(canary(), "Stalled", "m-1:100", None, at(20))
    assert stalled.verdict == "refused" and "do not come up" in stalled.reason
    slow = decide_canary(canary(), "RollingOut", "m-1:100", None, at(ROLLOUT_SECONDS + 1))
    assert slow.verdict == "refused" and f"not served within {ROLLOUT_SECONDS:.0f}s" in slow.reason


def test_the_per_model_counts_are_read_from_the_scorer_metrics_text() -> None:
    text = (
        "# TYPE kstudio_scorer_model_requests_total counter\n"
        'kstudio_scorer_model_requests_total{model="m-2",outcome="ok"} 7.0\n'
        'kstudio_scorer_model_requests_total{model="m-2",outcome="error"} 3.0\n'
        'kstudio_scorer_model_requests_total{model="m-1",outcome="refused"} 1.0\n'
        'kstudio_scorer_model_requests_created{model="m-2",outcome="ok"} 1.7e9\n'
    )
    assert model_request_counts(text) == {"m-2": {"ok": 7.0, "error": 3.0}, "m-1": {"refused": 1.0}}


# --- the WebService decision around it -----------------------------------------------------------------
SPEC = {
    "modelFrom": {
        "experiment": "exp",
        "promote": {"metric": "accuracy", "canary": {"weight": 10, "durationSeconds": 60}},
    }
}


def model(n: int, accuracy: float) -> dict[str, Any]:
    return {
        "spec": {"artifact": {"uri": f"s3://models/m-{n}.ilearner", "sha256": f"{n:x}" * 64}},
        "status": {"phase": "Ready", "metrics": {"accuracy": accuracy}},
    }


MODELS = {"m-1": model(1, 0.90), "m-2": model(2, 0.95)}


def observed(split: str | None, reading: CanaryReading | None = None) -> WebServiceObserved:
    endpoint = {"spec": {}, "status": {"phase": "Ready", "split": split}} if split else None
    return WebServiceObserved(
        namespace="ns",
        name="svc",
        generation=1,
        models=MODELS,
        experiment_latest="m-2",
        endpoints={"svc-default": endpoint} if endpoint else {},
        canary_reading=reading,
    )


def _started() -> dict[str, Any]:
    served = {"model": "m-1", "traffic": [{"model": "m-1", "weight": 100}]}
    return decide_web_service(SPEC, served, observed("m-1:100"), T0, WS_OWNER).status


def test_a_candidate_through_the_gate_first_gets_the_canary_weight_on_the_default_endpoint() -> None:
    status = _started()
    assert status["model"] == "m-1" and status["canary"]["model"] == "m-2"
    assert status["traffic"] == [{"model": "m-1", "weight": 90}, {"model": "m-2", "weight": 10}]
    assert status["split"] == SPLIT
    [record] = status["promotions"]
    assert (record["step"], record["promoted"], record["from"], record["to"]) == (
        "CanaryStarted",
        False,
        "m-1",
        "m-2",
    )
    assert "canary: m-2 serves 10% for 60s" in record["reason"]


def test_the_canary_runs_to_its_promotion_and_every_step_is_recorded() -> None:
    status = _started()
    on = decide_web_service(SPEC, status, observed(SPLIT), at(5), WS_OWNER)
    assert on.status["canary"]["servingSince"] and on.requeue == CHECK_SECONDS
    assert [e.reason for e in on.events] == ["CanaryServing"]
    end = decide_web_service(SPEC, on.status, observed(SPLIT, CanaryReading(50, 0)), at(70), WS_OWNER)
    assert end.status["model"] == "m-2" and "canary" not in end.status
    assert end.status["traffic"] == [{"model": "m-2", "weight": 100}]
    steps = [(p["step"], p["promoted"]) for p in end.status["promotions"]]
    assert steps == [("CanaryStarted", False), ("CanaryServing", False), ("CanaryPromoted", True)]
    assert end.status["promotions"][-1]["requests"] == 50
    assert [e.reason for e in end.events] == ["Promoted"]


def test_a_failing_canary_goes_back_to_the_old_model_and_is_not_tried_again() -> None:
    on = decide_web_service(SPEC, _started(), observed(SPLIT), at(5), WS_OWNER).status
    failed = decide_web_service(SPEC, on, observed(SPLIT, CanaryReading(10, 4)), at(20), WS_OWNER)
    assert failed.status["model"] == "m-1" and "canary" not in failed.status
    assert failed.status["traffic"] == [{"model": "m-1", "weight": 100}]
    last = failed.status["promotions"][-1]
    assert (last["step"], last["promoted"], last["errors"]) == ("CanaryRefused", False, 4)
    assert "error rate 0.4000 (4/10 answers) > maxErrorRate 0.01" in last["reason"]
    [event] = failed.events
    assert (event.type, event.reason) == ("Warning", "PromotionRefused")
    again = decide_web_service(SPEC, failed.status, observed(SPLIT), at(30), WS_OWNER)
    assert again.status["promotions"] == failed.status["promotions"] and again.events == []


def test_pinning_a_model_stops_a_running_canary() -> None:
    status = _started()
    pinned = decide_web_service({"model": "m-1"}, status, observed(SPLIT), at(5), WS_OWNER)
    assert "canary" not in pinned.status and pinned.status["traffic"] == [{"model": "m-1", "weight": 100}]
    last = pinned.status["promotions"][-1]
    assert last["step"] == "CanaryRefused" and "spec.model pins m-1" in last["reason"]
