"""CRDs generated from the pydantic models: structural, validated, and identical to the committed copies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstudio_operator import crdgen
from kstudio_operator.resources import ALL_KINDS

REPO = Path(__file__).resolve().parents[2]


def _crds() -> dict[str, dict[str, Any]]:
    return {name: yaml.safe_load(text) for name, text in crdgen.render_all().items()}


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def _schema(kind: str) -> dict[str, Any]:
    crd = _crds()[f"kstudio.io_{kind}.yaml"]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("directory", ["crds", "charts/kstudio/crds"])
def test_committed_crds_match_the_models(directory: str) -> None:
    problems = crdgen.drift(REPO / directory, crdgen.render_all())
    assert problems == [], "run `make crds`: " + "; ".join(problems)


def test_check_mode_reports_a_stale_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--out-dir", str(tmp_path), "--chart-dir", "-"]) == 0
    stale = tmp_path / "kstudio.io_trainedmodels.yaml"
    stale.write_text(stale.read_text().replace("^[0-9a-f]{64}$", "^.*$"))
    assert crdgen.main(["--check", "--out-dir", str(tmp_path), "--chart-dir", "-"]) == 1
    assert "kstudio.io_trainedmodels.yaml: differs from the models" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(crdgen.render_all()))
def test_every_schema_node_is_structural(name: str) -> None:
    root = _crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(root):
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "const", "propertyNames", "$defs"):
            assert banned not in node, f"{name}{path}: {banned}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{name}{path} has no type"
        assert node.get("default", 0) is not None, f"{name}{path}: null default"
        if "default" in node and "pattern" in node:  # the API server validates defaults; pydantic does not
            assert re.match(node["pattern"], node["default"]), f"{name}{path}: default breaks the pattern"
        if "default" in node and "enum" in node:
            assert node["default"] in node["enum"], f"{name}{path}: default not in enum"


def test_kinds_have_category_short_names_and_status_subresource() -> None:
    crds = _crds()
    short = {}
    for crd in crds.values():
        names = crd["spec"]["names"]
        assert names["categories"] == ["kstudio"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
        short[names["kind"]] = names["shortNames"]
    assert short == {
        "Experiment": ["kexp"],
        "TrainedModel": ["ktm"],
        "WebService": ["kws"],
        "Endpoint": ["kep"],
        "BatchJob": ["kbj"],
    }
    # Core Kubernetes and KServe already use these.
    taken = {"ep", "tm", "ws", "exp", "svc", "isvc"}
    assert not taken & {s for names in short.values() for s in names}


def test_trainedmodel_digest_is_64_lowercase_hex_and_spec_is_immutable() -> None:
    schema = _schema("trainedmodels")
    sha = schema["properties"]["spec"]["properties"]["artifact"]["properties"]["sha256"]
    assert sha["pattern"] == "^[0-9a-f]{64}$"
    rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf"}.items() <= rules[0].items()


def test_webservice_model_and_model_from_are_mutually_exclusive() -> None:
    rules = _schema("webservices")["properties"]["spec"]["x-kubernetes-validations"]
    assert any(r["rule"] == "!(has(self.model) && has(self.modelFrom))" for r in rules)


def test_batchjob_spec_is_immutable_and_its_exclusive_fields_are_checked_by_cel() -> None:
    schema = _schema("batchjobs")
    spec = schema["properties"]["spec"]
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert {
        "self == oldSelf",
        "has(self.model) != has(self.endpoint)",
        "!(has(self.shards) && has(self.rowsPerShard))",
    } <= rules
    assert (
        spec["properties"]["input"]["x-kubernetes-validations"][0]["rule"]
        == "has(self.uri) != has(self.uris)"
    )
    assert "self.format == 'csv'" in spec["properties"]["output"]["x-kubernetes-validations"][0]["rule"]
    assert spec["properties"]["shards"]["maximum"] == 1000
    assert spec["properties"]["output"]["properties"]["uri"]["pattern"].endswith("/)?$")


def test_experiment_bounds_and_enums() -> None:
    spec = _schema("experiments")["properties"]["spec"]["properties"]
    assert spec["task"]["enum"] == ["classification", "regression", "transform"]
    assert "RandomForestClassifier" in spec["algorithm"]["properties"]["name"]["enum"]
    fraction = spec["evaluation"]["properties"]["testFraction"]
    assert (fraction["minimum"], fraction["maximum"]) == (0.05, 0.5)
    assert spec["backoffLimit"]["maximum"] == 5
    assert spec["historyLimit"]["minimum"] == 1
    # Free-form estimator parameters survive pruning; the trainer checks them.
    assert spec["algorithm"]["properties"]["params"]["x-kubernetes-preserve-unknown-fields"] is True


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for kind in ("experiments", "trainedmodels", "webservices", "endpoints"):
        conditions = _schema(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_printer_columns_point_at_schema_fields(kind: Any) -> None:
    crd = crdgen.build_crd(kind)
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = root
        for part in column["jsonPath"].strip(".").split("."):
            assert part in node.get("properties", {}), f"{kind.kind} column {column['name']}: {part}"
            node = node["properties"][part]
        expected = {"string": "string", "integer": "integer", "number": "number"}[column["type"]]
        assert node["type"] == expected


def _undocumented_fields(root: dict[str, Any]) -> list[str]:
    """Paths of the named fields (object properties, at any depth, in list items and map values) whose
    schema has no description: what `kubectl explain <kind>.<path>` would show without a word."""
    return [
        path
        for path, node in _walk(root)
        if path
        and path != ".metadata"  # ObjectMeta: the API server's schema documents it (see below)
        and not path.endswith(("[]", "{}"))
        and not (node.get("description") or "").strip()
    ]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_metadata_schema_is_what_the_api_server_accepts(kind: Any) -> None:
    """Anything but `type` under metadata (a description included) makes the API server refuse the whole
    CRD: "properties[metadata]: Forbidden: must not specify anything other than name and generateName"."""
    root = crdgen.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_kubectl_explain_documents_every_field_of_spec_and_status(kind: Any) -> None:
    root = crdgen.build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [f"{kind.kind}{path}" for path in _undocumented_fields(root)]
    assert missing == [], f"{len(missing)} field(s) without a description: {', '.join(missing)}"
