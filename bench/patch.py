"""Model patch under load on the local cluster: a 2-replica Endpoint, a client at a fixed rate through its
Service (inside the cluster's network namespace), then `kubectl patch` of the Endpoint's model.

Prints, per run: seconds from the patch to the first and to the last-needed response of the new model
(after which every response came from it), seconds until the Endpoint's status showed the new digest, and
the count of non-2xx and transport errors. Targets: <= 5 s to 100 %, 0 failed.

Usage: .venv/bin/python bench/patch.py [--runs 3] [--rate 60]
Needs the local cluster (`make cluster-up`); uses namespace kstudio-bench-patch and deletes it after.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_kit import Cluster, Operator  # noqa: E402
from serving_kit import LOADGEN, build_model  # noqa: E402

NS = "kstudio-bench-patch"


def doc(kind: str, name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def wait(what: str, probe, timeout: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=60.0, help="client requests per second")
    args = parser.parse_args()
    cluster = Cluster()
    kubectl = cluster.kubectl
    cluster.fresh_namespace(NS)
    store = cluster.store()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kstudio-patch-") as tmp:
        shas = {}
        for name, flip in (("m-a", False), ("m-b", True)):
            path = Path(tmp) / f"{name}.ilearner"
            shas[name] = build_model(path, flip)
            uri = f"s3://models/{NS}/{name}.ilearner"
            store.upload(path, uri)
            kubectl(
                "-n",
                NS,
                "apply",
                "-f",
                "-",
                input=doc("TrainedModel", name, {"artifact": {"uri": uri, "sha256": shas[name]}}),
            )
        operator = Operator(cluster, NS, Path(tmp) / "operator.log")
        operator.start()
        try:
            kubectl(
                "-n",
                NS,
                "apply",
                "-f",
                "-",
                input=doc("WebService", "svc", {"model": "m-a", "scorer": {"replicas": 1}}),
            )
            kubectl(
                "-n",
                NS,
                "apply",
                "-f",
                "-",
                input=doc("Endpoint", "ep2", {"webService": "svc", "model": "m-a", "replicas": 2}),
            )
            current, other = "m-a", "m-b"

            def status() -> dict[str, object]:
                return (
                    json.loads(kubectl("-n", NS, "get", "endpoints.kstudio.io", "ep2", "-o", "json")).get(
                        "status"
                    )
                    or {}
                )

            wait(
                "ep2 serving m-a",
                lambda: status().get("phase") == "Ready" and status().get("model") == current,
            )
            ip = json.loads(kubectl("-n", NS, "get", "service", "ep2", "-o", "json"))["spec"]["clusterIP"]
            key = base64.b64decode(
                json.loads(kubectl("-n", NS, "get", "secret", "ep2-keys", "-o", "json"))["data"]["primaryKey"]
            ).decode()
            for run in range(args.runs):
                gen = subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        cluster.layout.netns,
                        sys.executable,
                        "-c",
                        LOADGEN,
                        ip,
                        key,
                        str(args.rate),
                        "ep2",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert gen.stdout is not None
                t0 = float(gen.stdout.readline().split()[1])
                time.sleep(3)
                patched = time.monotonic() - t0
                kubectl(
                    "-n",
                    NS,
                    "patch",
                    "endpoints.kstudio.io",
                    "ep2",
                    "--type=merge",
                    "-p",
                    json.dumps({"spec": {"model": other}}),
                )
                wait(
                    f"ep2 serving {other}",
                    lambda target=other: status().get("phase") == "Ready" and status().get("model") == target,
                )
                shown = time.monotonic() - t0
                time.sleep(3)
                out, _ = gen.communicate(input="", timeout=60)
                result = json.loads(out.strip().splitlines()[-1])
                answers = result["answers"]
                new = shas[other]
                first_new = next(t for t, v in answers if v == new)
                last_old = max((t for t, v in answers if v != new), default=patched)
                row = {
                    "run": run + 1,
                    "to": other,
                    "rate": (result["ok"] + result["failed"]) / result["seconds"],
                    "first_new_s": first_new - patched,
                    "all_new_s": max(last_old, first_new) - patched,
                    "status_s": shown - patched,
                    "failed": result["failed"],
                    "errors": result["errors"][:3],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                current, other = other, current
        finally:
            # The operator releases its finalizers; a namespace deleted without it stays Terminating.
            kinds = "webservices.kstudio.io,endpoints.kstudio.io,trainedmodels.kstudio.io"
            kubectl("-n", NS, "delete", kinds, "--all", "--wait=true", "--timeout=120s", check=False)
            operator.stop()
            kubectl("delete", "namespace", NS, "--wait=false", check=False)
    print("\n| run | to | req/s | first new s | 100% new s | status s | failed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['to']} | {r['rate']:.0f} | {r['first_new_s']:.2f} | {r['all_new_s']:.2f} | "
            f"{r['status_s']:.2f} | {r['failed']} |"
        )
    med = statistics.median(r["all_new_s"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    print(f"\nmedian patch -> 100% new model: {med:.2f} s; failed requests in all runs: {failed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
