"""Serving modes of one Endpoint on the local cluster: a traffic split between models with sticky sessions,
its weights changed under load with zero failed requests, a split that waits for a model, a mirror that
never answers while its agreement metric tells a worse model apart, and a transform-only web service."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from operator_support import Kubectl, OperatorProcess, condition, wait_until
from serving_kit import cluster_ip, doc, import_model, infer, load, secret_key

from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster


def split_ready(kube: Kubectl, name: str, split: str) -> dict[str, Any] | None:
    status = kube.status("endpoint", name)
    return status if status.get("phase") == "Ready" and status.get("split") == split else None


def traffic(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"model": m, "weight": w} for m, w in pairs]


def answered_by(local_cluster: Any, ip: str, key: str, endpoint: str, session: str | None = None) -> str:
    code, body = infer(local_cluster, ip, key, endpoint, {"x-kstudio-session": session} if session else None)
    assert code == 200, body
    return str(json.loads(body)["model_name"])


def test_a_split_answers_from_every_model_and_a_session_sticks_to_one_across_pods(
    kube: Kubectl,
    operator: OperatorProcess,
    models: dict[str, str],
    local_cluster: Any,
    example_data: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    # m-c: a real model over x1 and x3 (another input schema than m-a and m-b, which take x1 and x2).
    import_model(kube, example_data, namespace, tmp_path, "m-c", flip=False, second="x3")
    for name in (*models, "m-c"):
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    assert kube.apply(doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 0}})).returncode == 0
    split = {"webService": "svc", "traffic": traffic(("m-a", 50), ("m-b", 50)), "replicas": 2}
    assert kube.apply(doc("Endpoint", "ep-split", split)).returncode == 0
    status = wait_until(
        "ep-split serving m-a:50,m-b:50 on 2 pods",
        lambda: (s := split_ready(kube, "ep-split", "m-a:50,m-b:50")) and s["readyReplicas"] == 2 and s,
        240,
    )
    assert status["traffic"] == [
        {"model": "m-a", "weight": 50, "digest": models["m-a"]},
        {"model": "m-b", "weight": 50, "digest": models["m-b"]},
    ]
    table = kube.run("get", "endpoints.kstudio.io", "ep-split").stdout
    assert "m-a:50,m-b:50" in table, table

    ip, key = cluster_ip(kube, "ep-split"), secret_key(kube, "ep-split")
    wait_until("the Service to answer", lambda: infer(local_cluster, ip, key, "ep-split")[0] == 200, 30)
    seen = Counter(answered_by(local_cluster, ip, key, "ep-split") for _ in range(60))
    assert set(seen) == {"m-a", "m-b"}, seen
    # Each session is answered by one model, whichever of the 2 pods the Service picks.
    for session in ("alice", "bob", "carol", "dave", "erin"):
        assert len({answered_by(local_cluster, ip, key, "ep-split", session) for _ in range(12)}) == 1
    sticky = {answered_by(local_cluster, ip, key, "ep-split", f"user-{i}") for i in range(20)}
    assert sticky == {"m-a", "m-b"}  # sessions spread over both

    # A model of the new split that does not exist: the split that serves keeps serving, named in status.
    kube.run(
        "patch",
        "endpoints.kstudio.io",
        "ep-split",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"traffic": traffic(("m-a", 80), ("m-x", 20))}}),
    )
    waiting = wait_until(
        "ModelAccepted False",
        lambda: (
            (c := condition(kube.status("endpoint", "ep-split"), "ModelAccepted"))
            and c["status"] == "False"
            and c
        ),
        30,
    )
    assert waiting["reason"] == "ModelNotFound" and "TrainedModel m-x does not exist" in waiting["message"]
    assert "keep serving m-a:50,m-b:50" in waiting["message"]
    assert kube.status("endpoint", "ep-split")["split"] == "m-a:50,m-b:50"
    assert answered_by(local_cluster, ip, key, "ep-split", "alice") in {"m-a", "m-b"}

    # The schema gate applies to every model of the split: m-c, Ready but taking x3, is refused by name.
    new = {"spec": {"traffic": traffic(("m-a", 80), ("m-c", 20))}}
    kube.run("patch", "endpoints.kstudio.io", "ep-split", "--type=merge", "-p", json.dumps(new))
    refused = wait_until(
        "ModelAccepted SchemaChanged",
        lambda: (
            (c := condition(kube.status("endpoint", "ep-split"), "ModelAccepted"))
            and c["reason"] == "SchemaChanged"
            and c
        ),
        30,
    )
    assert "m-c" in refused["message"] and "x2" in refused["message"], refused
    status = kube.status("endpoint", "ep-split")
    assert status["split"] == "m-a:50,m-b:50" and status["phase"] == "Ready", status
    assert answered_by(local_cluster, ip, key, "ep-split", "alice") in {"m-a", "m-b"}


def test_changing_the_weights_under_load_fails_no_request_and_moves_the_traffic(
    kube: Kubectl, operator: OperatorProcess, models: dict[str, str], local_cluster: Any
) -> None:
    for name in models:
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    assert kube.apply(doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 0}})).returncode == 0
    split = {"webService": "svc", "traffic": traffic(("m-a", 90), ("m-b", 10)), "replicas": 2}
    assert kube.apply(doc("Endpoint", "ep-w", split)).returncode == 0
    wait_until(
        "ep-w on 2 pods",
        lambda: (s := split_ready(kube, "ep-w", "m-a:90,m-b:10")) and s["readyReplicas"] == 2,
        240,
    )
    ip, key = cluster_ip(kube, "ep-w"), secret_key(kube, "ep-w")
    wait_until("the Service to answer", lambda: infer(local_cluster, ip, key, "ep-w")[0] == 200, 30)
    with load(local_cluster.info.layout.netns, ip, key, 60, "ep-w") as (gen, t0):
        time.sleep(4)
        patched_at = time.monotonic() - t0
        new = {"spec": {"traffic": traffic(("m-a", 10), ("m-b", 90))}}
        kube.run("patch", "endpoints.kstudio.io", "ep-w", "--type=merge", "-p", json.dumps(new))
        status = wait_until("ep-w on m-a:10,m-b:90", lambda: split_ready(kube, "ep-w", "m-a:10,m-b:90"), 240)
        shown_at = time.monotonic() - t0
        time.sleep(6)
        out, _ = gen.communicate(input="", timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    by_digest = {sha: name for name, sha in models.items()}
    before = Counter(by_digest[v] for t, v in result["answers"] if t < patched_at)
    after = Counter(by_digest[v] for t, v in result["answers"] if t > shown_at)
    print(
        f"\nweights under load: {result['ok']} ok, {result['failed']} failed; before {before}, after {after}"
    )
    assert result["failed"] == 0, result["errors"]
    assert before["m-a"] > before["m-b"] and after["m-b"] > after["m-a"], (before, after)
    assert status["rollout"]["from"] == "m-a:90,m-b:10" and status["history"][-1]["to"] == "m-a:10,m-b:90"


def scorer_metric(local_cluster: Any, ip: str, line_start: str) -> float | None:
    """One sample of the scorer's /metrics (no key needed), through the Service."""
    code, text = netns.http_request(local_cluster.info.layout.netns, "GET", f"http://{ip}/metrics")
    found = [line for line in text.splitlines() if line.startswith(line_start)] if code == 200 else []
    return float(found[0].split()[-1]) if found else None


def test_a_mirror_never_answers_and_its_agreement_drops_when_it_is_a_worse_model(
    kube: Kubectl,
    operator: OperatorProcess,
    models: dict[str, str],
    local_cluster: Any,
    example_data: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    # m-twin: trained like m-a (same answers, another artifact); m-b answers the opposite.
    sha = import_model(kube, example_data, namespace, tmp_path, "m-twin", flip=False)
    for name in (*models, "m-twin"):
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    assert kube.apply(doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 0}})).returncode == 0
    spec = {"webService": "svc", "model": "m-a", "mirror": {"model": "m-twin", "percent": 100}, "replicas": 1}
    assert kube.apply(doc("Endpoint", "ep-shadow", spec)).returncode == 0
    status = wait_until(
        "ep-shadow mirroring m-twin",
        lambda: (
            (s := split_ready(kube, "ep-shadow", "m-a:100"))
            and (s.get("mirror") or {}).get("model") == "m-twin"
            and s
        ),
        240,
    )
    assert status["mirror"] == {"model": "m-twin", "percent": 100, "digest": sha}
    ip, key = cluster_ip(kube, "ep-shadow"), secret_key(kube, "ep-shadow")
    wait_until("the Service to answer", lambda: infer(local_cluster, ip, key, "ep-shadow")[0] == 200, 30)

    agreement = {}
    for mirror in ("m-twin", "m-b"):
        if mirror == "m-b":
            patch = {"spec": {"mirror": {"model": "m-b", "percent": 100}}}
            kube.run("patch", "endpoints.kstudio.io", "ep-shadow", "--type=merge", "-p", json.dumps(patch))
            wait_until(
                "ep-shadow mirroring m-b",
                lambda: (
                    (s := split_ready(kube, "ep-shadow", "m-a:100"))
                    and (s.get("mirror") or {}).get("model") == "m-b"
                ),
                240,
            )
            wait_until(
                "the new pod to answer", lambda: infer(local_cluster, ip, key, "ep-shadow")[0] == 200, 30
            )
        answers = {answered_by(local_cluster, ip, key, "ep-shadow") for _ in range(30)}
        assert answers == {"m-a"}  # the mirror never answers
        scored = f'kstudio_scorer_mirror_requests_total{{mirror="{mirror}",outcome="ok"}}'
        wait_until(
            f"{mirror} to score copies", lambda m=scored: (scorer_metric(local_cluster, ip, m) or 0) >= 30, 30
        )
        gauge = f'kstudio_scorer_mirror_label_agreement{{mirror="{mirror}",model="m-a"}}'
        agreement[mirror] = scorer_metric(local_cluster, ip, gauge)
    assert agreement == {"m-twin": 1.0, "m-b": 0.0}, agreement
    rows = kube.run("get", "endpoints.kstudio.io", "ep-shadow", "-o", "wide").stdout
    assert "m-b" in rows, rows  # the Mirror column


def test_a_transform_only_web_service_answers_rrs_classic_and_oip_with_its_columns_named(
    kube: Kubectl, operator: OperatorProcess, local_cluster: Any
) -> None:
    # Studio's non-predictive experiment: penguins' measurements imputed and scaled, island one-hot encoded.
    spec = {
        "dataset": {"uri": "s3://datasets/penguins.csv", "format": "csv"},
        "task": "transform",
        "features": ["bill_length_mm", "body_mass_g", "island"],
        "preprocessing": {"impute": "median", "scale": "standard", "categorical": "onehot"},
        "resources": {"cpu": "500m", "memory": "1Gi"},
    }
    assert kube.apply(doc("Experiment", "prep", spec)).returncode == 0
    wait_until("TrainedModel prep-1", lambda: kube.get("trainedmodel", "prep-1"), timeout=240)
    kube.run("wait", "--for=condition=Ready", "trainedmodel/prep-1", "--timeout=120s")
    model = kube.status("trainedmodel", "prep-1")
    columns = ["bill_length_mm", "body_mass_g", "island_Biscoe", "island_Dream", "island_Torgersen"]
    assert (model["task"], model["outputColumns"], model.get("label")) == ("transform", columns, None)

    # The same lifecycle as a model: a WebService following the Experiment, its default Endpoint and keys.
    assert kube.apply(doc("WebService", "prep", {"modelFrom": {"experiment": "prep"}})).returncode == 0
    wait_until("prep-default serving prep-1", lambda: split_ready(kube, "prep-default", "prep-1:100"), 240)
    ip, key = cluster_ip(kube, "prep-default"), secret_key(kube, "prep-default")
    netns_name = local_cluster.info.layout.netns
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        code, text = netns.http_request(
            netns_name, "POST", f"http://{ip}{path}", json.dumps(body).encode(), auth
        )
        assert code == 200, text
        return dict(json.loads(text))

    row = {"bill_length_mm": 39.1, "body_mass_g": 3750, "island": "Torgersen"}
    wait_until("the Service to answer", lambda: infer_ok(local_cluster, ip, key), 30)
    rrs = post("/score", {"Inputs": {"input1": [row]}, "GlobalParameters": {}})["Results"]["output1"][0]
    assert list(rrs) == columns and rrs["island_Torgersen"] == 1.0 and rrs["island_Biscoe"] == 0.0
    table = {"Inputs": {"input1": {"ColumnNames": list(row), "Values": [["39.1", "3750", "Torgersen"]]}}}
    classic = post("/workspaces/w/services/prep/execute?api-version=2.0", table)["Results"]["output1"][
        "value"
    ]
    assert classic["ColumnNames"] == columns and classic["Values"][0][4] == "1"
    assert abs(float(classic["Values"][0][0]) - rrs["bill_length_mm"]) < 1e-9
    v2 = {
        "inputs": [
            {"name": "bill_length_mm", "shape": [1], "datatype": "FP64", "data": [39.1]},
            {"name": "body_mass_g", "shape": [1], "datatype": "FP64", "data": [3750]},
            {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Torgersen"]},
        ]
    }
    oip = post("/v2/models/prep-default/infer", v2)
    assert [o["name"] for o in oip["outputs"]] == columns and oip["model_name"] == "prep-1"
    assert [o["data"][0] for o in oip["outputs"]] == [rrs[c] for c in columns]


def infer_ok(local_cluster: Any, ip: str, key: str) -> bool:
    """RRS on the transform answers (kube-proxy may not route a new Service yet)."""
    body = json.dumps(
        {"Inputs": {"input1": [{"bill_length_mm": 40, "body_mass_g": 4000, "island": "Dream"}]}}
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    try:
        code, _ = netns.http_request(
            local_cluster.info.layout.netns, "POST", f"http://{ip}/score", body.encode(), headers
        )
    except OSError:
        return False
    return code == 200
