"""Bearer keys from Secret files: primary, secondary, rotation, uniform refusal (files in tmp_path only)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kstudio_scorer.errors import UnauthorizedError
from kstudio_scorer.http.keys import KeyRing


def put(d: Path, name: str, value: str) -> None:
    tmp = d / f".{name}"
    tmp.write_text(value + "\n")
    os.replace(tmp, d / name)


def refused(ring: KeyRing, header: str | None) -> str:
    with pytest.raises(UnauthorizedError) as info:
        ring.check(header)
    return info.value.message


def test_primary_and_secondary_accepted_others_refused_alike(tmp_path: Path) -> None:
    put(tmp_path, "primaryKey", "p-key")
    put(tmp_path, "secondaryKey", "s-key")
    ring = KeyRing(tmp_path, reload_seconds=0)
    ring.check("Bearer p-key")
    ring.check("bearer s-key")
    messages = {refused(ring, h) for h in (None, "", "Bearer", "Bearer x", "Basic p-key", "Bearer p-keyy")}
    assert messages == {"missing or invalid API key"}


def test_rotation_is_picked_up_without_restart(tmp_path: Path) -> None:
    put(tmp_path, "primaryKey", "old")
    ring = KeyRing(tmp_path, reload_seconds=0)
    ring.check("Bearer old")
    time.sleep(0.01)
    put(tmp_path, "primaryKey", "new")
    ring.check("Bearer new")
    refused(ring, "Bearer old")


def test_no_key_files_refuses_everything(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "absent", reload_seconds=0)
    refused(ring, "Bearer ")
    refused(ring, "Bearer anything")
