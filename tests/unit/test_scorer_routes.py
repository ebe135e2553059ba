"""The route table is the one place a route is declared: every layer matches requests against it (pure)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kstudio_scorer.http.routes import ROUTES
from kstudio_scorer.http.routing import Route

SCORER = Path(__file__).resolve().parents[2] / "scorer" / "kstudio_scorer"


def concrete(route: Route) -> str:
    return re.sub(r"{\w+}", "x", route.path)


@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: f"{r.method} {r.path}")
def test_each_route_matches_its_own_path_and_method(route: Route) -> None:
    matched = ROUTES.match(route.method, concrete(route))
    assert matched.route is route
    assert matched.label == route.path
    assert matched.classic == route.classic


def test_another_method_finds_the_template_but_no_route() -> None:
    matched = ROUTES.match("GET", "/score")
    assert (matched.template, matched.route, matched.label) == ("/score", None, "/score")


@pytest.mark.parametrize("path", ["/score/", "/v2/models//infer", "/v2/models/a/b/infer", "/nowhere", "/"])
def test_paths_no_template_fits_are_unmatched(path: str) -> None:
    matched = ROUTES.match("POST", path)
    assert (matched.template, matched.route, matched.label) == (None, None, "unmatched")


def test_the_classic_envelope_covers_the_classic_head_routed_or_not() -> None:
    assert ROUTES.match("POST", "/workspaces/w/services/s/nothing").classic
    assert ROUTES.match("GET", "/workspaces/w/services/s/execute").classic
    assert not ROUTES.match("POST", "/score").classic


def test_path_parameters_come_from_the_template() -> None:
    (route,) = [r for r in ROUTES if r.name == "v2_infer_version"]
    assert route.params == ["name", "version"]
    assert route.path_params("/v2/models/penguins/versions/abc/infer") == {
        "name": "penguins",
        "version": "abc",
    }


def test_the_first_layer_to_ask_keeps_the_match_in_the_scope() -> None:
    scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer"}
    first = ROUTES.match_scope(scope)
    assert first.label == "/v2/models/{name}/infer" and ROUTES.match_scope(scope) is first


def test_every_route_is_declared_once() -> None:
    keys = [(r.method, r.path) for r in ROUTES]
    assert len(set(keys)) == len(keys)


def _string_constants(tree: ast.Module) -> set[str]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_no_route_path_is_spelled_outside_the_table() -> None:
    heads = {head for r in ROUTES for head in _heads(r.path)}
    found = []
    for path in sorted(SCORER.rglob("*.py")):
        if path.name == "routes.py":
            continue
        for text in _string_constants(ast.parse(path.read_text())):
            if text in heads:
                found.append(f"{path.relative_to(SCORER)}: {text!r}")
    assert found == []


def _heads(template: str) -> set[str]:
    """The template and each of its leading parts that end at a segment: /v2, /v2/models/, ..."""
    parts = template.split("/")
    heads = {template}
    for i in range(2, len(parts) + 1):
        head = "/".join(parts[:i])
        if "{" not in head:
            heads |= {head, head + "/"}
    return heads
