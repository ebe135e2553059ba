"""Pod phase, conditions and container states as kubelet reports them."""

from __future__ import annotations

from typing import Any

import pytest

from kstudio_localcluster.nodeagent.status import ConditionClock, ContainerRecord, pod_conditions, pod_phase


def running(name: str = "c", ready: bool = True) -> ContainerRecord:
    return ContainerRecord(
        name, "kstudio:dev", state="running", reason="", started_at="t0", ready=ready, started=True
    )


def terminated(name: str = "c", code: int = 0) -> ContainerRecord:
    return ContainerRecord(
        name, "kstudio:dev", state="terminated", reason="Completed" if code == 0 else "Error", exit_code=code
    )


def waiting(
    name: str = "c", reason: str = "ContainerCreating", last_code: int | None = None
) -> ContainerRecord:
    rec = ContainerRecord(name, "kstudio:dev", state="waiting", reason=reason)
    if last_code is not None:
        rec.last_terminated = {"exitCode": last_code, "reason": "Error"}
        rec.restart_count = 1
    return rec


@pytest.mark.parametrize(
    ("policy", "init", "main", "terminal", "phase"),
    [
        ("Always", [], [waiting()], False, "Pending"),
        ("Always", [], [running()], False, "Running"),
        ("Always", [], [waiting(reason="CrashLoopBackOff", last_code=1)], False, "Running"),
        ("Always", [], [running("a"), terminated("b", 0)], False, "Running"),
        ("Never", [], [terminated(code=0)], False, "Succeeded"),
        ("Never", [], [terminated(code=1)], False, "Failed"),
        ("Never", [], [terminated("a", 0), terminated("b", 2)], False, "Failed"),
        ("OnFailure", [], [terminated(code=0)], False, "Succeeded"),
        ("OnFailure", [], [waiting(reason="CrashLoopBackOff", last_code=1)], False, "Running"),
        ("Always", [], [terminated(code=143)], True, "Failed"),
        ("Always", [], [terminated(code=0)], True, "Succeeded"),
        ("Always", [running("init")], [waiting(reason="PodInitializing")], False, "Pending"),
        ("Never", [terminated("init", 1)], [waiting(reason="PodInitializing")], False, "Failed"),
        (
            "Always",
            [waiting("init", "CrashLoopBackOff", 1)],
            [waiting(reason="PodInitializing")],
            False,
            "Pending",
        ),
        ("Always", [terminated("init", 0)], [running()], False, "Running"),
    ],
)
def test_pod_phase_follows_kubelet(
    policy: str, init: list[ContainerRecord], main: list[ContainerRecord], terminal: bool, phase: str
) -> None:
    assert pod_phase(policy, init, main, terminal) == phase


def conditions(
    phase: str, init: list[ContainerRecord], main: list[ContainerRecord], **pod: Any
) -> dict[str, Any]:
    doc = {
        "metadata": {"name": "p"},
        "spec": {"containers": [], **pod.get("spec", {})},
        "status": pod.get("status", {}),
    }
    conds = pod_conditions(doc, phase, True, init, main, ConditionClock(), "2026-01-01T00:00:00Z")
    return {c["type"]: c for c in conds}


def test_ready_needs_every_container_ready_and_names_the_unready_ones() -> None:
    conds = conditions("Running", [], [running("a"), running("b", ready=False)])
    assert conds["ContainersReady"]["status"] == "False" and conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [b]"
    ok = conditions("Running", [], [running("a"), running("b")])
    assert ok["Ready"]["status"] == "True" and "reason" not in ok["Ready"]


def test_initialized_waits_for_every_init_container_to_succeed() -> None:
    conds = conditions("Pending", [terminated("one", 0), running("two")], [waiting(reason="PodInitializing")])
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [two]"
    done = conditions("Running", [terminated("one", 0), terminated("two", 0)], [running()])
    assert done["Initialized"]["status"] == "True"


def test_completed_pods_are_not_ready_with_reason_pod_completed() -> None:
    conds = conditions("Succeeded", [], [terminated(code=0)])
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"
    assert conds["PodReadyToStartContainers"]["status"] == "False"


def test_readiness_gates_hold_ready_until_their_condition_is_true() -> None:
    spec = {"readinessGates": [{"conditionType": "example.com/lb"}]}
    held = conditions("Running", [], [running()], spec=spec)
    assert held["ContainersReady"]["status"] == "True" and held["Ready"]["status"] == "False"
    passed = conditions(
        "Running",
        [],
        [running()],
        spec=spec,
        status={"conditions": [{"type": "example.com/lb", "status": "True"}]},
    )
    assert passed["Ready"]["status"] == "True"


def test_transition_time_changes_only_when_the_status_flips() -> None:
    clock = ConditionClock()
    assert clock.stamp("Ready", "False", "t1") == "t1"
    assert clock.stamp("Ready", "False", "t2") == "t1"
    assert clock.stamp("Ready", "True", "t3") == "t3"


def test_container_status_json_has_state_last_state_and_restart_count() -> None:
    rec = waiting(reason="CrashLoopBackOff", last_code=3)
    rec.message = "back-off 10s restarting failed container=c"
    doc = rec.to_json()
    assert doc["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": rec.message}}
    assert doc["lastState"]["terminated"]["exitCode"] == 3 and doc["restartCount"] == 1
    oom = ContainerRecord(
        "c", "kstudio:dev", state="terminated", reason="OOMKilled", exit_code=137, container_id="x://1"
    )
    term = oom.to_json()["state"]["terminated"]
    assert term == {"exitCode": 137, "reason": "OOMKilled", "containerID": "x://1"}
