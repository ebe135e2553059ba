"""Pod status as kubelet reports it: container states, phase and conditions (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class ContainerRecord:
    """What the agent knows about one container of a pod (all timestamps RFC 3339 strings)."""

    name: str
    image: str
    image_id: str = ""
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    container_id: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    last_terminated: JSON | None = None

    def terminated_json(self) -> JSON:
        doc: JSON = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at or None,
            "finishedAt": self.finished_at or None,
            "containerID": self.container_id or None,
        }
        if self.message:
            doc["message"] = self.message
        if self.signal:
            doc["signal"] = self.signal
        return {k: v for k, v in doc.items() if v is not None}

    def to_json(self) -> JSON:
        if self.state == "running":
            state: JSON = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_json()}
        else:
            waiting: JSON = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        doc: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            doc["containerID"] = self.container_id
        return doc


def _ever_terminated(rec: ContainerRecord) -> bool:
    return rec.state == "waiting" and rec.last_terminated is not None


def pod_phase(
    restart_policy: str, init: list[ContainerRecord], main: list[ContainerRecord], terminal: bool
) -> str:
    """kubelet's getPhase. `terminal`: the pod is being shut down for good (deleted, or evicted)."""
    pending_init = failed_init = 0
    for rec in init:
        if rec.state == "running":
            pending_init += 1
        elif rec.state == "terminated":
            if rec.exit_code != 0:
                failed_init += 1
        elif rec.last_terminated is not None:
            if rec.last_terminated.get("exitCode", 0) != 0:
                failed_init += 1
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for rec in main:
        if rec.state == "running":
            running += 1
        elif rec.state == "terminated":
            stopped += 1
            if rec.exit_code == 0:
                succeeded += 1
        elif _ever_terminated(rec):
            stopped += 1
        else:
            waiting += 1
    if failed_init > 0 and restart_policy == "Never":
        return "Failed"
    if pending_init > 0 or (failed_init > 0 and not terminal):
        return "Pending"
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped == len(main) and main:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


@dataclass
class ConditionClock:
    """Keeps lastTransitionTime stable: it changes only when a condition's status changes."""

    since: dict[str, tuple[str, str]] = field(default_factory=dict)

    def stamp(self, ctype: str, status: str, now: str) -> str:
        prev = self.since.get(ctype)
        if prev is None or prev[0] != status:
            self.since[ctype] = (status, now)
            return now
        return prev[1]


def pod_conditions(
    pod: JSON,
    phase: str,
    sandbox_ready: bool,
    init: list[ContainerRecord],
    main: list[ContainerRecord],
    clock: ConditionClock,
    now: str,
) -> list[JSON]:
    def cond(ctype: str, ok: bool, reason: str = "", message: str = "") -> JSON:
        status = "True" if ok else "False"
        doc: JSON = {"type": ctype, "status": status, "lastProbeTime": None}
        doc["lastTransitionTime"] = clock.stamp(ctype, status, now)
        if not ok and reason:
            doc["reason"] = reason
        if not ok and message:
            doc["message"] = message
        return doc

    terminal = phase in {"Succeeded", "Failed"}
    incomplete_init = [r.name for r in init if not (r.state == "terminated" and r.exit_code == 0)]
    initialized = not incomplete_init or (terminal and not init)
    if terminal and init and not incomplete_init:
        initialized = True
    unready = [r.name for r in main if not r.ready]
    conditions = [
        cond("PodReadyToStartContainers", sandbox_ready and not terminal),
        cond(
            "Initialized",
            initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete_init)}]",
        ),
    ]
    if terminal:
        conditions.append(cond("ContainersReady", False, "PodCompleted"))
        conditions.append(cond("Ready", False, "PodCompleted"))
        return conditions
    ready_msg = f"containers with unready status: [{' '.join(unready)}]"
    containers_ready = not unready and initialized
    gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
    have = {c["type"]: c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    missing_gates = [g for g in gates if have.get(g) != "True"]
    conditions.append(cond("ContainersReady", containers_ready, "ContainersNotReady", ready_msg))
    if missing_gates and containers_ready:
        conditions.append(
            cond(
                "Ready",
                False,
                "ReadinessGatesNotReady",
                f"corresponding condition of pod readiness gate {missing_gates[0]!r} does not exist.",
            )
        )
    else:
        conditions.append(cond("Ready", containers_ready, "ContainersNotReady", ready_msg))
    return conditions
