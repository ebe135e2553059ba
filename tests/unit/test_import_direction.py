"""The architecture as the imports show it: operator, trainer and scorer import the shared core and never
each other; the core imports none of them; the operator process carries no scikit-learn stack."""

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
}
# Which of our packages each may import (besides itself).
ALLOWED = {
    "kstudio_core": set(),
    "kstudio_operator": {"kstudio_core"},
    "kstudio_trainer": {"kstudio_core"},
    "kstudio_scorer": {"kstudio_core"},
}
HEAVY = ("sklearn", "scipy", "numpy", "skops", "fastapi", "pandas", "pyarrow")


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
