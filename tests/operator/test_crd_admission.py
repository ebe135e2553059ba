"""The generated CRDs on a real API server: installed with their names and category, and bad objects
refused at admission with a message that names the problem (no operator needed for any of this)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_support import Kubectl, experiment_manifest, trained_model_manifest

pytestmark = pytest.mark.cluster

DIGEST = "ab" * 32


def trained_model(name: str, sha256: str = DIGEST, **extra: Any) -> str:
    spec = {"artifact": {"uri": f"s3://models/imports/{name}.ilearner", "sha256": sha256}, **extra}
    return trained_model_manifest(name, spec)


def test_crds_install_with_short_names_and_the_kstudio_category(
    local_cluster: Any, kstudio_crds: None
) -> None:
    out = local_cluster.kubectl("api-resources", "--api-group=kstudio.io", "-o", "wide").stdout
    for plural, short in (
        ("experiments", "kexp"),
        ("trainedmodels", "ktm"),
        ("webservices", "kws"),
        ("endpoints", "kep"),
        ("batchjobs", "kbj"),
    ):
        line = next(line for line in out.splitlines() if line.startswith(plural))
        assert short in line.split() and "kstudio" in line, line


def test_wrong_type_is_refused_naming_the_field(kube: Kubectl) -> None:
    manifest = json.loads(experiment_manifest("typo"))
    manifest["spec"]["historyLimit"] = "ten"
    proc = kube.apply(json.dumps(manifest))
    assert proc.returncode != 0
    assert "spec.historyLimit" in proc.stderr and "integer" in proc.stderr, proc.stderr


def test_bad_digest_pattern_is_refused(kube: Kubectl) -> None:
    proc = kube.apply(trained_model("short-digest", sha256="abc123"))
    assert proc.returncode != 0
    assert "spec.artifact.sha256" in proc.stderr and "at least 64 chars" in proc.stderr, proc.stderr
    proc = kube.apply(trained_model("upper-digest", sha256="AB" * 32))
    assert proc.returncode != 0
    assert "spec.artifact.sha256" in proc.stderr and "^[0-9a-f]{64}$" in proc.stderr, proc.stderr


def test_trainedmodel_spec_cannot_change(kube: Kubectl) -> None:
    assert kube.apply(trained_model("pinned")).returncode == 0
    proc = kube.run(
        "patch",
        "trainedmodel",
        "pinned",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"artifact": {"sha256": "cd" * 32}}}),
        check=False,
    )
    assert proc.returncode != 0
    assert "TrainedModel spec is immutable" in proc.stderr, proc.stderr
    assert kube.get("trainedmodel", "pinned")["spec"]["artifact"]["sha256"] == DIGEST  # type: ignore[index]
    kube.run("delete", "trainedmodel", "pinned", "--wait=false")


def test_webservice_model_and_model_from_are_exclusive(kube: Kubectl) -> None:
    manifest = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "both"},
        "spec": {"model": "penguins-1", "modelFrom": {"experiment": "penguins"}},
    }
    proc = kube.apply(json.dumps(manifest))
    assert proc.returncode != 0
    assert "spec.model and spec.modelFrom are mutually exclusive" in proc.stderr, proc.stderr


def test_algorithm_must_fit_the_task(kube: Kubectl) -> None:
    proc = kube.apply(experiment_manifest("mismatch", algorithm={"name": "Ridge"}))
    assert proc.returncode != 0
    assert "does not match spec.task" in proc.stderr, proc.stderr


def test_unknown_algorithm_is_refused_listing_the_allowed_ones(kube: Kubectl) -> None:
    proc = kube.apply(experiment_manifest("evil", algorithm={"name": "os.system"}))
    assert proc.returncode != 0
    assert "spec.algorithm.name" in proc.stderr and "RandomForestClassifier" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"traffic": [{"model": "a", "weight": 90}, {"model": "b", "weight": 20}]}, "must sum to 100"),
        (
            {"traffic": [{"model": "a", "weight": 50}, {"model": "a", "weight": 50}]},
            "lists a model more than once",
        ),
        (
            {"model": "a", "traffic": [{"model": "a", "weight": 100}]},
            "spec.model and spec.traffic are mutually",
        ),
        (
            {"traffic": [{"model": "a", "weight": 101}, {"model": "b", "weight": -1}]},
            "spec.traffic[0].weight",
        ),
    ],
)
def test_a_traffic_split_that_cannot_be_served_is_refused_with_the_reason(
    kube: Kubectl, spec: dict[str, Any], words: str
) -> None:
    manifest = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "split"},
        "spec": {"webService": "svc", **spec},
    }
    proc = kube.apply(json.dumps(manifest))
    assert proc.returncode != 0
    assert words in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "spec",
    [
        {"traffic": [{"model": "a", "weight": 50}, {"model": "b", "weight": 50}], "mirror": {"model": "b"}},
        {"model": "a", "mirror": {"model": "a", "percent": 10}},
    ],
)
def test_a_mirror_that_also_answers_is_refused(kube: Kubectl, spec: dict[str, Any]) -> None:
    manifest = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "shadow"},
        "spec": {"webService": "svc", **spec},
    }
    proc = kube.apply(json.dumps(manifest))
    assert proc.returncode != 0
    assert "spec.mirror.model also answers requests" in proc.stderr, proc.stderr


def test_a_transform_with_an_algorithm_and_a_model_without_one_are_refused(kube: Kubectl) -> None:
    transform = json.loads(experiment_manifest("prep", task="transform"))
    proc = kube.apply(json.dumps(transform))
    assert proc.returncode != 0
    assert "a transform fits preprocessing only" in proc.stderr, proc.stderr
    spec = {k: v for k, v in transform["spec"].items() if k not in ("label", "algorithm", "evaluation")}
    assert kube.apply(json.dumps(transform | {"spec": spec})).returncode == 0
    model = json.loads(experiment_manifest("nolabel"))
    del model["spec"]["algorithm"]
    proc = kube.apply(json.dumps(model))
    assert proc.returncode != 0
    assert "classification and regression need spec.label and spec.algorithm" in proc.stderr, proc.stderr
