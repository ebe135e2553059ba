"""The suite itself: pytest's default import mode ("prepend", no __init__.py in tests/) imports every
test file by its basename, so two test files with one name in two tiers stop the whole run at
collection ("import file mismatch") — which is how CI once failed in 18 s."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name not in ("conftest.py", "__init__.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_the_check_sees_every_tier() -> None:
    tiers = {p.parent.relative_to(TESTS).parts[0] for p in TESTS.rglob("test_*.py")}
    assert {"unit", "operator", "scorer"} <= tiers
