"""The scorer's folders as layers: http > bes, protocols > model > errors, settings. Nothing imports
upward, bes and protocols do not know each other, and no modules import each other in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

SCORER = Path(__file__).resolve().parents[2] / "scorer" / "kstudio_scorer"
PACKAGE = "kstudio_scorer"
# What each part of the scorer may import of the scorer, besides itself. The top-level modules errors
# and settings are the ground; cli and shard_cli (the processes: `kstudio serve`, `kstudio score-shard`) sit
# above everything.
ALLOWED = {
    "errors": set(),
    "settings": set(),
    "model": {"errors", "settings"},
    "protocols": {"model", "errors"},
    "bes": {"model", "errors"},
    "http": {"bes", "protocols", "model", "errors", "settings"},
    "cli": {"http", "model", "settings"},
    "shard_cli": {"bes", "model", "settings"},
}


def _module_of(path: Path) -> str:
    parts = path.relative_to(SCORER).with_suffix("").parts
    return ".".join((PACKAGE, *parts)).removesuffix(".__init__")


def _modules() -> dict[str, Path]:
    return {_module_of(p): p for p in SCORER.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The scorer modules `path` imports (anywhere in the file, TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {n for n in names if n in modules and n != PACKAGE}
    # `from kstudio_scorer.http import routes` names the package and its module: keep the module alone
    return {m for m in found if not any(o.startswith(m + ".") for o in found)} - {_module_of(path)}


def _part(module: str) -> str:
    return module.split(".")[1]


def test_nothing_imports_upward() -> None:
    modules = _modules()
    wrong = []
    for module, path in sorted(modules.items()):
        if module == PACKAGE:
            continue
        part = _part(module)
        for imported in sorted(_imports(path, modules)):
            if _part(imported) != part and _part(imported) not in ALLOWED[part]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_no_modules_import_each_other_in_a_loop() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) for m, p in modules.items()}
    loops: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for nxt in sorted(graph[module]):
            if state.get(nxt) == "open":
                loops.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_every_part_of_the_scorer_has_a_layer() -> None:
    assert {_part(m) for m in _modules() if m != PACKAGE} == set(ALLOWED)
