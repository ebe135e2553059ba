"""The termination-log summary stays under Kubernetes' 4 KiB limit and is only written where asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kstudio_trainer import cli


def test_long_failure_message_is_truncated_below_4_kib(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    cli._write_termination_log(
        path, {"ok": False, "exitCode": 2, "reason": "InvalidData", "message": "column 'x' " * 2000}
    )
    text = path.read_text()
    assert len(text.encode()) <= cli.TERMINATION_LOG_LIMIT
    doc = json.loads(text)
    assert doc["reason"] == "InvalidData" and doc["message"].startswith("column 'x'")


def test_success_summary_is_compact_json(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    summary = {
        "ok": True,
        "uri": "s3://m/k.ilearner",
        "sha256": "0" * 64,
        "sizeBytes": 10,
        "metrics": {"r2": 0.5},
    }
    cli._write_termination_log(path, summary)
    assert json.loads(path.read_text()) == summary
    assert " " not in path.read_text()


def test_without_the_option_it_is_written_only_where_kubernetes_provides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes creates the termination log in the container; a workstation run must not create it."""
    default = tmp_path / "termination-log"
    monkeypatch.setattr(cli, "TERMINATION_LOG", str(default))
    argv = ["--snapshot", str(tmp_path / "no-such-spec.json"), "--run", "1", "--output", str(tmp_path / "m")]
    assert cli.main(argv) == 2
    assert not default.exists()

    default.write_text("")  # as the kubelet provides it
    assert cli.main(argv) == 2
    doc = json.loads(default.read_text())
    assert (doc["ok"], doc["exitCode"]) == (False, 2) and "no-such-spec.json" in doc["message"]


def test_unwritable_path_is_a_warning_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing-dir" / "log"
    with caplog.at_level(logging.WARNING, logger="kstudio.train"):
        cli._write_termination_log(path, {"ok": True})
    assert not path.exists()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert str(path) in caplog.text and "No such file or directory" in caplog.text


def test_message_full_of_escaped_characters_still_fits_as_valid_json() -> None:
    text = cli.termination_summary(
        {
            "ok": False,
            "exitCode": 2,
            "reason": "InvalidData",
            "message": '"é\\"\n' * 3000,
            "metrics": {"a": 1.0},
        }
    )
    assert len(text.encode()) <= cli.TERMINATION_LOG_LIMIT
    doc = json.loads(text)
    assert "metrics" not in doc and doc["message"].endswith("...") and doc["exitCode"] == 2
