"""Canary promotion on the local cluster (WebService spec.modelFrom.promote.canary): real training runs, a
candidate that passed the metric gate first answers a share of the default Endpoint's requests, then is
promoted to 100 % when its answers are good, or removed (the old model back at 100 %) and refused with the
reason when they fail; every step in status.promotions.

The failing candidate is an honest one: retrained without imputation (`preprocessing.impute: none`) on a
dataset without missing values, it scores as well as the served model on held-out rows and passes the
gate, but raises on the requests real clients send with a missing measurement, which the served model
(median imputation) answers."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, experiment_manifest, wait_until
from serving_kit import cluster_ip, doc, secret_key

from kstudio_devtools.examples import penguins_frame
from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
DATASET = "s3://datasets/penguins-measured.csv"
LOGISTIC = {"name": "LogisticRegression", "params": {}}
CANARY = {"weight": 50, "durationSeconds": 20, "maxErrorRate": 0.05, "minRequests": 5}


@dataclass
class Answer:
    status: int
    model: str | None  # x-kstudio-model: the TrainedModel that answered (or failed)
    body: str


@dataclass
class Load:
    """Answers to RRS requests sent one after the other until stopped."""

    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def score(netns_name: str, ip: str, key: str, row: dict[str, Any]) -> Answer:
    """One RRS call from inside the cluster's network namespace (ClusterIPs answer only there)."""
    conn = http.client.HTTPConnection(ip, 80, timeout=30)
    conn.sock = netns.connect_in_netns(netns_name, ip, 80, 30.0)
    body = json.dumps({"Inputs": {"input1": [row]}, "GlobalParameters": {}}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        conn.request("POST", "/score", body=body, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheader("x-kstudio-model"), resp.read().decode(errors="replace"))
    except OSError as exc:
        return Answer(0, None, repr(exc))
    finally:
        conn.close()


@contextmanager
def load(netns_name: str, ip: str, key: str, row: dict[str, Any]) -> Iterator[Load]:
    """`row` scored about 10 times a second in a thread, until the block ends."""
    sent = Load()

    def run() -> None:
        while not sent.stop.wait(0.1):
            sent.answers.append(score(netns_name, ip, key, row))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        sent.stop.set()
        thread.join(timeout=60)


def measured_penguins(example_data: Any, tmp_path: Path) -> None:
    """The penguins whose four measurements are all known, uploaded as DATASET."""
    path = tmp_path / "penguins-measured.csv"
    penguins_frame()[[*FEATURES, "species"]].dropna().to_csv(path, index=False)
    example_data.upload(path, DATASET)


def steps(kube: Kubectl, model: str) -> list[dict[str, Any]]:
    promotions = kube.status("webservice", "svc").get("promotions") or []
    return [p for p in promotions if p["to"] == model]


def step(kube: Kubectl, model: str, name: str) -> dict[str, Any] | None:
    return next((p for p in steps(kube, model) if p.get("step") == name), None)


def serving(kube: Kubectl, split: str) -> bool:
    status = kube.status("endpoint", "svc-default")
    return bool(status.get("phase") == "Ready" and status.get("split") == split)


def settled(kube: Kubectl, verdict: str, served: str) -> None:
    """The canary of penguins-2 is over with `verdict`, every step recorded, and svc serves `served`."""
    names = [p["step"] for p in steps(kube, "penguins-2")]
    assert names == ["CanaryStarted", "CanaryServing", verdict], names
    status = kube.status("webservice", "svc")
    assert status["model"] == served and "canary" not in status, status
    assert status["traffic"] == [{"model": served, "weight": 100}]


def retrain(kube: Kubectl, patch: list[dict[str, Any]], model: str) -> None:
    kube.run("patch", "experiment", "penguins", "--type=json", "-p", json.dumps(patch))
    wait_until(f"TrainedModel {model}", lambda: kube.get("trainedmodel", model), timeout=240)
    kube.run("wait", "--for=condition=Ready", f"trainedmodel/{model}", "--timeout=120s")


def serve_first_model(
    kube: Kubectl, example_data: Any, tmp_path: Path, local_cluster: Any
) -> tuple[str, str]:
    """penguins-1 trained (median imputation) and served by WebService svc, which asks for a canary:
    (the default Endpoint's ClusterIP, its key)."""
    measured_penguins(example_data, tmp_path)
    experiment = experiment_manifest(
        dataset={"uri": DATASET, "format": "csv"},
        features=FEATURES,
        algorithm=LOGISTIC,
        evaluation={"testFraction": 0.2, "seed": 42, "metrics": ["accuracy"]},
    )
    assert kube.apply(experiment).returncode == 0
    wait_until("TrainedModel penguins-1", lambda: kube.get("trainedmodel", "penguins-1"), timeout=240)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=120s")
    promote = {"metric": "accuracy", "canary": CANARY}
    spec = {"modelFrom": {"experiment": "penguins", "promote": promote}, "scorer": {"replicas": 1}}
    assert kube.apply(doc("WebService", "svc", spec)).returncode == 0
    wait_until("svc-default serving penguins-1", lambda: serving(kube, "penguins-1:100"), 240)
    ip, key = cluster_ip(kube, "svc-default"), secret_key(kube, "svc-default")
    row = dict.fromkeys(FEATURES, 40.0)
    wait_until(
        "the Service to answer",
        lambda: score(local_cluster.info.layout.netns, ip, key, row).status == 200,
        30,
    )
    return ip, key


def test_a_healthy_candidate_serves_its_canary_share_then_is_promoted_to_all_traffic(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, local_cluster: Any, tmp_path: Path
) -> None:
    ip, key = serve_first_model(kube, example_data, tmp_path, local_cluster)
    row = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0, "body_mass_g": 3750.0}
    with load(local_cluster.info.layout.netns, ip, key, row) as sent:
        # The same algorithm with its default spelled out: a new run, as accurate, so the gate (accuracy,
        # minDelta 0) lets the candidate through.
        params = {"name": "LogisticRegression", "params": {"max_iter": 100}}
        retrain(kube, [{"op": "replace", "path": "/spec/algorithm", "value": params}], "penguins-2")
        started = wait_until("the canary started", lambda: step(kube, "penguins-2", "CanaryStarted"), 60)
        assert started["from"] == "penguins-1" and started["promoted"] is False, started
        assert "canary: penguins-2 serves 50% for 20s" in started["reason"], started
        status = kube.status("webservice", "svc")
        assert status["traffic"] == [
            {"model": "penguins-1", "weight": 50},
            {"model": "penguins-2", "weight": 50},
        ]
        assert status["canary"]["model"] == "penguins-2", status
        wait_until(
            "svc-default serving the canary split", lambda: serving(kube, "penguins-1:50,penguins-2:50"), 240
        )
        promoted = wait_until("the canary promoted", lambda: step(kube, "penguins-2", "CanaryPromoted"), 120)
        wait_until("svc-default serving penguins-2 alone", lambda: serving(kube, "penguins-2:100"), 240)
        final = len(sent.answers)
        wait_until("answers after the promotion", lambda: len(sent.answers) >= final + 5, 30)
    assert promoted["promoted"] is True and promoted["errors"] == 0, promoted
    assert promoted["requests"] >= CANARY["minRequests"], promoted
    assert "<= maxErrorRate 0.05 over 20s at 50%" in promoted["reason"], promoted
    settled(kube, "CanaryPromoted", "penguins-2")
    failed = [a for a in sent.answers if a.status != 200]
    assert failed == [], failed[:5]
    answered = [a.model for a in sent.answers]
    assert "penguins-1" in answered and "penguins-2" in answered
    assert {a.model for a in sent.answers[final:]} == {"penguins-2"}
    reasons = [e["reason"] for e in kube.events("svc")]
    assert {"CanaryStarted", "CanaryServing", "Promoted"} <= set(reasons), reasons


def test_a_candidate_whose_answers_fail_is_removed_and_its_promotion_refused(
    kube: Kubectl, operator: OperatorProcess, example_data: Any, local_cluster: Any, tmp_path: Path
) -> None:
    ip, key = serve_first_model(kube, example_data, tmp_path, local_cluster)
    # What real clients send: a bird whose bill was not measured. penguins-1 imputes it.
    row = {"bill_length_mm": None, "bill_depth_mm": 18.7, "flipper_length_mm": 181.0, "body_mass_g": 3750.0}
    with load(local_cluster.info.layout.netns, ip, key, row) as sent:
        preprocessing = {"impute": "none", "scale": "standard", "categorical": "onehot"}
        retrain(kube, [{"op": "add", "path": "/spec/preprocessing", "value": preprocessing}], "penguins-2")
        started = wait_until("the canary started", lambda: step(kube, "penguins-2", "CanaryStarted"), 60)
        assert started["from"] == "penguins-1", started  # it passed the gate
        refused = wait_until("the canary refused", lambda: step(kube, "penguins-2", "CanaryRefused"), 240)
        wait_until("svc-default back on penguins-1 alone", lambda: serving(kube, "penguins-1:100"), 240)
        final = len(sent.answers)
        wait_until("answers after the rollback", lambda: len(sent.answers) >= final + 10, 30)
    assert refused["promoted"] is False and refused["errors"] > 0, refused
    assert "error rate" in refused["reason"] and "> maxErrorRate 0.05" in refused["reason"], refused
    settled(kube, "CanaryRefused", "penguins-1")
    # The callers saw only the candidate's own failures; the old model answered throughout.
    failed = [a for a in sent.answers if a.status != 200]
    assert failed, "the candidate answered some requests"
    assert all(
        a.status == 422 and a.model == "penguins-2" and "prediction_failed" in a.body for a in failed
    ), [(a.status, a.model, a.body[:200]) for a in failed[:5]]
    assert all(a.model == "penguins-1" for a in sent.answers if a.status == 200)
    assert all(a.status == 200 and a.model == "penguins-1" for a in sent.answers[final:])
    refusal = next(e for e in kube.events("svc") if e["reason"] == "PromotionRefused")
    assert refusal["type"] == "Warning" and "keeping penguins-1, not penguins-2" in refusal["message"]
