"""`make demo`: the whole kstudio lifecycle on the local cluster, with real data, printed as it happens.

Setup: upload the example datasets to the cluster's MinIO, install the CRDs, create namespace kstudio-demo
(Pod Security `restricted`) with the storage Secret, run the operator as a local process, and delete what
an earlier demo left, so every run tells the same story:

train penguins on the 2007-2008 field seasons → TrainedModel penguins-1 → WebService penguins (default
Endpoint penguins-default) → score through the Service (RRS /score and OIP V2, with the generated key) →
Endpoint ep2 → retrain on all three seasons → penguins-2 → patch ep2 to penguins-2 (rolling, zero downtime)
→ the default endpoint and ep2 answer from different models → roll ep2 back → `kubectl get kstudio`.

The console (`kstudio console`, read-only) starts next to the operator and its URL on this machine is
printed at once, so the whole story can be watched in a browser as it happens: run history, reports,
promotions, rollouts, the Test form. It runs inside the cluster's network namespace (so its Test form
reaches the endpoints' Services, as from a pod) while it listens on this machine's loopback (a socket
opened here and handed to it), and it keeps running after the demo until `make cluster-down`.

The operator is stopped at the end; the objects and scorer pods stay, and the last lines say how to use
kubectl and curl against them. Needs a running cluster (`make cluster-up`, which `make demo` runs first).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"
KSTUDIO_DEV = REPO / ".venv" / "bin" / "kstudio-dev"  # dev tools: the example datasets
NAMESPACE = "kstudio-demo"
CONSOLE_PORT = 8090  # on 127.0.0.1; another free port when it is taken


RRS = {
    "Inputs": {
        "input1": [
            {
                "bill_length_mm": 46.5,
                "bill_depth_mm": 17.9,
                "flipper_length_mm": 192,
                "body_mass_g": 3500,
                "island": "Dream",
                "sex": "female",
            }
        ]
    },
    "GlobalParameters": {},
}
V2 = {
    "inputs": [
        {"name": "bill_length_mm", "shape": [1], "datatype": "FP64", "data": [46.5]},
        {"name": "bill_depth_mm", "shape": [1], "datatype": "FP64", "data": [17.9]},
        {"name": "flipper_length_mm", "shape": [1], "datatype": "FP64", "data": [192]},
        {"name": "body_mass_g", "shape": [1], "datatype": "FP64", "data": [3500]},
        {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Dream"]},
        {"name": "sex", "shape": [1], "datatype": "BYTES", "data": ["female"]},
    ]
}
Kubectl = Callable[..., str]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def wait(what: str, probe: Callable[[], Any], timeout: float = 300.0, log: Path | None = None) -> Any:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = probe()
        if value:
            print(f"   {what}: {time.monotonic() - started:.1f} s")
            return value
        time.sleep(1)
    raise SystemExit(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f"; operator log: {log}" if log else "")
    )


def status(kubectl: Kubectl, kind: str, name: str) -> dict[str, Any]:
    out = kubectl("-n", NAMESPACE, "get", kind, name, "-o", "json", "--ignore-not-found")
    return dict(json.loads(out).get("status") or {}) if out.strip() else {}


def trained(kubectl: Kubectl, experiment: str, run: int, log: Path) -> str:
    """Wait for run `run` of the Experiment to leave a Ready TrainedModel; its name."""
    name = f"{experiment}-{run}"

    def done() -> bool:
        runs = {r["run"]: r for r in status(kubectl, "experiment", experiment).get("runs") or []}
        if runs.get(run, {}).get("phase") == "Failed":
            raise SystemExit(f"run {run} failed: {runs[run].get('reason')}: {runs[run].get('message')}")
        return status(kubectl, "trainedmodel", name).get("phase") == "Ready"

    wait(f"TrainedModel {name} Ready", done, 600, log)
    st = status(kubectl, "trainedmodel", name)
    inputs = ", ".join(c["name"] for c in st.get("inputSchema", []))
    print(f"   {name}: {st.get('headlineMetric')}, inputs {inputs}")
    return name


def serving(kubectl: Kubectl, endpoint: str, model: str, log: Path) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = status(kubectl, "endpoints.kstudio.io", endpoint)
        return st if st.get("phase") == "Ready" and st.get("model") == model else None

    st: dict[str, Any] = wait(f"Endpoint {endpoint} serving {model}", ready, 300, log)
    digest = str(st["modelDigest"])[:12]
    print(f"   {endpoint}: {st['model']} sha256 {digest}..., {st['readyReplicas']} ready, {st['url']}")
    return st


def _rounded(value: Any) -> Any:
    """A probability, or (RRS "Scored Probabilities") a class -> probability mapping, to 3 decimals."""
    return {k: round(v, 3) for k, v in value.items()} if isinstance(value, dict) else round(value, 3)


def score(kubectl: Kubectl, netns_name: str, endpoint: str) -> tuple[str, str]:
    """RRS and OIP V2 through the endpoint's Service with its primary key: (label, model digest)."""
    from kstudio_localcluster import netns

    ip = json.loads(kubectl("-n", NAMESPACE, "get", "service", endpoint, "-o", "json"))["spec"]["clusterIP"]
    secret = json.loads(kubectl("-n", NAMESPACE, "get", "secret", f"{endpoint}-keys", "-o", "json"))
    key = base64.b64decode(secret["data"]["primaryKey"]).decode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(path: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        try:
            code, body = netns.http_request(
                netns_name, "POST", f"http://{ip}{path}", json.dumps(doc).encode(), headers
            )
        except OSError:
            return None
        return dict(json.loads(body)) if code == 200 else None

    rrs = wait(f"{endpoint} /score", lambda: post("/score", RRS), 30)
    v2 = post(f"/v2/models/{endpoint}/infer", V2) or {}
    row = rrs["Results"]["output1"][0]
    label = row["Scored Labels"]
    probabilities = {k: _rounded(v) for k, v in row.items() if k.startswith("Scored Prob")}
    print(f"   POST http://{ip}/score -> Scored Labels {label!r}, probabilities {probabilities}")
    version = str(v2.get("model_version"))[:12]
    outputs = [o["name"] for o in v2.get("outputs", [])]
    print(f"   POST http://{ip}/v2/models/{endpoint}/infer -> model_version {version}..., outputs {outputs}")
    return str(label), str(v2.get("model_version"))


def lifecycle(kubectl: Kubectl, netns_name: str, log: Path) -> None:
    step("train: the penguins Experiment on the 2007-2008 field seasons")
    doc = yaml.safe_load((REPO / "examples" / "penguins" / "experiment.yaml").read_text())
    doc["spec"]["dataset"]["uri"] = "s3://datasets/penguins-2007-2008.csv"
    print(kubectl("-n", NAMESPACE, "apply", "-f", "-", input=json.dumps(doc)), end="")
    first = trained(kubectl, "penguins", 1, log)

    step(f"deploy: WebService penguins serving {first} (its default Endpoint follows it)")
    kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "penguins" / "webservice.yaml"))
    serving(kubectl, "penguins-default", first, log)
    score(kubectl, netns_name, "penguins-default")

    step(f"add Endpoint ep2, pinned to {first}, with its own keys")
    kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "penguins" / "endpoint-ep2.yaml"))
    serving(kubectl, "ep2", first, log)

    step("retrain on new data: all three field seasons (2007-2009)")
    patch = {"spec": {"dataset": {"uri": "s3://datasets/penguins.csv"}}}
    kubectl("-n", NAMESPACE, "patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(patch))
    second = trained(kubectl, "penguins", 2, log)

    step(f"patch ep2 to {second}: a rolling update, the old pods serve until the new ones are ready")
    started = time.monotonic()
    kubectl(
        "-n",
        NAMESPACE,
        "patch",
        "endpoints.kstudio.io",
        "ep2",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"model": second}}),
    )
    st = serving(kubectl, "ep2", second, log)
    print(
        f"   rollout {st['rollout']['from']} -> {st['rollout']['to']}: {st['rollout']['seconds']} s "
        f"(status shown {time.monotonic() - started:.1f} s after the patch)"
    )

    step("the default endpoint and ep2 answer from different models")
    _, default_digest = score(kubectl, netns_name, "penguins-default")
    _, ep2_digest = score(kubectl, netns_name, "ep2")
    print(
        f"   penguins-default: {default_digest[:12]}...  ep2: {ep2_digest[:12]}...  "
        f"{'different' if default_digest != ep2_digest else 'THE SAME (unexpected)'}"
    )

    step(f"roll ep2 back to {first}")
    kubectl(
        "-n",
        NAMESPACE,
        "patch",
        "endpoints.kstudio.io",
        "ep2",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"model": first}}),
    )
    serving(kubectl, "ep2", first, log)

    step(f"kubectl -n {NAMESPACE} get kstudio")
    print(kubectl("-n", NAMESPACE, "get", "kstudio"), end="")


def _stop_earlier_console(pidfile: Path) -> None:
    """The console an earlier demo left running (only that process: its pid and command line match)."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if b"console" not in cmdline or not any(part.endswith(b"kstudio") for part in cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", CONSOLE_PORT))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def start_console(layout: ClusterLayout, minio: dict[str, str]) -> str:
    """`kstudio console -n kstudio-demo` inside the cluster's network namespace, serving on a socket of
    this machine's loopback; its URL once it has read the cluster."""
    from kstudio_localcluster.layout import API_PORT

    pidfile = layout.root / "demo-console.pid"
    _stop_earlier_console(pidfile)
    # Inside the namespace the API server is at its own port, not at this machine's forward.
    config = yaml.safe_load(layout.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{API_PORT}"
    kubeconfig = layout.root / "demo-console.kubeconfig"
    kubeconfig.touch(mode=0o600)
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "KSTUDIO_S3_ENDPOINT": minio["podEndpoint"],
            "KSTUDIO_S3_ACCESS_KEY": minio["accessKey"],
            "KSTUDIO_S3_SECRET_KEY": minio["secretKey"],
        }
    )
    sock = _listening_socket()
    fd = sock.fileno()
    log_path = layout.root / "demo-console.log"
    with log_path.open("ab") as log:
        console = subprocess.Popen(
            ["ip", "netns", "exec", layout.netns, str(KSTUDIO), "console", "-n", NAMESPACE, "--fd", str(fd)],
            env=env,
            stdout=log,
            stderr=log,
            pass_fds=(fd,),
            start_new_session=True,  # outlives the demo; `make cluster-down` stops it with the namespace
        )
    port = int(sock.getsockname()[1])
    sock.close()
    pidfile.write_text(str(console.pid))

    def ready() -> bool:
        if console.poll() is not None:
            raise SystemExit(f"the console exited ({console.returncode}); log: {log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    wait("console ready", ready, 120, log_path)
    return f"http://127.0.0.1:{port}/ns/{NAMESPACE}/"


def main() -> int:
    layout = ClusterLayout()
    if not layout.kubeconfig.exists() or not layout.minio_json.exists():
        print("no local cluster: run `make cluster-up` first", file=sys.stderr)
        return 1
    bin_dir = Path(
        subprocess.run(
            ["bash", str(REPO / "hack" / "build-binaries.sh")], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    minio = json.loads(layout.minio_json.read_text())
    env = {**os.environ, "KUBECONFIG": str(layout.kubeconfig)}
    storage_env = {
        "KSTUDIO_S3_ENDPOINT": minio["hostEndpoint"],
        "KSTUDIO_S3_ACCESS_KEY": minio["accessKey"],
        "KSTUDIO_S3_SECRET_KEY": minio["secretKey"],
    }

    def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [str(bin_dir / "kubectl"), *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    step("upload the example datasets")
    subprocess.run([str(KSTUDIO_DEV), "upload-examples"], env={**env, **storage_env}, check=True)

    step("install the CRDs")
    print(kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")), end="")
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=kstudio",
    )

    step(f"namespace {NAMESPACE} (restricted) and the storage Secret")
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("label", "--overwrite", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    secret = kubectl(
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "kstudio-s3",
        "--dry-run=client",
        "-o",
        "json",
        f"--from-literal=accessKey={minio['accessKey']}",
        f"--from-literal=secretKey={minio['secretKey']}",
    )
    kubectl("apply", "-f", "-", input=secret)

    step("start the operator")
    log_path = layout.root / "demo-operator.log"
    # The local cluster runs this checkout for any `kstudio` image; name the development one explicitly.
    operator_env = {
        **env,
        **storage_env,
        "KSTUDIO_S3_POD_ENDPOINT": minio["podEndpoint"],
        "KSTUDIO_IMAGE": "kstudio:dev",
    }
    with log_path.open("ab") as log:
        operator = subprocess.Popen(
            [str(KSTUDIO), "operator", "--namespace", NAMESPACE], env=operator_env, stdout=log, stderr=log
        )
    print(f"pid {operator.pid}, log {log_path}")
    step("start the console (read-only)")
    console_url = start_console(layout, minio)
    print(f"   open {console_url} in a browser on this machine")
    try:
        step("clean up what an earlier demo left")
        for kinds in ("webservices,endpoints.kstudio.io", "experiments", "trainedmodels"):
            kubectl("-n", NAMESPACE, "delete", kinds, "--all", "--wait=true", "--timeout=120s")
        lifecycle(kubectl, layout.netns, log_path)
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
    print(f"""
operator stopped; the objects and the scorer pods stay in namespace {NAMESPACE}. To look around:
  eval "$(.venv/bin/kstudio-dev cluster up)"  # KUBECONFIG and kubectl on PATH (reuses the running cluster)
  kubectl -n {NAMESPACE} get kstudio
  .venv/bin/kstudio operator -n {NAMESPACE}    # the operator again (patch ep2, retrain, ...)
  KEY=$(kubectl -n {NAMESPACE} get secret ep2-keys -o jsonpath='{{.data.primaryKey}}' | base64 -d)
  IP=$(kubectl -n {NAMESPACE} get service ep2 -o jsonpath='{{.spec.clusterIP}}')
  ip netns exec {layout.netns} curl -s -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
      -d '{json.dumps(RRS)}' http://$IP/score
  make cluster-down                                # stops everything (the console too)

console (read-only, refreshes by itself): {console_url}
  log {layout.root / "demo-console.log"}; its Test form takes the key printed by the KEY=... line above""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
