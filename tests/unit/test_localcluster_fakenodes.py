"""Pure parts of the fake nodes: the Node kwok manages, kwok's command line, its Stages, the build switch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kstudio_localcluster import components, fakenodes
from kstudio_localcluster.certs import ensure_pki
from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[2]


def test_a_fake_node_is_tainted_labelled_and_annotated_for_kwok() -> None:
    node = fakenodes.node_manifest(3)
    meta = node["metadata"]
    assert meta["name"] == "kwok-node-3"
    assert meta["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert meta["labels"]["type"] == "kwok"
    assert node["spec"]["taints"] == [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
    assert node["spec"]["podCIDR"] == "10.245.3.0/24"  # off the real node's 10.244.0.0/24
    # Both address kinds, or kwok's node-initialize Stage rewrites the list without them.
    assert {a["type"] for a in node["status"]["addresses"]} == {"InternalIP", "Hostname"}


@pytest.mark.parametrize("index", [-1, fakenodes.MAX_NODES])
def test_fake_node_indexes_stay_within_their_address_ranges(index: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        fakenodes.node_manifest(index)


def test_kwok_manages_only_annotated_nodes_with_our_stages(tmp_path: Path) -> None:
    layout = ClusterLayout(root=tmp_path)
    argv = components.component_argv("kwok", Path("/bin"), layout, ensure_pki(layout.pki), tmp_path)
    assert argv[0] == "/bin/kwok"
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in argv
    assert not any(a.startswith("--manage-all-nodes") for a in argv)
    assert "--node-lease-duration-seconds=40" in argv  # Leases keep the nodes Ready, as kubelets do
    [config] = [a.removeprefix("--config=") for a in argv if a.startswith("--config=")]
    stages = list(yaml.safe_load_all(Path(config).read_text()))
    names = [s["metadata"]["name"] for s in stages if s]
    assert names == [
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]
    assert {s["kind"] for s in stages if s} == {"Stage"}


def test_kwok_is_an_optional_component_outside_the_default_cluster() -> None:
    assert components.OPTIONAL_COMPONENTS == ("kwok",)
    assert "kwok" not in components.COMPONENTS  # never part of the default cluster


def test_kwok_is_built_only_when_asked_for() -> None:
    script = (REPO / "hack" / "build-binaries.sh").read_text()
    assert "components=(kubernetes etcd minio)\n" in script
    assert 'helm | kwok) components+=("$arg")' in script
    go_mod = (REPO / "hack" / "gobuild" / "kwok" / "go.mod").read_text()
    assert "require sigs.k8s.io/kwok v0.8.0" in go_mod
    bad = subprocess.run(
        ["bash", str(REPO / "hack" / "build-binaries.sh"), "kwokk"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "[kwok]" in bad.stderr
