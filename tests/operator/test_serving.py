"""WebService and Endpoint on the local cluster: real scorer pods behind a Service, keys from the Secret,
a model patched in under load with zero failed requests, a bad model that stalls without harm."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from operator_support import QUICK_RESYNC, Kubectl, OperatorProcess, condition, reconciled_again, wait_until
from serving_kit import build_model, cluster_ip, endpoint_ready, infer, load, secret_key
from serving_kit import doc as _doc

from kstudio_localcluster import netns

pytestmark = pytest.mark.cluster


def test_a_web_service_serves_its_model_through_its_default_endpoint_with_generated_keys(
    kube: Kubectl, operator: OperatorProcess, models: dict[str, str], local_cluster: Any
) -> None:
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-a", "--timeout=60s")
    assert kube.apply(_doc("WebService", "svc", {"model": "m-a"})).returncode == 0
    status = wait_until("svc-default serving m-a", lambda: endpoint_ready(kube, "svc-default", "m-a"), 180)
    assert status["modelDigest"] == models["m-a"] and status["readyReplicas"] == 1
    ws = wait_until(
        "svc Ready", lambda: (s := kube.status("webservice", "svc")).get("phase") == "Ready" and s, 30
    )
    assert (
        ws["model"] == "m-a" and ws["defaultEndpoint"] == "svc-default" and ws["modelDigest"] == models["m-a"]
    )
    ready = condition(ws, "Ready")
    assert ready is not None and ready["status"] == "True" and ws["observedGeneration"] == 1

    ip = cluster_ip(kube, "svc-default")
    key = secret_key(kube, "svc-default")
    code, body = wait_until(
        "the Service to answer",
        lambda: (r := infer(local_cluster, ip, key, "svc-default"))[0] == 200 and r,
        30,
    )
    assert json.loads(body)["model_version"] == models["m-a"]
    rrs = json.dumps({"Inputs": {"input1": [{"x1": 0.3, "x2": -0.1}]}, "GlobalParameters": {}}).encode()
    code, body = netns.http_request(
        local_cluster.info.layout.netns,
        "POST",
        f"http://{ip}/score",
        rrs,
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    assert code == 200 and "Scored Labels" in body
    assert infer(local_cluster, ip, None, "svc-default")[0] == 401
    assert infer(local_cluster, ip, "not-the-key", "svc-default")[0] == 401

    # `kubectl get kstudio`: model, digest prefix, ready replicas and URL, as the pods serve them.
    table = kube.run("get", "kstudio").stdout
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    row = rows["endpoint.kstudio.io/svc-default"]
    assert row[2:6] == ["m-a", models["m-a"][:12], "1", "Ready"], table
    assert row[6] == status["url"], table
    assert rows["webservice.kstudio.io/svc"][1:4] == ["Ready", "m-a", models["m-a"][:12]], table

    # The key appears nowhere but in its Secret.
    dumped = kube.run("get", "endpoints.kstudio.io,webservices,deployments,pods,events", "-o", "json").stdout
    assert key not in dumped
    assert key not in operator.log_tail(100_000)

    # GitOps: the operator wrote no spec of the user's objects; applying them again changes nothing.
    ep2 = _doc("Endpoint", "ep-gitops", {"webService": "svc", "model": "m-a", "replicas": 0})
    for manifest in (_doc("WebService", "svc", {"model": "m-a"}), ep2):
        for _ in range(2):
            kube.run("apply", "--server-side", "-f", "-", input=manifest)
    wait_until(
        "ep-gitops reconciled", lambda: kube.status("endpoint", "ep-gitops").get("observedGeneration"), 30
    )
    for manifest in (_doc("WebService", "svc", {"model": "m-a"}), ep2):
        diff = kube.run("diff", "--server-side", "-f", "-", input=manifest, check=False)
        assert diff.returncode == 0, diff.stdout + diff.stderr

    # A user pointing the default endpoint elsewhere is reverted, and told why.
    kube.run("patch", "endpoints.kstudio.io", "svc-default", "--type=merge", "-p", '{"spec":{"model":"m-b"}}')
    wait_until(
        "the revert",
        lambda: not (kube.get("endpoints.kstudio.io", "svc-default") or {})["spec"].get("model"),
        30,
    )
    assert any(e["reason"] == "DefaultEndpointReverted" for e in kube.events("svc"))
    assert kube.status("endpoint", "svc-default")["model"] == "m-a"


def test_patching_an_endpoint_under_load_switches_models_with_zero_failed_requests_even_if_the_operator_dies(
    kube: Kubectl, operator: OperatorProcess, models: dict[str, str], local_cluster: Any
) -> None:
    for name in ("m-a", "m-b"):
        kube.run("wait", "--for=condition=Ready", f"trainedmodel/{name}", "--timeout=60s")
    assert kube.apply(_doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 1}})).returncode == 0
    assert (
        kube.apply(_doc("Endpoint", "ep2", {"webService": "svc", "model": "m-a", "replicas": 2})).returncode
        == 0
    )
    wait_until(
        "ep2 serving m-a on 2 pods",
        lambda: (s := endpoint_ready(kube, "ep2", "m-a")) and s["readyReplicas"] == 2 and s,
        240,
    )
    ip = cluster_ip(kube, "ep2")
    key = secret_key(kube, "ep2")
    wait_until("the Service to answer", lambda: infer(local_cluster, ip, key, "ep2")[0] == 200, 30)
    with load(local_cluster.info.layout.netns, ip, key, 80, "ep2") as (gen, t0):
        time.sleep(3)
        patched_at = time.monotonic()
        kube.run("patch", "endpoints.kstudio.io", "ep2", "--type=merge", "-p", '{"spec":{"model":"m-b"}}')
        status = wait_until("ep2 serving m-b", lambda: endpoint_ready(kube, "ep2", "m-b"), 240)
        shown_at = time.monotonic() - t0  # on the load generator's clock (both CLOCK_MONOTONIC)
        switched = time.monotonic() - patched_at
        time.sleep(3)
        # Back to m-a, and the operator is SIGKILLed half-way through that rollout, then restarted.
        second_patch_at = time.monotonic() - t0
        kube.run("patch", "endpoints.kstudio.io", "ep2", "--type=merge", "-p", '{"spec":{"model":"m-a"}}')
        wait_until(
            "the rollout to start", lambda: kube.status("endpoint", "ep2").get("phase") == "RollingOut", 30
        )
        operator.kill()
        time.sleep(3)
        operator.start()
        back = wait_until("ep2 serving m-a again", lambda: endpoint_ready(kube, "ep2", "m-a"), 240)
        time.sleep(3)
        out, _ = gen.communicate(input="", timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    rate = (result["ok"] + result["failed"]) / result["seconds"]
    answers = [(t, v) for t, v in result["answers"] if t < second_patch_at]
    # The load spanned the switch: answers from m-a and from m-b (how many per second is bench/patch.py's).
    assert {v for _, v in answers} == {models["m-a"], models["m-b"]}, answers[:3]
    first_new = next(t for t, v in answers if v == models["m-b"])
    last_old = max(t for t, v in answers if v == models["m-a"])
    counts = f"{result['ok']} ok, {result['failed']} failed at {rate:.0f} req/s"
    timeline = f"m-a last answered at {last_old:.1f}s, m-b first at {first_new:.1f}s (load clock)"
    print(f"\npatch under load: {counts}; status showed m-b {switched:.1f}s after the patch; {timeline}")
    assert result["failed"] == 0, result["errors"]
    assert status["modelDigest"] == models["m-b"] and status["rollout"]["from"] == "m-a"
    assert status["history"][-1]["to"] == "m-b" and status["history"][-1]["seconds"] > 0
    # Once the status says m-b, every answer is from m-b: the last m-a request started before that.
    assert last_old < shown_at, (last_old, shown_at)
    assert answers[-1][1] == models["m-b"]
    # The restarted operator finished the rollout it found half done; no request failed meanwhile.
    assert back["modelDigest"] == models["m-a"] and back["history"][-1]["to"] == "m-a"
    assert result["answers"][-1][1] == models["m-a"]


def test_a_model_that_cannot_load_stalls_the_rollout_and_patching_back_recovers(
    kube: Kubectl,
    operator: OperatorProcess,
    models: dict[str, str],
    local_cluster: Any,
    example_data: Any,
    namespace: str,
    tmp_path: Path,
) -> None:
    # A TrainedModel whose file changes after verification: pods refuse it (digest mismatch, exit 2).
    path = tmp_path / "m-c.ilearner"
    sha = build_model(path, flip=True)
    uri = f"s3://models/{namespace}/imports/m-c.ilearner"
    example_data.upload(path, uri)
    assert kube.apply(_doc("TrainedModel", "m-c", {"artifact": {"uri": uri, "sha256": sha}})).returncode == 0
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-c", "--timeout=60s")
    example_data.put_bytes(b"not the model", uri)

    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-a", "--timeout=60s")
    assert kube.apply(_doc("WebService", "svc", {"model": "m-a"})).returncode == 0
    assert kube.apply(_doc("Endpoint", "ep3", {"webService": "svc", "model": "m-a"})).returncode == 0
    wait_until("ep3 serving m-a", lambda: endpoint_ready(kube, "ep3", "m-a"), 180)
    ip = cluster_ip(kube, "ep3")
    key = secret_key(kube, "ep3")
    kube.run("patch", "endpoints.kstudio.io", "ep3", "--type=merge", "-p", '{"spec":{"model":"m-c"}}')
    stalled = wait_until(
        "ep3 Stalled", lambda: (s := kube.status("endpoint", "ep3")).get("phase") == "Stalled" and s, 120
    )
    assert stalled["model"] == "m-a"
    ready = condition(stalled, "Ready")
    assert ready is not None and ready["status"] == "True" and "m-c" in ready["message"], ready
    assert "sha256" in ready["message"] or "exit code 2" in ready["message"], ready["message"]
    assert any(e["reason"] == "RolloutStalled" for e in kube.events("ep3"))
    code, body = infer(local_cluster, ip, key, "ep3")
    assert code == 200 and json.loads(body)["model_version"] == models["m-a"]

    kube.run("patch", "endpoints.kstudio.io", "ep3", "--type=merge", "-p", '{"spec":{"model":"m-a"}}')
    wait_until("ep3 Ready on m-a again", lambda: endpoint_ready(kube, "ep3", "m-a"), 120)

    def pods_on_m_c() -> list[str]:
        pods = kube.items("pods", "kstudio.io/endpoint=ep3")
        return [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["annotations"].get("kstudio.io/model") == "m-c"
        ]

    wait_until("the m-c pods to go", lambda: not pods_on_m_c(), 60)


@QUICK_RESYNC
def test_rotating_one_key_keeps_the_other_working_and_keys_are_per_endpoint(
    kube: Kubectl, operator: OperatorProcess, models: dict[str, str], local_cluster: Any
) -> None:
    kube.run("wait", "--for=condition=Ready", "trainedmodel/m-a", "--timeout=60s")
    assert kube.apply(_doc("WebService", "svc", {"model": "m-a"})).returncode == 0
    assert kube.apply(_doc("Endpoint", "ep4", {"webService": "svc", "model": "m-a"})).returncode == 0
    wait_until("svc-default serving", lambda: endpoint_ready(kube, "svc-default", "m-a"), 180)
    wait_until("ep4 serving", lambda: endpoint_ready(kube, "ep4", "m-a"), 180)
    ip_default, ip4 = cluster_ip(kube, "svc-default"), cluster_ip(kube, "ep4")
    primary, secondary = secret_key(kube, "ep4"), secret_key(kube, "ep4", "secondaryKey")
    wait_until("ep4 answers", lambda: infer(local_cluster, ip4, primary, "ep4")[0] == 200, 30)
    assert infer(local_cluster, ip4, secondary, "ep4")[0] == 200
    assert (
        infer(local_cluster, ip_default, primary, "svc-default")[0] == 401
    )  # endpoint A's key on endpoint B

    kube.run("annotate", "endpoints.kstudio.io", "ep4", "kstudio.io/rotate-key=secondaryKey/1")
    wait_until("a new secondary key", lambda: secret_key(kube, "ep4", "secondaryKey") != secondary, 30)
    new_secondary = secret_key(kube, "ep4", "secondaryKey")
    assert secret_key(kube, "ep4") == primary
    wait_until("the old secondary refused", lambda: infer(local_cluster, ip4, secondary, "ep4")[0] == 401, 60)
    assert infer(local_cluster, ip4, new_secondary, "ep4")[0] == 200
    assert infer(local_cluster, ip4, primary, "ep4")[0] == 200
    assert any(e["reason"] == "KeyRotated" for e in kube.events("ep4"))

    # The primary key, likewise; the (new) secondary keeps working.
    kube.run("annotate", "--overwrite", "endpoints.kstudio.io", "ep4", "kstudio.io/rotate-key=primaryKey/2")
    wait_until("a new primary key", lambda: secret_key(kube, "ep4") != primary, 30)
    new_primary = secret_key(kube, "ep4")
    assert secret_key(kube, "ep4", "secondaryKey") == new_secondary
    wait_until("the old primary refused", lambda: infer(local_cluster, ip4, primary, "ep4")[0] == 401, 60)
    assert infer(local_cluster, ip4, new_primary, "ep4")[0] == 200
    assert infer(local_cluster, ip4, new_secondary, "ep4")[0] == 200

    # A token is handled once: the Endpoint reconciled again (touched, and resynced) rotates nothing.
    again = reconciled_again(operator, "Endpoint", 6)
    kube.run("annotate", "endpoints.kstudio.io", "ep4", "touched=again")
    wait_until("ep4 reconciled again", again, 30)
    assert (secret_key(kube, "ep4"), secret_key(kube, "ep4", "secondaryKey")) == (new_primary, new_secondary)
    assert [e["reason"] for e in kube.events("ep4")].count("KeyRotated") == 2

    # A request naming no key is refused with an Event, and changes no key.
    kube.run("annotate", "--overwrite", "endpoints.kstudio.io", "ep4", "kstudio.io/rotate-key=tertiaryKey/3")
    invalid = wait_until(
        "InvalidRotation",
        lambda: next((e for e in kube.events("ep4") if e["reason"] == "InvalidRotation"), None),
        30,
    )
    assert invalid["type"] == "Warning" and "tertiaryKey/3" in invalid["message"]
    assert (secret_key(kube, "ep4"), secret_key(kube, "ep4", "secondaryKey")) == (new_primary, new_secondary)

    everything = kube.run("get", "endpoints.kstudio.io,webservices,events", "-o", "json").stdout
    everything += json.dumps(kube.get("endpoints.kstudio.io", "ep4"))
    for key in (primary, secondary, new_secondary, new_primary):
        assert key not in everything and key not in operator.log_tail(100_000)
