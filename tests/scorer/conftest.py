"""Fixtures of the scorer tier (helpers live in scorer_support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scorer_support import (
    BuiltModel,
    ScorerProcess,
    build_classifier,
    build_forest,
    build_regressor,
    settings_for,
    wait_ready,
)

from kstudio_scorer.http.app import create_app


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltModel]:
    d = tmp_path_factory.mktemp("models")
    return {"classifier": build_classifier(d), "forest": build_forest(d), "regressor": build_regressor(d)}


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Build the app for a model and enter TestClient (lifespan runs); waits until ready unless told."""
    clients: list[TestClient] = []

    def make(model: BuiltModel, *, ready: bool = True, **overrides: Any) -> TestClient:
        client = TestClient(create_app(settings_for(model, **overrides)))
        client.__enter__()
        clients.append(client)
        if ready:
            wait_ready(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def scorer_processes() -> Iterator[list[ScorerProcess]]:
    """Collects processes a test starts; all are stopped at teardown."""
    started: list[ScorerProcess] = []
    yield started
    for sp in started:
        sp.stop(timeout=15)
