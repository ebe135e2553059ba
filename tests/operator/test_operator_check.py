"""The check every operator test ends with (fixtures/operator_process.py) catches a failing operator: a
reconcile that raises, though the process keeps running, and an operator that dies by itself."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, operator_env, wait_until

from fixtures.operator_process import fail_on

pytestmark = pytest.mark.cluster

BROKEN_OPERATOR = Path(__file__).with_name("broken_operator.py")


def test_the_check_fails_on_a_raising_reconcile_and_on_an_operator_that_died(
    kube: Kubectl, local_cluster: Any, namespace: str, tmp_path: Path
) -> None:
    proc = OperatorProcess(
        operator_env(local_cluster),
        namespace,
        tmp_path / "operator.log",
        [sys.executable, str(BROKEN_OPERATOR)],
    )
    model = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "TrainedModel",
        "metadata": {"name": "broken"},
        "spec": {"artifact": {"uri": f"s3://models/{namespace}/broken.ilearner", "sha256": "0" * 64}},
    }
    proc.start()
    try:
        assert kube.apply(json.dumps(model)).returncode == 0
        wait_until("a failed reconcile", lambda: proc.outcomes()[("TrainedModel", "error")], timeout=180)
        assert proc.running  # the loop survives its exception: only the check can tell
        kube.run("delete", "trainedmodel", "broken", "--wait=false")
        wait_until("the model to go", lambda: kube.get("trainedmodel", "broken") is None, timeout=30)
    finally:
        proc.stop()
        kube.release_finalizers("trainedmodels")

    problems = proc.problems([])
    assert any('outcome="error"' in p and "TrainedModel" in p for p in problems), problems
    assert any("deliberately broken reconcile" in p and "RuntimeError" in p for p in problems), problems
    with pytest.raises(pytest.fail.Exception, match="the operator failed during the test"):
        fail_on(problems, proc.log_tail())
    # What a test provokes on purpose, it allows by name; nothing else is hidden by that.
    assert proc.problems([r"deliberately broken reconcile", r'kind="TrainedModel",outcome="error"']) == []

    proc.start()
    assert proc.problems([r"deliberately broken", r'outcome="error"']) == []
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGKILL)  # nobody asked it to stop
    proc.proc.wait(10)
    assert proc.problems([r"deliberately broken", r'outcome="error"']) == [
        "operator exited by itself with code -9"
    ]
