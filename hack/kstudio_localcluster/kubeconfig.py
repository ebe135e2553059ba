"""Kubeconfig files with the CA and client cert/key embedded (self-contained, work from any shell)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from kstudio_localcluster.certs import Pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(pki: Pki, stem: str, server: str, user: str, context: str = "kstudio") -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_crt)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki.crt(stem)),
                    "client-key-data": _b64(pki.key(stem)),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, pki: Pki, stem: str, server: str, user: str) -> Path:
    """Write a kubeconfig for client cert `stem` (mode 0600: it holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(render(pki, stem, server, user))
    tmp.replace(path)
    return path
