"""An idle operator writes nothing, and a restarted one writes nothing to objects that did not change: as
the API server itself counts the requests it served (apiserver_request_total on its /metrics)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from operator_support import (
    QUICK_RESYNC,
    Kubectl,
    OperatorProcess,
    import_model,
    manifest,
    reconciled_again,
    wait_until,
)
from serving_kit import build_model

pytestmark = pytest.mark.cluster

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY"}
# What only the operator writes: every kstudio.io object and subresource, and the scorer Deployments and
# Services (their controllers write the Deployments' status subresource, not the objects). Deletions are
# left out: the namespace controller empties the namespaces of earlier tests meanwhile.
OPERATOR_WRITES = {("kstudio.io", None), ("apps", "deployments"), ("", "services")}


def operator_writes(
    local_cluster: Any, resources: set[tuple[str, str | None]] = OPERATOR_WRITES
) -> Counter[str]:
    """The API server's count of writes to what only the operator writes (`resources`: (group, resource)
    pairs, resource None for the whole group), by group/resource/subresource/verb."""
    text = local_cluster.kubectl("get", "--raw", "/metrics").stdout
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if not (m := _SAMPLE.match(line)):
            continue
        labels = dict(_LABEL.findall(m["labels"]))
        ours = (labels.get("group"), None) in resources or (
            (labels.get("group"), labels.get("resource")) in resources and not labels.get("subresource")
        )
        if ours and labels.get("verb") in WRITE_VERBS:
            key = "/".join(labels.get(k, "") for k in ("group", "resource", "subresource", "verb"))
            found[key] += int(float(m["value"]))
    return found


@QUICK_RESYNC
def test_an_idle_operator_writes_nothing_and_a_restart_writes_nothing_to_unchanged_objects(
    kube: Kubectl,
    operator: OperatorProcess,
    example_data: Any,
    local_cluster: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    sha = build_model(tmp_path / "m.ilearner", flip=False)
    import_model(kube, example_data, namespace, tmp_path / "m.ilearner", sha, "m")
    assert (
        kube.apply(manifest("WebService", "svc", {"model": "m", "scorer": {"replicas": 0}})).returncode == 0
    )
    assert kube.apply(manifest("Endpoint", "ep", {"webService": "svc", "model": "m"})).returncode == 0
    for name in ("svc-default", "ep"):
        wait_until(
            f"{name} Ready on m",
            lambda n=name: (
                (s := kube.status("endpoint", n)).get("phase") == "Ready" and s.get("model") == "m"
            ),
            180,
        )
    wait_until("svc Ready", lambda: kube.status("webservice", "svc").get("phase") == "Ready", 30)
    users = ["Endpoint/ep", "Endpoint/svc-default", "WebService/svc"]
    wait_until("m used by all three", lambda: kube.status("trainedmodel", "m").get("usedBy") == users, 30)
    counts = {"TrainedModel": 1, "WebService": 1, "Endpoint": 2}  # objects of each kind

    def every_object_reconciled(times: int) -> Any:
        probes = [reconciled_again(operator, kind, n * times) for kind, n in counts.items()]
        return lambda: all(p() for p in probes)

    # Settled: a round of resyncs after the last change.
    wait_until("a round of reconciles", every_object_reconciled(1), 60)

    # Idle: two more rounds of resyncs (every 2 s here) look at every object and write nothing.
    before = operator_writes(local_cluster)
    wait_until("two rounds of reconciles", every_object_reconciled(2), 60)
    assert operator_writes(local_cluster) - before == Counter()

    # Restarted: the new process reconciles every object once (and resyncs) and writes nothing.
    operator.stop()
    before = operator_writes(local_cluster)
    probe = every_object_reconciled(2)
    operator.start()
    wait_until("the restarted operator's reconciles", probe, 90)
    assert operator_writes(local_cluster) - before == Counter()
    assert kube.status("endpoint", "ep")["phase"] == "Ready"
