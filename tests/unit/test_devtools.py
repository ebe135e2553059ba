"""The product/dev split and the fail-fast prerequisites: the `kstudio` command has no development
subcommands (local cluster, example upload, vocabulary generator) and the product never imports the dev
packages, hack/prereqs.sh installs exactly the host tools the cluster runs, and a missing tool is reported as
one line naming the package to install."""

from __future__ import annotations

import ast
import importlib
import os
import re
from pathlib import Path

import pytest

from kstudio_cli import main as product_cli
from kstudio_localcluster import cluster, devcli, hosttools
from kstudio_localcluster.components import ClusterError, failure_summary
from kstudio_localcluster.layout import ClusterLayout

REPO = Path(__file__).resolve().parents[2]


DEV_PACKAGES = ("kstudio_localcluster", "kstudio_devtools")
PRODUCT_SOURCES = ("core", "cli", "operator", "scorer", "trainer", "console")


def test_product_cli_has_no_development_subcommands() -> None:
    assert not set(devcli.SUBCOMMANDS) & set(product_cli.SUBCOMMANDS)
    assert not {"cluster", "node-agent", "upload-examples", "vocabulary"} & set(product_cli.SUBCOMMANDS)
    targets = [target for target, _ in product_cli.SUBCOMMANDS.values()]
    assert not [t for t in targets if t.startswith(DEV_PACKAGES)]


def test_product_source_never_imports_the_dev_packages() -> None:
    wrong = []
    for path in sorted(p for top in PRODUCT_SOURCES for p in (REPO / top).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            wrong += [f"{path.relative_to(REPO)} imports {n}" for n in names if n.startswith(DEV_PACKAGES)]
    assert wrong == []


def test_dev_cli_owns_cluster_node_agent_examples_and_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    assert devcli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("cluster", "node-agent", "image-venv", "upload-examples", "vocabulary"):
        assert name in out
    assert devcli.main(["serve"]) == 2


@pytest.mark.parametrize("name", sorted(devcli.SUBCOMMANDS))
def test_every_dev_subcommand_target_is_importable(name: str) -> None:
    module_name, func_name = devcli.SUBCOMMANDS[name][0].split(":")
    assert callable(getattr(importlib.import_module(module_name), func_name))


def _prereqs_tools() -> set[tuple[str, str]]:
    text = (REPO / "hack" / "prereqs.sh").read_text()
    block = re.search(r"^tools=\(\n(.*?)^\)", text, re.M | re.S)
    assert block, "hack/prereqs.sh lost its tools=( ... ) list"
    return {tuple(line.strip().split(":", 1)) for line in block.group(1).splitlines() if line.strip()}


def test_prereqs_script_installs_the_packages_of_every_tool_the_cluster_runs() -> None:
    assert _prereqs_tools() == {(t.program, t.package) for t in hosttools.REQUIRED}


def test_missing_tool_is_one_line_with_the_install_command() -> None:
    nft = next(t for t in hosttools.REQUIRED if t.program == "nft")
    message = hosttools.missing_message([nft])
    assert message.startswith("nft not found: apt-get install nftables")
    assert "\n" not in message


def test_kube_proxy_log_without_nft_is_diagnosed_as_the_missing_package(tmp_path: Path) -> None:
    log = tmp_path / "kube-proxy.log"
    log.write_text(
        'I1202 02:10:01.1 server.go:530] "Using nftables Proxier"\n'
        'E1202 02:10:01.2 server.go:560] "Error running ProxyServer" err="could not find nftables binary: '
        'exec: \\"nft\\": executable file not found in $PATH"\n'
        'E1202 02:10:01.3 run.go:72] "command failed" err="failed to create proxier"\n'
    )
    assert failure_summary(log).startswith("nft not found: apt-get install nftables")


def test_failure_summary_is_the_last_error_line_when_no_tool_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "etcd.log"
    log.write_text("starting\nerror: listen tcp 127.0.0.1:2379: bind: address already in use\nbye\n")
    assert failure_summary(log) == "error: listen tcp 127.0.0.1:2379: bind: address already in use"
    assert failure_summary(tmp_path / "absent.log") == ""


def test_cluster_up_with_a_missing_tool_stops_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        hosttools, "REQUIRED", (hosttools.HostTool("kstudio-no-such-nft", "nftables", "kube-proxy"),)
    )
    layout = ClusterLayout(name="kstudio-unit", root=tmp_path / "c")
    with pytest.raises(ClusterError, match=r"^kstudio-no-such-nft not found: apt-get install nftables"):
        cluster.ensure_up(layout, bin_dir=tmp_path)
    assert not (tmp_path / "c").exists()
