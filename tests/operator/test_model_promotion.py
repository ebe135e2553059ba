"""A WebService that follows an Experiment (spec.modelFrom) on the local cluster: real training runs, a
better retrained model promoted through the metric gate, a worse one refused, each with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, experiment_manifest, wait_until

pytestmark = pytest.mark.cluster

# One tree with one split cannot tell three species apart; twenty full trees can.
WEAK = {"name": "RandomForestClassifier", "params": {"n_estimators": 1, "max_depth": 1, "random_state": 0}}
STRONG = {"name": "RandomForestClassifier", "params": {"n_estimators": 20, "random_state": 0}}


def retrain(kube: Kubectl, algorithm: dict[str, Any], model: str) -> dict[str, Any]:
    """Change the experiment's algorithm (a new generation, so a new run) and wait for its model."""
    patch = json.dumps([{"op": "replace", "path": "/spec/algorithm", "value": algorithm}])
    kube.run("patch", "experiment", "penguins", "--type=json", "-p", patch)  # merge would keep max_depth
    wait_until(f"TrainedModel {model}", lambda: kube.get("trainedmodel", model), timeout=240)
    kube.run("wait", "--for=condition=Ready", f"trainedmodel/{model}", "--timeout=120s")
    trained = kube.get("trainedmodel", model)
    assert trained is not None
    return trained


def promotion_of(kube: Kubectl, model: str) -> dict[str, Any] | None:
    promotions = kube.status("webservice", "follow").get("promotions") or []
    return next((p for p in promotions if p["to"] == model), None)


def accuracy(model: dict[str, Any]) -> float:
    return float(model["status"]["metrics"]["accuracy"])


def test_model_from_promotes_a_better_retrained_model_and_refuses_a_worse_one(
    kube: Kubectl, operator: OperatorProcess
) -> None:
    assert kube.apply(experiment_manifest(algorithm=WEAK)).returncode == 0
    wait_until("TrainedModel penguins-1", lambda: kube.get("trainedmodel", "penguins-1"), timeout=240)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=120s")
    service = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "follow"},
        "spec": {
            "modelFrom": {"experiment": "penguins", "promote": {"metric": "accuracy", "minDelta": 0.01}},
            "scorer": {"replicas": 0},  # the gate is what is under test, not the pods
        },
    }
    assert kube.apply(json.dumps(service)).returncode == 0
    first = wait_until("penguins-1 followed", lambda: promotion_of(kube, "penguins-1"), 60)
    assert first["promoted"] is True and first.get("from") is None, first
    assert kube.status("webservice", "follow")["model"] == "penguins-1"

    weak = kube.get("trainedmodel", "penguins-1")
    assert weak is not None
    strong = retrain(kube, STRONG, "penguins-2")
    assert accuracy(strong) >= accuracy(weak) + 0.01, (accuracy(strong), accuracy(weak))
    promoted = wait_until("penguins-2 promoted", lambda: promotion_of(kube, "penguins-2"), 60)
    assert (promoted["from"], promoted["promoted"], promoted["metric"]) == ("penguins-1", True, "accuracy")
    assert abs(promoted["delta"] - (accuracy(strong) - accuracy(weak))) < 1e-9
    assert ">= minDelta 0.01" in promoted["reason"], promoted
    assert kube.status("webservice", "follow")["model"] == "penguins-2"
    # The default endpoint follows: its spec names no model, its pod template carries the new digest.
    default = kube.get("endpoints.kstudio.io", "follow-default")
    assert default is not None and "model" not in default["spec"]
    template = wait_until(
        "follow-default's Deployment on penguins-2",
        lambda: (
            (d := kube.get("deployment", "follow-default"))
            and d["spec"]["template"]["metadata"]["annotations"]["kstudio.io/model"] == "penguins-2"
            and d["spec"]["template"]["metadata"]["annotations"]
        ),
        30,
    )
    assert template["kstudio.io/model-sha256"] == strong["spec"]["artifact"]["sha256"]

    worse = retrain(kube, WEAK, "penguins-3")
    refused = wait_until("penguins-3 judged", lambda: promotion_of(kube, "penguins-3"), 60)
    assert (refused["from"], refused["promoted"]) == ("penguins-2", False), refused
    assert abs(refused["delta"] - (accuracy(worse) - accuracy(strong))) < 1e-9
    assert "< minDelta 0.01" in refused["reason"], refused
    assert kube.status("webservice", "follow")["model"] == "penguins-2"
    reasons = [e["reason"] for e in kube.events("follow")]
    assert "Promoted" in reasons and "PromotionRefused" in reasons, reasons
    refusal = next(e for e in kube.events("follow") if e["reason"] == "PromotionRefused")
    assert "keeping penguins-2, not penguins-3" in refusal["message"]
