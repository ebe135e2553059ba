"""Fixtures shared by every tier.

Server fixtures live in tests/fixtures/ (one module per real component) and are registered here, so any
tier can ask for `minio_server` or `local_cluster` by name.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["fixtures.minio_server", "fixtures.local_cluster"]


def _build_binaries(*components: str) -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-binaries.sh"), *components],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def go_binaries() -> Path:
    """Directory of etcd, the Kubernetes binaries and MinIO, built from Go modules once per machine."""
    return _build_binaries()


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """helm, built like the cluster's binaries but only for the sessions that use it (the chart test)."""
    return _build_binaries("helm") / "helm"


@pytest.fixture(scope="session")
def kwok_binaries() -> Path:
    """The cluster's binary directory with kwok linked in, built only for the sessions that use fake nodes."""
    return _build_binaries("kwok")
