"""Which model an Endpoint serves, on the local cluster: the schema gate (another input schema or a changed
column type is refused unless allowed; a model whose schema is unknown cannot be compared, so it is not
refused), and rollback by the kstudio.io/rollback annotation (or an Event saying it is impossible)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, condition, import_model, manifest, wait_until
from serving_kit import build_model_with_schema

pytestmark = pytest.mark.cluster

SCHEMAS = {
    "m-a": {"x1": "number", "x2": "number"},
    "m-b": {"x2": "number", "x1": "number"},  # the same schema (the order of columns does not matter)
    "m-x": {"x1": "number", "x3": "number"},  # x2 removed, x3 added
    "m-t": {"x1": "number", "x2": "string"},  # x2 changed type
}


def _patch(kube: Kubectl, spec: dict[str, Any]) -> None:
    kube.run("patch", "endpoints.kstudio.io", "ep", "--type=merge", "-p", json.dumps({"spec": spec}))


def _serving(kube: Kubectl, model: str) -> dict[str, Any] | None:
    status = kube.status("endpoint", "ep")
    return status if status.get("phase") == "Ready" and status.get("model") == model else None


def _refused(kube: Kubectl, wanted: str) -> dict[str, Any] | None:
    accepted = condition(kube.status("endpoint", "ep"), "ModelAccepted")
    ok = accepted and accepted["status"] == "False" and accepted["reason"] == "SchemaChanged"
    return accepted if ok and wanted in accepted["message"] else None


def test_the_schema_gate_and_rollback_decide_what_an_endpoint_serves(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, namespace: str, tmp_path: Path
) -> None:
    for name, schema in SCHEMAS.items():
        sha = build_model_with_schema(tmp_path / f"{name}.ilearner", schema)
        import_model(kube, example_data, namespace, tmp_path / f"{name}.ilearner", sha, name)
    for name in SCHEMAS:
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    assert (
        kube.apply(manifest("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 0}})).returncode == 0
    )
    assert kube.apply(manifest("Endpoint", "ep", {"webService": "svc", "model": "m-a"})).returncode == 0
    wait_until("ep serving m-a", lambda: _serving(kube, "m-a"), 180)

    # Nothing to roll back to yet: said so, nothing changes.
    kube.run("annotate", "endpoints.kstudio.io", "ep", "kstudio.io/rollback=r0")
    impossible = wait_until(
        "RollbackImpossible",
        lambda: next((e for e in kube.events("ep") if e["reason"] == "RollbackImpossible"), None),
        30,
    )
    assert impossible["type"] == "Warning" and "no earlier model" in impossible["message"]

    # Another schema, and a changed type: refused, m-a keeps serving.
    _patch(kube, {"model": "m-x"})
    refused = wait_until("m-x refused", lambda: _refused(kube, "m-x"), 30)
    assert "added x3; removed x2" in refused["message"] and "allowSchemaChange" in refused["message"]
    _patch(kube, {"model": "m-t"})
    refused = wait_until("m-t refused", lambda: _refused(kube, "m-t"), 30)
    assert "changed type of x2 (number -> string)" in refused["message"]
    assert _serving(kube, "m-a")
    assert {
        p["metadata"]["annotations"]["kstudio.io/model"] for p in kube.items("pods", "kstudio.io/endpoint=ep")
    } == {"m-a"}

    # The same schema rolls out; the annotation rolls back to what was served before, spec untouched.
    _patch(kube, {"model": "m-b"})
    wait_until("ep serving m-b", lambda: _serving(kube, "m-b"), 180)
    # r0 was answered once, and is not acted on now that there is a model to go back to.
    assert [e["reason"] for e in kube.events("ep")].count("RollbackImpossible") == 1
    kube.run("annotate", "--overwrite", "endpoints.kstudio.io", "ep", "kstudio.io/rollback=r1")
    back = wait_until("ep rolled back to m-a", lambda: _serving(kube, "m-a"), 180)
    assert back["rolledBack"]["active"] is True and back["rolledBack"]["model"] == "m-a", back
    assert (kube.get("endpoints.kstudio.io", "ep") or {})["spec"]["model"] == "m-b"
    assert any(e["reason"] == "RollingBack" for e in kube.events("ep"))

    # Allowed explicitly, another schema is served (a new spec.model ends the rollback).
    _patch(kube, {"model": "m-x", "allowSchemaChange": True})
    wait_until("ep serving m-x", lambda: _serving(kube, "m-x"), 180)

    # The served model's TrainedModel is gone (its deletion forced past the guard): with no schema to
    # compare with, the next model is not refused.
    kube.run("delete", "trainedmodel", "m-x", "--wait=false")
    kube.run("patch", "trainedmodel", "m-x", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_until("m-x gone", lambda: kube.get("trainedmodel", "m-x") is None, 30)
    _patch(kube, {"model": "m-t", "allowSchemaChange": False})
    served = wait_until("ep serving m-t", lambda: _serving(kube, "m-t"), 180)
    accepted = condition(served, "ModelAccepted")
    assert accepted is not None and accepted["status"] == "True", accepted
