from __future__ import annotations

import importlib

import pytest

from kstudio_cli import main as cli


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-thing"]) == 2
    assert "unknown subcommand 'no-such-thing'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_target_is_importable(name: str) -> None:
    module_name, func_name = cli.SUBCOMMANDS[name][0].split(":")
    assert callable(getattr(importlib.import_module(module_name), func_name))
