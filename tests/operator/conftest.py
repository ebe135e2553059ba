"""Fixtures of the operator tier: CRDs on the local cluster, example data in its MinIO, a namespace with the
storage Secret, and the operator running as a real process watching that namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operator_support import REPO, Kubectl, OperatorProcess, operator_env
from serving_kit import import_model

from fixtures.operator_process import allowed_patterns, fail_on


@pytest.fixture(scope="session")
def kstudio_crds(local_cluster: Any) -> None:
    """The generated CRDs, applied and served (LocalCluster.install_crds)."""
    local_cluster.install_crds(REPO / "crds")


@pytest.fixture(scope="session")
def example_data(local_cluster: Any) -> Any:
    """penguins.csv and diabetes.csv in the cluster's MinIO (what `kstudio-dev upload-examples` does)."""
    from kstudio_core.storage import ObjectStore
    from kstudio_devtools.examples import upload_examples

    store = ObjectStore(local_cluster.storage_settings())
    upload_examples(store)
    store.ensure_bucket("models")
    return store


@pytest.fixture
def namespace(kube_namespace: str, local_cluster: Any, kstudio_crds: None, example_data: Any) -> str:
    """A restricted namespace with the Secret that training Jobs mount (keys never leave Secrets)."""
    minio = local_cluster.minio
    local_cluster.kubectl(
        "-n",
        kube_namespace,
        "create",
        "secret",
        "generic",
        "kstudio-s3",
        f"--from-literal=accessKey={minio.access_key}",
        f"--from-literal=secretKey={minio.secret_key}",
    )
    return kube_namespace


@pytest.fixture
def kube(local_cluster: Any, namespace: str) -> Kubectl:
    return Kubectl(local_cluster, namespace)


@pytest.fixture
def models(tmp_path: Path, example_data: Any, namespace: str, kube: Kubectl) -> dict[str, str]:
    """Three TrainedModels in the namespace: m-a, m-b (same schema, different answers) and m-bad (its
    recorded digest does not match the file: scorer pods refuse to load it). name → sha256."""
    return {
        name: import_model(kube, example_data, namespace, tmp_path, name, flip)
        for name, flip in (("m-a", False), ("m-b", True))
    }


@pytest.fixture
def operator(
    local_cluster: Any, namespace: str, kube: Kubectl, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The operator as a process watching the test's namespace (`@pytest.mark.operator_env(NAME="value")`
    adds to its environment). The test fails (at teardown) when the
    operator exited unexpectedly, logged a traceback or an error, or counted a reconcile error or retry
    (fixtures/operator_process.py), unless the test's `operator_allows` marker names it."""
    env = operator_env(local_cluster)
    for mark in request.node.iter_markers("operator_env"):  # e.g. a short resync for a negative check
        env.update(mark.kwargs)
    proc = OperatorProcess(env, namespace, tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        # A test may end with the operator stopped on purpose; one that died is reported, not restarted.
        if not proc.running and proc.ended_by_test and not proc.exits:
            proc.start()
        mark = proc.cleanup_mark()
        if proc.running:
            # Delete our objects while the operator runs, so their finalizers are honoured and the
            # namespace can go; whatever is left (e.g. a test that blocked deletion) is released by hand.
            for kind in ("webservices", "endpoints.kstudio.io", "experiments", "trainedmodels"):
                kube.run("delete", kind, "--all", "--wait=false", check=False)
            for kind in ("experiments", "trainedmodels"):
                kube.run("wait", "--for=delete", kind, "--all", "--timeout=30s", check=False)
        proc.stop()
        kube.release_finalizers("experiments", "trainedmodels", "webservices", "endpoints.kstudio.io")
        problems = proc.problems(allowed_patterns(request), mark)
        if request.node.stash.get(_FAILED, False):  # the test's own failure comes first; add what we saw
            listed = "".join(f"\n  {p}" for p in problems)
            print(f"--- operator problems:{listed or ' none'}")
            print(f"--- operator log ({proc.log_path}) ---\n{proc.log_tail(120)}")
        else:
            fail_on(problems, proc.log_tail(80))


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report
