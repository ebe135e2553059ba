"""TrainedModels: imports verified by digest, tampered ones refused, deletion blocked while in use."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from operator_support import (
    Kubectl,
    OperatorProcess,
    condition,
    experiment_manifest,
    operator_env,
    wait_until,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_experiment_runs import run_done

from fixtures.operator_process import allowed_patterns, fail_on
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_trainer.artifact_writer import write_ilearner

pytestmark = pytest.mark.cluster


def build_ilearner(path: Path) -> tuple[str, int]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name="x1", type="number"), ColumnSpec(name="x2", type="number")],
        classes=[0, 1],
        metrics={"accuracy": 0.95},
    )
    digest = write_ilearner(path, pipeline, manifest)
    return digest.sha256, digest.size_bytes


def trained_model(name: str, uri: str, sha256: str, **extra: Any) -> str:
    spec = {"artifact": {"uri": uri, "sha256": sha256}, **extra}
    return json.dumps(
        {
            "apiVersion": "kstudio.io/v1alpha1",
            "kind": "TrainedModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def phase(kube: Kubectl, name: str, wanted: str) -> dict[str, Any] | None:
    status = kube.status("trainedmodel", name)
    return status if status.get("phase") == wanted else None


@pytest.fixture
def imported(tmp_path: Path, example_data: Any, namespace: str) -> tuple[str, str, int]:
    """A real .ilearner uploaded to the cluster's MinIO: (uri, sha256, size)."""
    path = tmp_path / "good.ilearner"
    sha, size = build_ilearner(path)
    uri = f"s3://models/{namespace}/imports/good.ilearner"
    example_data.upload(path, uri)
    return uri, sha, size


def test_imported_model_is_verified_and_tampered_or_missing_ones_are_invalid(
    kube: Kubectl,
    operator: OperatorProcess,
    imported: tuple[str, str, int],
    example_data: Any,
    tmp_path: Path,
) -> None:
    uri, sha, size = imported
    assert kube.apply(trained_model("good", uri, sha)).returncode == 0
    kube.run("wait", "--for=condition=Ready", "trainedmodel/good", "--timeout=60s")
    status = kube.status("trainedmodel", "good")
    assert (status["phase"], status["task"], status["sizeBytes"]) == ("Ready", "classification", size)
    assert status["inputSchema"] == [{"name": "x1", "type": "number"}, {"name": "x2", "type": "number"}]
    assert status["metrics"] == {"accuracy": 0.95} and status["classes"] == [0, 1]

    # Same recorded digest, but the bytes in storage were changed.
    data = bytearray((tmp_path / "good.ilearner").read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered_uri = uri.replace("good.ilearner", "tampered.ilearner")
    example_data.put_bytes(bytes(data), tampered_uri)
    assert kube.apply(trained_model("tampered", tampered_uri, sha)).returncode == 0
    invalid = wait_until("tampered to be Invalid", lambda: phase(kube, "tampered", "Invalid"), timeout=60)
    assert invalid["reason"] == "DigestMismatch"
    assert sha in invalid["message"], invalid["message"]
    ready = condition(invalid, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "DigestMismatch"
    assert any(e["reason"] == "DigestMismatch" for e in kube.events("tampered"))

    missing_uri = uri.replace("good.ilearner", "nothing-here.ilearner")
    assert kube.apply(trained_model("missing", missing_uri, sha)).returncode == 0
    gone = wait_until("missing to be Invalid", lambda: phase(kube, "missing", "Invalid"), timeout=60)
    assert gone["reason"] == "ArtifactNotFound" and missing_uri in gone["message"]


def test_deleting_a_model_in_use_is_blocked_until_unreferenced(
    kube: Kubectl, operator: OperatorProcess, imported: tuple[str, str, int], example_data: Any
) -> None:
    uri, sha, _ = imported
    assert kube.apply(trained_model("good", uri, sha, artifactDeletionPolicy="Delete")).returncode == 0
    kube.run("wait", "--for=condition=Ready", "trainedmodel/good", "--timeout=60s")
    ws = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "svc"},
        "spec": {"model": "good"},
    }
    ep = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "ep2"},
        "spec": {"webService": "svc", "model": "good"},
    }
    assert kube.apply(json.dumps(ws)).returncode == 0
    assert kube.apply(json.dumps(ep)).returncode == 0
    wait_until(
        "usedBy",
        lambda: kube.status("trainedmodel", "good").get("usedBy") == ["Endpoint/ep2", "WebService/svc"],
        30,
    )

    kube.run("delete", "trainedmodel", "good", "--wait=false")

    def blocked_by(expected: str) -> dict[str, Any] | None:
        obj = kube.get("trainedmodel", "good")
        in_use = condition((obj or {}).get("status") or {}, "InUse")
        ok = obj and obj["metadata"].get("deletionTimestamp") and in_use and in_use["message"] == expected
        return obj if ok else None

    wait_until("InUse naming both", lambda: blocked_by("used by Endpoint/ep2, WebService/svc"), timeout=30)
    assert any(e["reason"] == "DeletionBlocked" for e in kube.events("good"))
    assert example_data.exists(uri)

    kube.run("delete", "webservice", "svc")
    wait_until("InUse naming the endpoint", lambda: blocked_by("used by Endpoint/ep2"), timeout=30)
    kube.run("delete", "endpoint", "ep2")
    wait_until("the model to be gone", lambda: kube.get("trainedmodel", "good") is None, timeout=30)
    # artifactDeletionPolicy: Delete removed the file too.
    wait_until("the artifact to be removed", lambda: not example_data.exists(uri), timeout=10)


def test_deleting_an_experiment_keeps_only_the_models_in_use(
    kube: Kubectl, operator: OperatorProcess
) -> None:
    assert kube.apply(experiment_manifest()).returncode == 0
    wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
    kube.run("annotate", "experiment", "penguins", "kstudio.io/run=again")
    wait_until("run 2", lambda: run_done(kube, 2), timeout=240)
    ws = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "svc"},
        "spec": {"model": "penguins-1"},
    }
    assert kube.apply(json.dumps(ws)).returncode == 0

    kube.run("delete", "experiment", "penguins", "--timeout=60s")
    wait_until("Jobs to be collected", lambda: kube.items("jobs") == [], timeout=60)
    models = [m["metadata"]["name"] for m in kube.items("trainedmodels")]
    assert models == ["penguins-1"]


def test_a_hand_made_model_is_never_taken_for_a_runs_model(
    kube: Kubectl, operator: OperatorProcess, imported: tuple[str, str, int]
) -> None:
    uri, sha, _ = imported
    assert kube.apply(trained_model("penguins-1", uri, sha)).returncode == 0
    assert kube.apply(experiment_manifest()).returncode == 0
    run = wait_until("run 1", lambda: run_done(kube, 1), timeout=240)
    assert (run["phase"], run["reason"]) == ("Failed", "NameConflict"), run
    assert any(e["reason"] == "RunFailed" and "NameConflict" in e["message"] for e in kube.events("penguins"))
    assert kube.get("trainedmodel", "penguins-1")["spec"]["artifact"]["uri"] == uri  # type: ignore[index]


def test_an_endpoint_created_after_the_model_marks_it_in_use_from_the_watch_not_a_timer(
    kube: Kubectl, operator: OperatorProcess, imported: tuple[str, str, int]
) -> None:
    """The operator runs with its default 300 s resync: only the Endpoint's watch event (through the
    model_users index) can mark the model InUse within the 15 s allowed here."""
    uri, sha, _ = imported
    assert kube.apply(trained_model("late", uri, sha)).returncode == 0
    kube.run("wait", "--for=condition=Ready", "trainedmodel/late", "--timeout=60s")
    assert kube.status("trainedmodel", "late").get("usedBy") in (None, [])
    ep = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "late-ep"},
        "spec": {"webService": "svc", "model": "late"},
    }
    assert kube.apply(json.dumps(ep)).returncode == 0
    wait_until(
        "usedBy", lambda: kube.status("trainedmodel", "late").get("usedBy") == ["Endpoint/late-ep"], 15
    )
    in_use = condition(kube.status("trainedmodel", "late"), "InUse")
    assert in_use is not None and (in_use["status"], in_use["reason"]) == ("True", "Referenced")
    kube.run("delete", "endpoint", "late-ep")
    wait_until("usedBy emptied", lambda: not kube.status("trainedmodel", "late").get("usedBy"), 15)


class StorageProxy:
    """127.0.0.1:<port> in front of the cluster's MinIO: forwards each connection, or, while `down`,
    accepts and drops it at once (the store unreachable), noting when each attempt came."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.down = True
        self.attempts: list[float] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.down:
                self.attempts.append(time.monotonic())
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
                conn.close()
                continue
            upstream = socket.create_connection(self.target, timeout=10)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def verification_bursts(attempts: list[float]) -> list[list[float]]:
    """The connections of one verification come together (the storage client retries at once or within
    a second); verifications are apart by the operator's backoff (2 s, 4 s, 8 s, ...)."""
    bursts: list[list[float]] = []
    for t in attempts:
        if bursts and t - bursts[-1][-1] < 1.5:
            bursts[-1].append(t)
        else:
            bursts.append([t])
    return bursts


def test_a_model_waits_for_unreachable_storage_backing_off_and_is_verified_when_it_is_back(
    kube: Kubectl,
    local_cluster: Any,
    namespace: str,
    imported: tuple[str, str, int],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The operator reaches the store through a proxy the test turns off and on again."""
    uri, sha, _ = imported
    proxy = StorageProxy(local_cluster.minio.host_endpoint)
    env = operator_env(local_cluster) | {"KSTUDIO_S3_ENDPOINT": f"127.0.0.1:{proxy.port}"}
    proc = OperatorProcess(env, namespace, tmp_path / "operator.log")
    proc.start()
    try:
        assert kube.apply(trained_model("good", uri, sha)).returncode == 0
        pending = wait_until(
            "good waiting for storage",
            lambda: (s := phase(kube, "good", "Pending")) and s.get("reason") == "StorageUnavailable" and s,
            timeout=60,
        )
        assert f"cannot read {uri}" in pending["message"], pending
        # It retries by itself, each time waiting longer (no hot loop, no wait for the 300 s resync).
        bursts = wait_until(
            "four verification attempts", lambda: len(b := verification_bursts(proxy.attempts)) >= 4 and b, 90
        )
        gaps = [later[0] - earlier[-1] for earlier, later in itertools.pairwise(bursts[:4])]
        # Each gap well over the one before (the Backoff doubles; a constant delay's gaps differ by
        # milliseconds and once passed `gaps[0] < gaps[1] < gaps[2]` by chance).
        assert all(b > 1.5 * a for a, b in itertools.pairwise(gaps)), gaps

        proxy.down = False
        ready = wait_until("good Ready once storage is back", lambda: phase(kube, "good", "Ready"), 90)
        assert ready["reason"] == "Verified" and ready["sizeBytes"] > 0
        kube.run("delete", "trainedmodel", "good", "--timeout=30s")
    finally:
        proc.stop()
        proxy.close()
        kube.release_finalizers("trainedmodels")
    fail_on(proc.problems(allowed_patterns(request)), proc.log_tail(80))
