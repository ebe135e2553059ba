"""A new WebService is written once when it gets Ready within the settle time (KSTUDIO_SETTLE_SECONDS):
no intermediate Pending status, of the service or of its default Endpoint, as the API server counts the
writes it served; one that cannot get Ready shows Pending once that time is over."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, condition, manifest, wait_until
from serving_kit import import_model
from test_operator_writes import OPERATOR_WRITES, operator_writes

pytestmark = pytest.mark.cluster

ON_KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}
# The operator's writes, and the keys Secrets it creates (made once, whatever the held status).
WRITES = OPERATOR_WRITES | {("", "secrets")}
KS = "kstudio.io"


@pytest.mark.operator_env(KSTUDIO_SETTLE_SECONDS="60")
def test_a_web_service_ready_within_the_settle_time_is_written_once_without_a_pending_status(
    kube: Kubectl,
    operator: OperatorProcess,
    fake_nodes: list[str],
    example_data: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    import_model(kube, example_data, namespace, tmp_path, "m", flip=False)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m", "--timeout=60s")
    wait_until("m's status written", lambda: "usedByCount" in kube.status("trainedmodel", "m"), 30)
    before = operator_writes(local_cluster, WRITES)
    spec = {"model": "m", "scorer": {"replicas": 1, "scheduling": ON_KWOK}}
    assert kube.apply(manifest("WebService", "svc", spec)).returncode == 0
    wait_until("svc Ready", lambda: kube.status("webservice", "svc").get("phase") == "Ready", 60)
    assert kube.status("endpoint", "svc-default")["phase"] == "Ready"
    users = ["Endpoint/svc-default", "WebService/svc"]
    wait_until("m used by both", lambda: kube.status("trainedmodel", "m").get("usedBy") == users, 30)

    writes = operator_writes(local_cluster, WRITES) - before
    model_writes = writes.pop(f"{KS}/trainedmodels/status/PATCH", 0)
    assert writes == Counter(
        {
            f"{KS}/webservices//POST": 1,  # this test's kubectl apply
            f"{KS}/endpoints//POST": 1,  # the default Endpoint
            "/secrets//POST": 1,  # its keys
            "apps/deployments//POST": 1,
            "/services//POST": 1,
            f"{KS}/webservices/status/PATCH": 1,  # Ready, never Pending
            f"{KS}/endpoints/status/PATCH": 1,
        }
    )
    assert 1 <= model_writes <= 2  # usedBy: the service, then the Endpoint once it serves m


@pytest.mark.operator_env(KSTUDIO_SETTLE_SECONDS="3")
def test_a_web_service_that_cannot_get_ready_shows_pending_once_the_settle_time_is_over(
    kube: Kubectl, operator: OperatorProcess, local_cluster: Any, namespace: str
) -> None:
    """Its default Endpoint says at once that the model does not exist (the user must act); the service
    itself, waiting for that Endpoint, says Pending when the 3 s are over."""
    assert kube.apply(manifest("WebService", "svc", {"model": "nope"})).returncode == 0
    endpoint = wait_until(
        "svc-default says why",
        lambda: condition(kube.status("endpoint", "svc-default"), "ModelAccepted"),
        15,
    )
    assert (endpoint["reason"], kube.status("endpoint", "svc-default")["phase"]) == (
        "ModelNotFound",
        "Pending",
    )
    status = wait_until("svc Pending", lambda: kube.status("webservice", "svc") or None, 3 + 15)
    assert status["phase"] == "Pending" and status["model"] == "nope"
    assert condition(status, "Ready")["reason"] == "EndpointNotReady"
