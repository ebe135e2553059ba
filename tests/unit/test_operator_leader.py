"""Leader election's rule (leader.next_step): create a missing Lease, renew one's own, take over one whose
holder has not renewed for its leaseDurationSeconds as this candidate's clock saw it, else wait."""

from __future__ import annotations

from typing import Any

import pytest

from kstudio_operator.leader import LeaseConfig, next_step


def lease(holder: str | None, duration: int = 10) -> dict[str, Any]:
    return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": duration}}


def test_a_missing_lease_is_created_and_ones_own_is_renewed() -> None:
    assert next_step(None, 0.0, "me") == "create"
    assert next_step(lease("me"), 999.0, "me") == "renew"


def test_another_holder_is_waited_for_until_its_lease_expired_on_our_clock() -> None:
    assert next_step(lease("other"), 0.0, "me") == "wait"
    assert next_step(lease("other"), 9.9, "me") == "wait"
    assert next_step(lease("other"), 10.0, "me") == "take"


def test_a_released_lease_is_taken_at_once() -> None:
    assert next_step(lease(None, duration=1), 0.0, "me") == "take"
    assert next_step(lease(""), 0.0, "me") == "take"


def test_the_flag_names_namespace_and_lease_and_each_candidate_is_someone_else() -> None:
    a, b = LeaseConfig.parse("kstudio/kstudio-operator"), LeaseConfig.parse("kstudio/kstudio-operator")
    assert (a.namespace, a.name) == ("kstudio", "kstudio-operator")
    assert a.identity != b.identity
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        LeaseConfig.parse("kstudio-operator")
