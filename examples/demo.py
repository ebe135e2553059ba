"""`make demo`: the kstudio lifecycle on the local cluster, as far as it is built.

1. upload the example datasets to the cluster's MinIO (`kstudio upload-examples`);
2. install the CRDs (generated from the models in operator/kstudio_operator/resources);
3. create namespace kstudio-demo (Pod Security `restricted`) and the Secret kstudio-s3 that Jobs mount;
4. run the operator (`kstudio operator -n kstudio-demo`) as a local process;
5. apply examples/penguins/experiment.yaml, wait for TrainedModel penguins-1 to be Ready;
6. print the experiment's run history, the model's status, and `kubectl get kstudio`.

The operator is stopped at the end; the objects stay for you to look at (`kubectl -n kstudio-demo get kstudio`
with KUBECONFIG=~/.cache/kstudio/cluster/kubeconfig). Run it again at will: every step is idempotent.
Needs a running cluster (`make cluster-up`, which `make demo` runs first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[1]
KSTUDIO = REPO / ".venv" / "bin" / "kstudio"
NAMESPACE = "kstudio-demo"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


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
    subprocess.run([str(KSTUDIO), "upload-examples"], env={**env, **storage_env}, check=True)

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
    operator_env = {**env, **storage_env, "KSTUDIO_S3_POD_ENDPOINT": minio["podEndpoint"]}
    with log_path.open("ab") as log:
        operator = subprocess.Popen(
            [str(KSTUDIO), "operator", "--namespace", NAMESPACE], env=operator_env, stdout=log, stderr=log
        )
    print(f"pid {operator.pid}, log {log_path}")
    try:
        step("apply the penguins Experiment")
        print(
            kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "penguins" / "experiment.yaml")),
            end="",
        )

        step("wait for TrainedModel penguins-1 to be Ready")
        started = time.monotonic()
        while not kubectl(
            "-n", NAMESPACE, "get", "trainedmodel", "penguins-1", "--ignore-not-found", "-o", "name"
        ):
            status = json.loads(kubectl("-n", NAMESPACE, "get", "experiment", "penguins", "-o", "json")).get(
                "status", {}
            )
            last = (status.get("runs") or [{}])[-1]
            if last.get("phase") == "Failed":
                raise SystemExit(f"run {last.get('run')} failed: {last.get('reason')}: {last.get('message')}")
            if time.monotonic() - started > 300:
                raise SystemExit(f"no TrainedModel after 300 s; operator log: {log_path}")
            time.sleep(2)
        kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "trainedmodel/penguins-1", "--timeout=120s")
        print(f"ready after {time.monotonic() - started:.1f} s")

        step("run history")
        exp: dict[str, Any] = json.loads(
            kubectl("-n", NAMESPACE, "get", "experiment", "penguins", "-o", "json")
        )
        for run in exp["status"].get("runs", []):
            print(
                f"  run {run['run']}  generation {run['generation']}  {run['phase']:<9}  "
                f"{run.get('trainedModel') or '-':<12}  {json.dumps(run.get('metrics') or {})}"
            )
        step("TrainedModel penguins-1")
        model = json.loads(kubectl("-n", NAMESPACE, "get", "trainedmodel", "penguins-1", "-o", "json"))
        st = model["status"]
        print(f"  artifact  {model['spec']['artifact']['uri']}")
        print(f"  sha256    {model['spec']['artifact']['sha256']} ({st.get('sizeBytes')} bytes, verified)")
        print(f"  task      {st.get('task')}, label {st.get('label')}, classes {st.get('classes')}")
        print(f"  inputs    {', '.join(c['name'] + ':' + c['type'] for c in st.get('inputSchema', []))}")
        print(f"  metrics   {json.dumps(st.get('metrics'))}")

        step(f"kubectl -n {NAMESPACE} get kstudio")
        print(kubectl("-n", NAMESPACE, "get", "kstudio"), end="")
    finally:
        operator.terminate()
        try:
            operator.wait(20)
        except subprocess.TimeoutExpired:
            operator.kill()
    print("\noperator stopped; the objects stay in namespace", NAMESPACE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
