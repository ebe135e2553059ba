"""Contracts shared by two components live in kstudio_core, spelled once: the run result (one model for
its writer and its reader) and a check that no component spells a shared literal again."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kstudio_core.environment import ScorerEnv, StorageEnv, TrainerEnv, env_name
from kstudio_core.ilearner import ColumnSpec
from kstudio_core.runresult import ResultArtifact, RunResult, result_uri

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "operator", "scorer", "trainer", "console", "cli")
# Each shared literal, as code spells it (a regex), and the one core module that may spell it.
SPELLED_ONCE = {
    r'"kstudio\.io"': "core/kstudio_core/labels.py",
    r'(kstudio\.io|API_GROUP\})/model"': "core/kstudio_core/labels.py",
    r'(kstudio\.io|API_GROUP\})/model-sha256"': "core/kstudio_core/labels.py",
    r'(kstudio\.io|API_GROUP\})/spec-hash"': "core/kstudio_core/labels.py",
    r'(kstudio\.io|API_GROUP\})/rollback"': "core/kstudio_core/labels.py",
    r'(kstudio\.io|API_GROUP\})/rotate-key"': "core/kstudio_core/labels.py",
    r'"\.result\.json"': "core/kstudio_core/runresult.py",
    r'"/dev/termination-log"': "core/kstudio_core/exitcodes.py",
    r"EXIT_\w+(: Final)? = \d": "core/kstudio_core/exitcodes.py",
    r"\{64\}|0123456789abcdef": "core/kstudio_core/ilearner.py",
    r'"number", "integer", "string", "boolean"': "core/kstudio_core/ilearner.py",
    r'"yes"': "core/kstudio_core/environment.py",
}


def _product_sources() -> dict[str, str]:
    return {
        str(path.relative_to(REPO)): path.read_text()
        for package in PRODUCT
        for path in sorted((REPO / package).rglob("*.py"))
    }


@pytest.mark.parametrize("literal", sorted(SPELLED_ONCE))
def test_a_shared_literal_is_spelled_once_in_the_core(literal: str) -> None:
    spelled = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        for name, text in _product_sources().items()
        for match in re.finditer(literal, text)
    ]
    assert {where.split(":")[0] for where in spelled} == {SPELLED_ONCE[literal]}, spelled


def test_no_component_spells_a_pod_variable_name() -> None:
    # The builders write and the settings read the names of kstudio_core.environment's table by its rule.
    names = {
        env_name(field)
        for table in (ScorerEnv, StorageEnv, TrainerEnv)
        for field in table.model_fields
        if field != "storage"
    }
    spelled = [
        f"{path}: {name}"
        for path, text in _product_sources().items()
        for name in sorted(names)
        if f'"{name}"' in text
    ]
    assert spelled == []


def test_the_run_result_reads_back_what_the_trainer_writes() -> None:
    written = RunResult(
        artifact=ResultArtifact(uri="s3://models/p/p-3.ilearner", sha256="ab" * 32, size_bytes=9),
        task="classification",
        label="species",
        run=3,
        metrics={"accuracy": 0.97},
        input_schema=[
            ColumnSpec(name="bill_length_mm", type="number"),
            ColumnSpec(name="island", type="string", categories=["Biscoe", "Dream"]),
        ],
        classes=["Adelie", "Gentoo"],
        trials=[{"params": {"max_depth": 3}, "meanScore": 0.9}],
        best_params={"max_depth": 3},
        sweep_metric="f1_macro",
        rows={"train": 80, "test": 20},
        frameworks={"sklearn": "1.9.1"},
        training_seconds=1.5,
        created_at=datetime(2026, 12, 4, 10, tzinfo=UTC),
    )
    document = json.loads(written.to_json())
    assert document["artifact"] == {"uri": "s3://models/p/p-3.ilearner", "sha256": "ab" * 32, "sizeBytes": 9}
    assert document["inputSchema"][0] == {"name": "bill_length_mm", "type": "number"}  # no "categories": null
    assert (document["bestParams"], document["sweepMetric"], document["trainingSeconds"]) == (
        {"max_depth": 3},
        "f1_macro",
        1.5,
    )
    assert RunResult.model_validate_json(written.to_json()) == written


def test_the_run_result_lies_next_to_its_artifact_and_a_reader_accepts_a_short_or_longer_document() -> None:
    assert result_uri("s3://models/p/p-3.ilearner") == "s3://models/p/p-3.ilearner.result.json"
    short = RunResult.model_validate(
        {"artifact": {"uri": "s3://m/a.ilearner", "sha256": "cd" * 32}, "metrics": {"r2": 0.5}, "later": 1}
    )
    assert (short.artifact.size_bytes, short.metrics, short.trials) == (None, {"r2": 0.5}, [])
    with pytest.raises(ValueError, match="sha256"):
        RunResult.model_validate({"artifact": {"uri": "s3://m/a.ilearner", "sha256": "not-a-digest"}})
