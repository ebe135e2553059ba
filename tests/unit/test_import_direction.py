"""The architecture as the imports show it: operator, trainer, scorer and console import the shared core and
never each other; the core imports none of them; the operator and console processes carry no scikit-learn
stack (the console gets the trainer's figure renderer handed in by the `kstudio` command); inside the
operator, higher layers import lower ones and never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "kstudio_core": REPO / "core" / "kstudio_core",
    "kstudio_operator": REPO / "operator" / "kstudio_operator",
    "kstudio_trainer": REPO / "trainer" / "kstudio_trainer",
    "kstudio_scorer": REPO / "scorer" / "kstudio_scorer",
    "kstudio_console": REPO / "console" / "kstudio_console",
}
# Which of our packages each may import (besides itself).
ALLOWED = {
    "kstudio_core": set(),
    "kstudio_operator": {"kstudio_core"},
    "kstudio_trainer": {"kstudio_core"},
    "kstudio_scorer": {"kstudio_core"},
    "kstudio_console": {"kstudio_core"},
}
# The operator's layers, highest first, as kstudio_operator/__init__.py states them (kopf states its own in
# an import-linter "layers" contract: "higher-level layers can import the lower-level ones, but not vice
# versa"). A layer names top-level modules or subpackages of the package; those sharing a layer are
# independent (neither imports the other). Within one subpackage (handlers/*) modules import each other.
OPERATOR_LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "crdgen"),  # the commands `kstudio operator`, `kstudio crds`
    ("main",),  # kopf registrations
    ("handlers", "finalizer"),  # I/O per kind: observe, apply, report; deletion in the reconciles
    ("runtime", "leader"),  # the reconcile workers, status writes, the retry policy; leader election
    # the API client; the watch-fed lookups; the reconciles' queue; kopf's internals at scale
    ("kube", "indexes", "workqueue", "kopf_scale"),
    ("metrics",),
    ("decisions",),  # pure
    ("builders",),  # pure
    ("resources",),  # the models
    ("constants", "settings"),
)
# The console's layers, highest first, as kstudio_console/__init__.py states them.
CONSOLE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),  # `kstudio console`: settings, the watches and the server
    ("app",),  # the one route table
    ("pages", "watch", "reports", "report_html", "testform"),  # page contents, watches, reports, Test form
    ("cache", "evaluations", "charts"),  # the objects; a verified report and its deltas; drawn charts
)
HEAVY = ("sklearn", "scipy", "numpy", "skops", "fastapi", "pandas", "pyarrow")
# The console is a web app (FastAPI is its own); it draws its run chart with matplotlib, imported on use.
NOT_AT_CONSOLE_START = ("sklearn", "scipy", "numpy", "skops", "pandas", "pyarrow", "matplotlib", "kopf")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_only_what_the_architecture_allows(package: str) -> None:
    ours = set(PACKAGES) | {"kstudio_cli", "kstudio_localcluster"}
    wrong = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        for root in sorted((_imported_roots(path) & ours) - {package} - ALLOWED[package]):
            wrong.append(f"{path.relative_to(REPO)} imports {root}")
    assert wrong == []


def test_core_and_operator_source_never_import_the_scikit_learn_stack() -> None:
    wrong = []
    for package in ("kstudio_core", "kstudio_operator"):
        for path in sorted(PACKAGES[package].rglob("*.py")):
            for root in sorted(_imported_roots(path) & set(HEAVY)):
                wrong.append(f"{path.relative_to(REPO)} imports {root}")
    assert wrong == []


def test_the_operator_process_loads_no_scikit_learn_numpy_skops_or_fastapi() -> None:
    probe = (
        "import sys, kstudio_operator.main, kstudio_operator.cli; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_the_console_process_loads_no_trainer_operator_or_scikit_learn_until_a_comparison_is_drawn() -> None:
    """`kstudio console` (the command's wiring included) starts without the trainer's stack: matplotlib
    comes with the first chart, scikit-learn with the first comparison (kstudio_cli.console)."""
    probe = (
        "import sys, kstudio_console.app, kstudio_console.cli, kstudio_cli.console; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        f"set({(*NOT_AT_CONSOLE_START, 'kstudio_trainer', 'kstudio_operator')!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def _imported_units(path: Path, root: Path, package: str) -> set[str]:
    """The top-level modules/subpackages of `package` that the file `path` (under `root`) imports,
    relative imports resolved."""
    here = [package, *path.relative_to(root).parent.parts]
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            # `from package import x` and `from . import x` name the unit in the alias.
            names = [[*module, alias.name] for alias in node.names] if len(module) == 1 else [module]
        else:
            continue
        units |= {parts[1] for parts in names if len(parts) > 1 and parts[0] == package}
    return units


def layer_violations(root: Path, package: str, layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """Each import in the package at `root` that reaches a higher layer or an independent module of its
    own layer, and each module that belongs to no layer."""
    layer_of = {unit: rank for rank, group in enumerate(layers) for unit in group}
    wrong = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        imported = _imported_units(path, root, package)
        if name == "__init__.py":  # loaded by every import of the package: it imports none of it
            wrong += [f"{name} imports {unit}" for unit in sorted(imported)]
            continue
        unit = path.relative_to(root).parts[0].removesuffix(".py")
        if unit not in layer_of:
            wrong.append(f"{name} belongs to no layer")
            continue
        for target in sorted(imported - {unit}):
            if layer_of.get(target, len(layers)) < layer_of[unit]:
                wrong.append(f"{name} imports {target}, a higher layer")
            elif layer_of.get(target) == layer_of[unit]:
                wrong.append(f"{name} imports {target}, an independent module of its own layer")
    return wrong


def test_the_operator_imports_only_downwards_through_its_layers() -> None:
    assert layer_violations(PACKAGES["kstudio_operator"], "kstudio_operator", OPERATOR_LAYERS) == []


def test_the_console_imports_only_downwards_through_its_layers() -> None:
    assert layer_violations(PACKAGES["kstudio_console"], "kstudio_console", CONSOLE_LAYERS) == []


def test_the_layer_check_reports_a_decision_that_imports_a_handler(tmp_path: Path) -> None:
    """The check itself: a pure decision reaching into the I/O layer fails it, written absolute or
    relative; the allowed direction and imports inside one layer do not."""
    files = {
        "__init__.py": "",
        "handlers/__init__.py": "",
        "handlers/common.py": "def post_events() -> None: ...\n",
        "handlers/serving.py": "from pkg.decisions.endpoint import decide\nfrom pkg.handlers import common\n",
        "decisions/__init__.py": "",
        "decisions/endpoint.py": "from pkg.handlers.common import post_events\ndef decide() -> None: ...\n",
        "decisions/webservice.py": "from ..handlers import common\nfrom . import endpoint\n",
        "builders.py": "import pkg.decisions.endpoint\n",
        "kube.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    layers = (("handlers",), ("decisions",), ("builders",))
    assert layer_violations(tmp_path, "pkg", layers) == [
        "builders.py imports decisions, a higher layer",
        "decisions/endpoint.py imports handlers, a higher layer",
        "decisions/webservice.py imports handlers, a higher layer",
        "kube.py belongs to no layer",
    ]
    (tmp_path / "decisions" / "endpoint.py").write_text("def decide() -> None: ...\n")
    (tmp_path / "decisions" / "webservice.py").write_text("from . import endpoint\n")
    (tmp_path / "builders.py").write_text("")
    (tmp_path / "kube.py").unlink()
    assert layer_violations(tmp_path, "pkg", layers) == []


def test_modules_sharing_a_layer_do_not_import_each_other(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "kube.py").write_text("from pkg import indexes\n")
    (tmp_path / "indexes.py").write_text("")
    assert layer_violations(tmp_path, "pkg", (("kube", "indexes"),)) == [
        "kube.py imports indexes, an independent module of its own layer"
    ]
