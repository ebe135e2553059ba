"""One pod's life on the node: sandbox, volumes, init containers, containers, status, termination."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .containers import ContainerRunner
from .context import NodeContext, log, pod_key, utc_now
from .envvars import PodFacts
from .kubeapi import ApiError
from .sandbox import SandboxError
from .status import ConditionClock, pod_conditions, pod_phase
from .volumes import PodVolumes, VolumeError

JSON = dict[str, Any]
VOLUME_REFRESH_SECONDS = 10.0
TICK_SECONDS = 0.5


def hosts_file(pod_ip: str, hostname: str) -> str:
    return (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{pod_ip}\t{hostname}\n"
    )


def resolv_conf(spec: JSON) -> str:
    """The local cluster runs no DNS server: unless the pod brings its own dnsConfig, lookups go to a
    closed loopback port and fail at once instead of timing out against an unreachable host resolver."""
    dns = spec.get("dnsConfig") or {}
    servers = dns.get("nameservers") or ["127.0.0.1"]
    lines = [f"nameserver {s}" for s in servers]
    if dns.get("searches"):
        lines.append("search " + " ".join(dns["searches"]))
    options = [o["name"] + (f":{o['value']}" if o.get("value") else "") for o in dns.get("options") or []]
    lines.append("options " + " ".join(options or ["timeout:1", "attempts:1"]))
    return "\n".join(lines) + "\n"


def grace_seconds(pod: JSON) -> float:
    meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
    if meta_grace is not None:
        return float(meta_grace)
    return float(pod["spec"].get("terminationGracePeriodSeconds", 30))


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: JSON, on_done: Callable[[str, bool], None]) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.key = pod_key(pod)
        self.on_done = on_done
        self.pod_dir: Path = ctx.pods_dir / self.uid
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.api_gone = False
        self.pod_ip = ""
        self.sandbox_ready = False
        self.terminal = False
        self.start_time = utc_now()
        self.clock = ConditionClock()
        self.last_sent: JSON | None = None
        self.last_warning = ""
        self.pod_reason: tuple[str, str] | None = None
        self.init = [
            ContainerRunner(ctx, self.pod_dir, c, True, self.wake)
            for c in pod["spec"].get("initContainers") or []
        ]
        self.main = [
            ContainerRunner(ctx, self.pod_dir, c, False, self.wake)
            for c in pod["spec"].get("containers") or []
        ]
        self.thread = threading.Thread(target=self._run_safely, name=f"pod-{self.key}", daemon=True)
        self._adopt_reported_status()

    def _adopt_reported_status(self) -> None:
        """A pod a previous agent ran (its processes were cleaned at startup): continue its story as kubelet
        does after losing a sandbox. Restart counts carry on; with restartPolicy Never a container that
        had started is reported lost (ContainerStatusUnknown, 137) instead of being run a second time."""
        st = self.pod.get("status") or {}
        self.start_time = st.get("startTime") or self.start_time
        policy = self.pod["spec"].get("restartPolicy", "Always")
        reported = {s["name"]: s for s in st.get("containerStatuses") or []}
        for init in st.get("initContainerStatuses") or []:
            done = (init.get("state") or {}).get("terminated") or {}
            runner = self.runner(init["name"])
            if runner is not None and runner.is_init and done and done.get("exitCode") == 0:
                runner.rec.state, runner.rec.reason, runner.rec.exit_code = "terminated", "Completed", 0
                runner.rec.started_at = str(done.get("startedAt") or "")
                runner.rec.finished_at = str(done.get("finishedAt") or "")
        for runner in self.main:
            prev = reported.get(runner.name)
            if not prev:
                continue
            state = prev.get("state") or {}
            runner.rec.restart_count = int(prev.get("restartCount", 0))
            if not ("running" in state or "terminated" in state or prev.get("lastState")):
                continue
            lost: dict[str, Any] = {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": (state.get("running") or state.get("terminated") or {}).get("startedAt"),
                "finishedAt": utc_now(),
            }
            if "terminated" in state:
                lost = state["terminated"]
            if policy == "Never" or (policy == "OnFailure" and lost.get("exitCode") == 0):
                runner.rec.state, runner.rec.reason = "terminated", str(lost.get("reason", "Error"))
                runner.rec.exit_code = int(lost.get("exitCode", 137))
                runner.rec.message = str(lost.get("message", ""))
                runner.rec.started_at = str(lost.get("startedAt") or "")
                runner.rec.finished_at = str(lost.get("finishedAt") or "")
            else:
                runner.rec.last_terminated = {k: v for k, v in lost.items() if v}
                if "running" in state or "terminated" in state:
                    runner.rec.restart_count += 1

    # -- inputs from the agent ----------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def update(self, pod: JSON) -> None:
        with self._lock:
            self.pod = pod
        self.wake()

    def api_deleted(self) -> None:
        self.api_gone = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def runner(self, name: str) -> ContainerRunner | None:
        return next((r for r in self.init + self.main if r.name == name), None)

    @property
    def deleting(self) -> bool:
        return self.api_gone or bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- main loop ----------------------------------------------------------------------------------
    def _run_safely(self) -> None:
        crashed = False
        try:
            self._run()
        except Exception:
            crashed = True
            log.exception(
                "pod worker %s crashed; cleaning up (the next event for the pod starts it again)", self.key
            )
            self._teardown()
            time.sleep(1.0)
        finally:
            self.on_done(self.uid, crashed)

    def _run(self) -> None:
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in {"Succeeded", "Failed"}:
            self.terminal = True  # finished before this agent started: nothing to run again
        else:
            self.pod_dir.mkdir(parents=True, exist_ok=True)
            self._setup_sandbox()
            if self.sandbox_ready:
                self._run_containers()
        self._wait_for_deletion()
        self._finish()

    def _setup_sandbox(self) -> None:
        while not self.deleting:
            try:
                if self.pod["spec"].get("hostNetwork"):
                    self.pod_ip = self.ctx.cfg.node_ip
                else:
                    sandbox = self.ctx.cni.setup(self.uid)
                    self.pod_ip = sandbox.ip
                    (self.pod_dir / "netns-path").write_text(sandbox.netns_path)
                (self.pod_dir / "pod-ip").write_text(self.pod_ip)
                hostname = str(self.pod["spec"].get("hostname") or self.pod["metadata"]["name"])[:63]
                (self.pod_dir / "etc-hosts").write_text(hosts_file(self.pod_ip, hostname))
                (self.pod_dir / "etc-resolv.conf").write_text(resolv_conf(self.pod["spec"]))
                self.sandbox_ready = True
                self._sync_status()
                return
            except (SandboxError, OSError, subprocess.SubprocessError) as exc:
                self.ctx.event(
                    self.pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}"
                )
                self._sync_status()
                self._wake.wait(3.0)
                self._wake.clear()

    def _facts(self) -> PodFacts:
        return PodFacts(self.pod_ip, self.ctx.cfg.node_ip, self.ctx.cpu, self.ctx.memory)

    def _run_containers(self) -> None:
        volumes = PodVolumes(
            self.pod,
            self.pod_dir / "volumes",
            lambda kind, name: self.ctx.lookup_bytes(self.pod["metadata"]["namespace"], kind, name),
            lambda aud, exp: self.ctx.request_token(self.pod, aud, exp),
            self._facts(),
        )
        volumes_ready = False
        last_refresh = 0.0
        last_mount_error = ""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        while not self.deleting:
            now = time.monotonic()
            if deadline is not None and self._active_seconds() > float(deadline):
                self._deadline_exceeded()
                return
            if not volumes_ready or now - last_refresh > VOLUME_REFRESH_SECONDS:
                try:
                    volumes.pod = self.pod  # downwardAPI files follow label/annotation changes
                    volumes.sync()
                    volumes_ready, last_refresh = True, now
                except (VolumeError, ApiError, OSError) as exc:
                    last_refresh = now
                    if str(exc) != last_mount_error:
                        last_mount_error = str(exc)
                        self.ctx.event(self.pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
            if volumes_ready:
                self._step(volumes, policy)
            self._sync_status()
            if self.terminal:
                self._teardown(keep_dir=True)
                return
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
        self._terminate()

    def _active_seconds(self) -> float:
        started = datetime.strptime(self.start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return (datetime.now(UTC) - started).total_seconds()

    def _deadline_exceeded(self) -> None:
        """spec.activeDeadlineSeconds passed: kill everything, the pod fails with DeadlineExceeded."""
        message = "Pod was active on the node longer than the specified deadline"
        self.ctx.event(self.pod, "Normal", "DeadlineExceeded", message)
        self.pod_reason = ("DeadlineExceeded", message)
        for runner in self.init + self.main:
            if runner.running:
                runner.stop(self.pod, grace_seconds(self.pod))
        self.terminal = True
        self._sync_status(terminal=True)
        self._teardown(keep_dir=True)

    def _step(self, volumes: PodVolumes, policy: str) -> None:
        now = time.monotonic()
        for runner in self.init:
            if runner.sidecar:
                # a native sidecar (init container with restartPolicy Always): started in order, kept
                # running (restarted whenever it exits); the next container waits until it has started
                self._keep_running(runner, volumes, now)
                if not (runner.running and runner.rec.started):
                    return
                continue
            if runner.rec.state == "terminated" and runner.rec.exit_code == 0:
                continue
            runner.check_exit()
            if runner.rec.state == "waiting" and now >= runner.next_start:
                runner.start(self.pod, volumes, self._facts())
            if runner.rec.state == "terminated" and runner.rec.exit_code != 0:
                if policy == "Never":
                    self.terminal = True
                else:
                    runner.prepare_restart(self.pod)
            return  # init containers run one at a time, in order
        for runner in self.init:
            if runner.sidecar:
                self._keep_running(runner, volumes, now)
        for runner in self.main:
            if runner.running and runner.kill_message:
                runner.stop(self.pod, grace_seconds(self.pod))
            runner.check_exit()
            if runner.rec.state == "terminated":
                restart = policy == "Always" or (policy == "OnFailure" and runner.rec.exit_code != 0)
                if restart:
                    runner.prepare_restart(self.pod)
            if runner.rec.state == "waiting" and now >= runner.next_start:
                runner.start(self.pod, volumes, self._facts())
        if self.main and all(r.rec.state == "terminated" for r in self.main) and policy != "Always":
            self.terminal = True
            sidecars = [r for r in self.init if r.sidecar and r.running]
            for runner in reversed(sidecars):  # main containers are done: sidecars stop, last first
                runner.stop(self.pod, grace_seconds(self.pod), f"Stopping sidecar container {runner.name}")

    def _keep_running(self, runner: ContainerRunner, volumes: PodVolumes, now: float) -> None:
        if runner.running and runner.kill_message:
            runner.stop(self.pod, grace_seconds(self.pod))
        runner.check_exit()
        if runner.rec.state == "terminated":
            runner.prepare_restart(self.pod)
        if runner.rec.state == "waiting" and now >= runner.next_start:
            runner.start(self.pod, volumes, self._facts())

    # -- status -------------------------------------------------------------------------------------
    def _status(self, terminal: bool) -> JSON:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        init_recs = [r.rec for r in self.init if not r.sidecar]
        sidecar_recs = [r.rec for r in self.init if r.sidecar]
        main_recs = [r.rec for r in self.main]
        if not self.sandbox_ready:
            for rec in init_recs + main_recs:
                if rec.state == "waiting" and not rec.last_terminated:
                    rec.reason = "ContainerCreating" if rec in main_recs else "PodInitializing"
        elif not all(r.state == "terminated" and r.exit_code == 0 for r in init_recs) or not all(
            r.started for r in sidecar_recs
        ):
            for rec in main_recs:
                if rec.state == "waiting" and rec.reason == "ContainerCreating":
                    rec.reason = "PodInitializing"
        else:
            for rec in main_recs:
                if rec.state == "waiting" and rec.reason == "PodInitializing":
                    rec.reason = "ContainerCreating"
        phase = pod_phase(policy, init_recs, main_recs, terminal)
        current = (self.pod.get("status") or {}).get("phase")
        if current in {"Succeeded", "Failed"}:
            phase = current
        status: JSON = {
            "phase": phase,
            "conditions": pod_conditions(
                self.pod,
                phase,
                self.sandbox_ready,
                init_recs,
                sidecar_recs + main_recs,
                self.clock,
                utc_now(),
            ),
            "hostIP": self.ctx.cfg.node_ip,
            "hostIPs": [{"ip": self.ctx.cfg.node_ip}],
            "startTime": self.start_time,
            "containerStatuses": [r.to_json() for r in main_recs],
        }
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.init:
            status["initContainerStatuses"] = [r.rec.to_json() for r in self.init]
        if self.pod_reason is not None:
            status["phase"] = "Failed"
            status["reason"], status["message"] = self.pod_reason
        return status

    def _sync_status(self, terminal: bool = False) -> None:
        if self.api_gone:
            return
        status = self._status(terminal or self.terminal)
        if status == self.last_sent:
            return
        meta = self.pod["metadata"]
        # A JSON merge patch replaces lists whole (podIPs must not accumulate across sandboxes); conditions
        # other components own (PodScheduled, readiness gates) are carried over unchanged.
        ours = {c["type"] for c in status["conditions"]}
        foreign = [
            c for c in (self.pod.get("status") or {}).get("conditions") or [] if c.get("type") not in ours
        ]
        body = {**status, "conditions": status["conditions"] + foreign}
        try:
            updated = self.ctx.client.patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"metadata": {"uid": self.uid}, "status": body},
                kind="merge",
            )
            self.last_sent = status
            if updated.get("metadata", {}).get("uid") == self.uid:
                with self._lock:
                    self.pod = {**self.pod, "status": updated.get("status", {})}
        except ApiError as exc:
            if exc.status == 404:
                self.api_gone = True
            else:
                self._warn_once(f"status patch failed: {exc}")
        except OSError as exc:
            self._warn_once(f"status patch failed: {exc}")

    def _warn_once(self, message: str) -> None:
        if message != self.last_warning:
            self.last_warning = message
            log.warning("%s: %s", self.key, message)

    # -- termination --------------------------------------------------------------------------------
    def _terminate(self) -> None:
        """Graceful stop of every running container in parallel (preStop, SIGTERM, grace, SIGKILL)."""
        grace = 0.0 if self.api_gone else grace_seconds(self.pod)
        log.info("%s: stopping (grace %.0fs)", self.key, grace)
        deadline = time.monotonic() + grace
        # regular containers first, then native sidecars (they outlive what they serve), in one grace period
        self._stop_wave([r for r in self.init + self.main if not r.sidecar], grace)
        self._stop_wave([r for r in self.init if r.sidecar], max(0.0, deadline - time.monotonic()))
        for runner in self.init + self.main:
            runner.check_exit()
        self.terminal = True
        self._sync_status(terminal=True)

    def _stop_wave(self, runners: list[ContainerRunner], grace: float) -> None:
        threads = [
            threading.Thread(
                target=r.stop, args=(self.pod, grace, f"Stopping container {r.name}"), daemon=True
            )
            for r in runners
            if r.running
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(grace + 15)

    def _wait_for_deletion(self) -> None:
        while not self.deleting:
            self._wake.wait(5.0)
            self._wake.clear()

    def _teardown(self, keep_dir: bool = False) -> None:
        for runner in self.init + self.main:
            if runner.proc is not None:
                runner.proc.kill()
                runner.check_exit()
        self.ctx.cgroups.remove_pod(self.uid)
        if not self.pod["spec"].get("hostNetwork"):
            try:
                self.ctx.cni.teardown(self.uid)
            except Exception:
                log.exception("%s: sandbox teardown failed", self.key)
        if not keep_dir:
            shutil.rmtree(self.pod_dir, ignore_errors=True)

    def _finish(self) -> None:
        if any(r.running for r in self.init + self.main):
            self._terminate()
        self._teardown()
        if self.api_gone:
            return
        meta = self.pod["metadata"]
        try:
            self.ctx.client.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiError as exc:
            if exc.status not in {404, 409}:
                log.warning("%s: final delete failed: %s", self.key, exc)

    def shutdown(self) -> None:
        """Agent stopping: kill everything of this pod now, without touching the API object."""
        self.api_gone = True
        self.wake()
