"""How the check every operator test ends with (tests/fixtures/operator_process.py) reads an operator's
log and metrics; its run against a real operator with a raising reconcile is tests/operator/
test_operator_check.py."""

from __future__ import annotations

from collections import Counter

from fixtures.operator_process import CleanupMark, log_problems, operator_problems, reconcile_outcomes


def record(second: int, logger: str, level: str, message: str) -> str:
    """One line in kopf's log format."""
    return f"[2026-12-04 10:00:{second:02},000] {logger:20.20} [{level:8.8}] {message}\n"


LOG = (
    record(0, "kopf._core.reactor.r", "INFO", "Handler 'experiment_changed' succeeded.")
    + record(1, "kstudio_operator.kub", "WARNING", "cannot post event X on y: HTTP 403: no")
    + record(2, "kstudio_operator.run", "ERROR", "TrainedModel/ns/m: reconcile failed (boom); again in 2s")
    + 'Traceback (most recent call last):\n  File "runtime.py", line 183\n    delay = await once()\n'
    + "RuntimeError: boom\n"
    + record(3, "kopf.objects", "INFO", "[ns/m] Handler 'reconcile' is invoked.")
)
CLEANUP = (
    record(9, "kopf.objects", "ERROR", "[ns/m] Handler 'guard' failed temporarily: deletion is blocked")
    + record(9, "kopf.objects", "ERROR", "[ns/e] Handler 'cleanup' failed with an exception: x")
    + "Traceback (most recent call last):\nKeyError: 'x'\n"
)
METRICS = """\
# HELP kstudio_operator_reconciles_total Reconciles run, by kind and outcome (ok, retry, error).
# TYPE kstudio_operator_reconciles_total counter
kstudio_operator_reconciles_total{kind="TrainedModel",outcome="ok"} 7.0
kstudio_operator_reconciles_total{kind="TrainedModel",outcome="error"} 1.0
kstudio_operator_reconciles_total{kind="Experiment",outcome="retry"} 2.0
kstudio_operator_reconciles_created{kind="TrainedModel",outcome="ok"} 1.7e+09
"""


def test_errors_and_tracebacks_are_problems_info_and_warnings_are_not() -> None:
    assert log_problems(LOG) == [LOG.splitlines()[2] + " ... RuntimeError: boom"]
    assert log_problems("Traceback (most recent call last):\n  File x\nValueError: early\n") == [
        "Traceback (most recent call last): ... ValueError: early"
    ]


def test_reconcile_counts_come_from_the_metrics_page() -> None:
    assert reconcile_outcomes(METRICS) == Counter(
        {("TrainedModel", "ok"): 7, ("TrainedModel", "error"): 1, ("Experiment", "retry"): 2}
    )


def test_retries_during_the_fixtures_clean_up_are_not_problems_errors_are() -> None:
    outcomes = reconcile_outcomes(METRICS)
    before_cleanup = Counter({("TrainedModel", "error"): 1})
    found = operator_problems(LOG + CLEANUP, outcomes, [], [], CleanupMark(len(LOG), before_cleanup))
    assert found == [
        LOG.splitlines()[2] + " ... RuntimeError: boom",
        CLEANUP.splitlines()[1] + " ... KeyError: 'x'",
        'kstudio_operator_reconciles_total{kind="TrainedModel",outcome="error"} 1',
    ]
    everything = operator_problems(LOG + CLEANUP, outcomes, ["exited by itself with code 1"], [])
    assert len(everything) == 6 and everything[0] == "operator exited by itself with code 1"
    assert 'kstudio_operator_reconciles_total{kind="Experiment",outcome="retry"} 2' in everything


def test_an_allowed_pattern_hides_only_what_it_names() -> None:
    found = operator_problems(LOG + CLEANUP, Counter(), [], [r"deletion is blocked", r"KeyError: 'x'"])
    assert len(found) == 1 and "RuntimeError: boom" in found[0]
