"""The operator module under kopf's own test runner (in-process), as kopf's examples test operators."""

from __future__ import annotations

from typing import Any

import pytest
from kopf.testing import KopfRunner
from operator_support import Kubectl, condition, experiment_manifest, operator_env, wait_until

pytestmark = pytest.mark.cluster


def test_kopf_runner_reports_an_invalid_spec_and_exits_cleanly(
    kube: Kubectl, local_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in operator_env(local_cluster).items():
        monkeypatch.setenv(key, value)
    manifest = experiment_manifest("bad-metric", evaluation={"metrics": ["r2"]})  # r2 is a regression metric
    argv = ["run", "--standalone", "--namespace", kube.namespace, "-m", "kstudio_operator.main"]
    with KopfRunner(argv, timeout=60) as runner:
        assert kube.apply(manifest).returncode == 0
        status = wait_until(
            "bad-metric to be Invalid",
            lambda: (s := kube.status("experiment", "bad-metric")).get("phase") == "Invalid" and s,
            timeout=30,
        )
        # The PermanentError of the validate handler is posted once as an Event (no retry loop).
        event = wait_until(
            "the validation Event",
            lambda: next((e for e in kube.events("bad-metric") if e["reason"] == "InvalidSpec"), None),
            timeout=30,
        )
        # Finalizers must go while the operator still runs (the namespace is deleted after the test).
        kube.run("delete", "experiment", "bad-metric", "--timeout=30s")
    assert runner.exception is None
    assert runner.exit_code == 0
    valid = condition(status, "SpecValid")
    assert valid is not None and valid["status"] == "False"
    assert "r2" in valid["message"] and "classification" in valid["message"], valid["message"]
    assert kube.items("jobs") == []
    assert "r2" in event["message"] and event["type"] == "Warning"
