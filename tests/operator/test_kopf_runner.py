"""The operator module under kopf's own test runner (in-process), as kopf's examples test operators."""

from __future__ import annotations

from typing import Any

import pytest
from kopf.testing import KopfRunner
from operator_support import Kubectl, condition, experiment_manifest, operator_env, wait_until
from prometheus_client import generate_latest

from fixtures.operator_process import (
    Outcomes,
    allowed_patterns,
    fail_on,
    operator_problems,
    reconcile_outcomes,
)
from kstudio_operator import metrics

pytestmark = pytest.mark.cluster


def in_process_outcomes() -> Outcomes:
    """The reconcile counts of the operator running in this process (its metrics registry, as served)."""
    return reconcile_outcomes(generate_latest(metrics.REGISTRY).decode())


def test_kopf_runner_reports_an_invalid_spec_and_exits_cleanly(
    kube: Kubectl, local_cluster: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for key, value in operator_env(local_cluster).items():
        monkeypatch.setenv(key, value)
    manifest = experiment_manifest("bad-metric", evaluation={"metrics": ["r2"]})  # r2 is a regression metric
    argv = ["run", "--standalone", "--namespace", kube.namespace, "-m", "kstudio_operator.main"]
    before = in_process_outcomes()
    with KopfRunner(argv, timeout=60) as runner:
        assert kube.apply(manifest).returncode == 0
        status = wait_until(
            "bad-metric to be Invalid",
            lambda: (s := kube.status("experiment", "bad-metric")).get("phase") == "Invalid" and s,
            timeout=30,
        )
        # The invalid spec is posted once as an Event: reconciled again (a touched annotation wakes the
        # loop), it posts no second one (no retry loop).
        event = wait_until(
            "the validation Event",
            lambda: next((e for e in kube.events("bad-metric") if e["reason"] == "InvalidSpec"), None),
            timeout=30,
        )
        reconciles = in_process_outcomes()[("Experiment", "ok")]
        kube.run("annotate", "experiment", "bad-metric", "touched=again")
        wait_until(
            "bad-metric reconciled again",
            lambda: in_process_outcomes()[("Experiment", "ok")] > reconciles,
            timeout=30,
        )
        assert [e["reason"] for e in kube.events("bad-metric")].count("InvalidSpec") == 1
        # Finalizers must go while the operator still runs (the namespace is deleted after the test).
        kube.run("delete", "experiment", "bad-metric", "--timeout=30s")
    assert runner.exception is None
    assert runner.exit_code == 0
    assert "Handler 'experiment_changed' succeeded" in runner.output  # the log the check below reads
    # Checked like every operator of the suite (fixtures/operator_process.py): its log and its counts.
    fail_on(
        operator_problems(runner.output, in_process_outcomes() - before, [], allowed_patterns(request)),
        runner.output[-5000:],
    )
    valid = condition(status, "SpecValid")
    assert valid is not None and valid["status"] == "False"
    assert "r2" in valid["message"] and "classification" in valid["message"], valid["message"]
    assert kube.items("jobs") == []
    assert "r2" in event["message"] and event["type"] == "Warning"
