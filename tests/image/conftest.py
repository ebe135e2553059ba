"""Fixtures of the image tier: the product wheel, and that wheel in a clean venv as the Dockerfile builds
it, which the local cluster's node agent then runs for `kstudio` images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kstudio_localcluster import cluster
from kstudio_localcluster.imagevenv import build_wheel, ensure_image_venv


@pytest.fixture(scope="session")
def product_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def image_venv() -> Path:
    """The wheel + locked requirements in a clean venv, cached under ~/.cache/kstudio/image-venvs by hash."""
    return ensure_image_venv(log=print)


@pytest.fixture
def image_cluster(local_cluster: Any, go_binaries: Path, image_venv: Path) -> Iterator[Any]:
    """The session's cluster with its node agent switched to the image venv (it restarts the agent),
    switched back to the checkout's .venv afterwards."""
    layout = local_cluster.info.layout
    cluster.ensure_up(layout, bin_dir=go_binaries, started_by="fixture", image_venv=image_venv)
    try:
        yield local_cluster
    finally:
        cluster.ensure_up(layout, bin_dir=go_binaries, started_by="fixture")
