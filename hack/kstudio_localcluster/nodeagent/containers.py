"""One container of a pod across its restarts: start, probes, exit, termination."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cgroups import CpuSettings
from .context import NodeContext, log, utc_now
from .envvars import EnvError, PodFacts, expand_command, resolve_env
from .images import ImagePullError, container_argv, resolve_image
from .probes import ProbeSpec, ProbeTracker, run_http, run_probe
from .quantity import parse_quantity
from .runtime import ContainerProcess, LaunchSpec, Mount, StartFailed, rootfs_ops
from .status import ContainerRecord
from .volumes import PodVolumes, VolumeError

JSON = dict[str, Any]
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
_CAPS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11,
    "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19,
    "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31,
    "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36,
    "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}  # fmt: skip


class ConfigError(Exception):
    """CreateContainerConfigError: the container cannot be configured as specified."""


def backoff_delay(restarts_so_far: int) -> float:
    """kubelet's crash-loop back-off: the first restart is immediate, then 10 s doubling to 5 min."""
    if restarts_so_far <= 0:
        return 0.0
    return float(min(BACKOFF_INITIAL * 2 ** (restarts_so_far - 1), BACKOFF_MAX))


def effective_user(pod: JSON, container: JSON, image_uid: int, image_gid: int) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary groups); raises ConfigError for runAsNonRoot with uid 0."""
    psc = pod["spec"].get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser", image_uid))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", image_gid if uid == image_uid else 0))
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot", False))
    if non_root and int(uid) == 0:
        meta = pod["metadata"]
        raise ConfigError(
            f'container has runAsNonRoot and image will run as root (pod: "{meta["name"]}_{meta["namespace"]}'
            f'({meta["uid"]})", container: {container["name"]})'
        )
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    return int(uid), int(gid), sorted(set(groups))


def cpu_settings(container: JSON) -> CpuSettings:
    """limits.cpu -> cfs quota; requests.cpu (or the limit, as the API defaults it) -> shares."""
    resources = container.get("resources") or {}
    limit = (resources.get("limits") or {}).get("cpu")
    request = (resources.get("requests") or {}).get("cpu", limit)
    limit_m = math.ceil(parse_quantity(limit) * 1000) if limit else None
    request_m = math.ceil(parse_quantity(request) * 1000) if request else None
    return CpuSettings.from_millicores(limit_m, request_m)


def dropped_caps(container: JSON) -> list[int]:
    drop = ((container.get("securityContext") or {}).get("capabilities") or {}).get("drop") or []
    if "ALL" in drop:
        return sorted(_CAPS.values())
    return [_CAPS[c.removeprefix("CAP_")] for c in drop if c.removeprefix("CAP_") in _CAPS]


class ContainerRunner:
    """Owns a container's record (its status) and its current process."""

    def __init__(
        self, ctx: NodeContext, pod_dir: Path, container: JSON, is_init: bool, wake: Callable[[], None]
    ) -> None:
        self.ctx = ctx
        self.pod_dir = pod_dir
        self.spec = container
        self.name = container["name"]
        self.is_init = is_init
        self.sidecar = is_init and container.get("restartPolicy") == "Always"
        self.wake = wake
        self.rec = ContainerRecord(
            self.name,
            container.get("image", ""),
            reason="PodInitializing" if is_init else "ContainerCreating",
        )
        self.proc: ContainerProcess | None = None
        self.next_start = 0.0
        self.failures_in_row = 0
        self.pull_failures = 0
        self.kill_message = ""
        self.env: dict[str, str] = {}
        self.uid = self.gid = 0
        self._stop_probes = threading.Event()
        self.readiness: ProbeTracker | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.rec.state == "running"

    def log_path(self, restart: int | None = None) -> Path:
        n = self.rec.restart_count if restart is None else restart
        path: Path = self.pod_dir / "logs" / self.name / f"{n}.log"
        return path

    def start(self, pod: JSON, volumes: PodVolumes, facts: PodFacts) -> None:
        """Start one instance; on failure the record says why (waiting or terminated) and when to retry."""
        meta = pod["metadata"]
        try:
            image = resolve_image(self.rec.image, self.ctx.cfg.venv)
        except ImagePullError as exc:
            self.pull_failures += 1
            self.rec.state, self.rec.message = "waiting", str(exc)
            self.rec.reason = "ErrImagePull" if self.pull_failures % 2 else "ImagePullBackOff"
            self.next_start = time.monotonic() + backoff_delay(self.pull_failures)
            self.ctx.event(
                pod, "Warning", "Failed", f"Failed to pull image {self.rec.image!r}: {exc}", self._fp()
            )
            return
        self.rec.image_id = image.image_id
        try:
            self.uid, self.gid, groups = effective_user(pod, self.spec, image.uid, image.gid)
            env = resolve_env(
                pod,
                self.spec,
                facts,
                lambda kind, name: self.ctx.lookup_text(meta["namespace"], kind, name),
                self.ctx.services(),
                {**image.env, "HOSTNAME": _hostname(pod), "HOME": "/root" if self.uid == 0 else "/"},
            )
            mounts = self._mounts(pod, volumes)
            limit = ((self.spec.get("resources") or {}).get("limits") or {}).get("memory")
            limit_bytes = int(parse_quantity(limit)) if limit else None
            cpu = cpu_settings(self.spec)
        except (ConfigError, EnvError, VolumeError, ValueError) as exc:
            self.rec.state, self.rec.reason, self.rec.message = (
                "waiting",
                "CreateContainerConfigError",
                str(exc),
            )
            self.next_start = time.monotonic() + 2.0
            self.ctx.event(pod, "Warning", "Failed", f"Error: {exc}", self._fp())
            return
        self.env = env
        argv = expand_command(container_argv(self.spec, image), env)
        restart = self.rec.restart_count
        cid = hashlib.sha256(f"{meta['uid']}/{self.name}/{restart}/{time.time_ns()}".encode()).hexdigest()
        cgroup = self.ctx.cgroups.create(meta["uid"], self.name, limit_bytes, cpu)
        netns_file = self.pod_dir / "netns-path"
        netns = None if pod["spec"].get("hostNetwork") else netns_file.read_text().strip()
        csc = self.spec.get("securityContext") or {}
        spec = LaunchSpec(
            argv=argv,
            env=env,
            uid=self.uid,
            gid=self.gid,
            groups=groups,
            cwd=self.spec.get("workingDir") or image.workdir,
            hostname=_hostname(pod),
            netns=netns,
            rootfs=self.pod_dir / "rootfs" / self.name,
            ops=rootfs_ops(
                self.ctx.exposed_paths, mounts, read_only_root=bool(csc.get("readOnlyRootFilesystem"))
            ),
            no_new_privs=csc.get("allowPrivilegeEscalation") is False,
            drop_caps=dropped_caps(self.spec),
        )
        self.proc = ContainerProcess(self.pod_dir / "specs" / f"{self.name}.json", cgroup, self.log_path())
        self.rec.container_id = f"kstudio://{cid}"
        self.kill_message = ""
        try:
            (self.pod_dir / "specs").mkdir(exist_ok=True)
            self.proc.start(spec)
        except StartFailed as exc:
            now = utc_now()
            self.rec.state, self.rec.reason, self.rec.message = "terminated", "StartError", exc.message
            self.rec.exit_code, self.rec.signal = 128, None
            self.rec.started_at = self.rec.finished_at = now
            self.rec.ready = self.rec.started = False
            self.proc = None
            self.ctx.event(pod, "Warning", "Failed", f"Error: {exc.message}", self._fp())
            return
        self.rec.state, self.rec.reason, self.rec.message = "running", "", ""
        self.rec.started_at = self.proc.started_at
        self.rec.ready = False
        self.rec.started = "startupProbe" not in self.spec
        self.ctx.event(pod, "Normal", "Started", f"Started container {self.name}", self._fp())
        post_start = (self.spec.get("lifecycle") or {}).get("postStart")
        if post_start:
            ok, message = self._run_hook(post_start, 30.0)
            if not ok:
                # kubelet: a failed postStart hook kills the container; the restart policy decides the rest
                self.ctx.event(pod, "Warning", "FailedPostStartHook", message, self._fp())
                self.kill_message = f"PostStartHookError: {message}"
                self.proc.kill()
                self.check_exit()
                return
        self._stop_probes = threading.Event()
        if not self.is_init or self.sidecar:
            threading.Thread(
                target=self._probe_loop,
                args=(pod, self.proc, self._stop_probes),
                name=f"probe-{self.name}",
                daemon=True,
            ).start()
        self._refresh_ready()

    def _fp(self) -> str:
        return f"spec.{'initContainers' if self.is_init else 'containers'}{{{self.name}}}"

    def _mounts(self, pod: JSON, volumes: PodVolumes) -> list[Mount]:
        mounts: list[Mount] = []
        targets = set()
        for vm in self.spec.get("volumeMounts") or []:
            src = volumes.host_path(vm["name"], vm.get("subPath", ""))
            mounts.append(Mount(str(src), vm["mountPath"], bool(vm.get("readOnly"))))
            targets.add(vm["mountPath"].rstrip("/"))
        for name in ("hosts", "resolv.conf"):
            generated = self.pod_dir / f"etc-{name}"
            if f"/etc/{name}" not in targets and generated.exists():
                mounts.append(Mount(str(generated), f"/etc/{name}", True))
        term_path = self.spec.get("terminationMessagePath") or "/dev/termination-log"
        if term_path not in targets:
            term = self.pod_dir / "termination" / f"{self.name}-{self.rec.restart_count}"
            term.parent.mkdir(exist_ok=True)
            term.write_bytes(b"")
            os.chmod(term, 0o666)  # noqa: S103 - the container user writes its termination message
            mounts.append(Mount(str(term), term_path, False))
        return mounts

    # -- probes -------------------------------------------------------------------------------------
    def _probe_loop(self, pod: JSON, proc: ContainerProcess, stop: threading.Event) -> None:
        pod_ip = (self.pod_dir / "pod-ip").read_text().strip() if (self.pod_dir / "pod-ip").exists() else ""
        t0 = time.monotonic()
        startup = ProbeSpec.from_json(self.spec["startupProbe"]) if "startupProbe" in self.spec else None
        live = ProbeSpec.from_json(self.spec["livenessProbe"]) if "livenessProbe" in self.spec else None
        ready = ProbeSpec.from_json(self.spec["readinessProbe"]) if "readinessProbe" in self.spec else None
        trackers = {
            "Startup": (startup, ProbeTracker(startup, False) if startup else None),
            "Liveness": (live, ProbeTracker(live, True) if live else None),
            "Readiness": (ready, ProbeTracker(ready, False) if ready else None),
        }
        self.readiness = trackers["Readiness"][1]
        due = {k: t0 + (s.initial_delay if s else 0) for k, (s, _) in trackers.items()}
        while not stop.is_set() and proc.exit_code is None:
            active = ["Startup"] if startup and not self.rec.started else ["Liveness", "Readiness"]
            active = [k for k in active if trackers[k][0] is not None]
            if not active:
                return
            kind = min(active, key=lambda k: due[k])
            if stop.wait(max(0.0, due[kind] - time.monotonic())):
                return
            spec, tracker = trackers[kind]
            assert spec is not None and tracker is not None
            ok, message = run_probe(
                spec.handler, pod_ip, self.spec, proc.pid, self.uid, self.gid, self.env, spec.timeout
            )
            due[kind] = time.monotonic() + spec.period
            before = tracker.value
            value = tracker.record(ok, message)
            if not ok:
                self.ctx.event(pod, "Warning", "Unhealthy", f"{kind} probe failed: {message}", self._fp())
            if kind == "Startup" and value:
                self.rec.started = True
                due["Liveness"] = time.monotonic() + (live.initial_delay if live else 0)
                due["Readiness"] = time.monotonic() + (ready.initial_delay if ready else 0)
            elif kind in {"Startup", "Liveness"} and tracker.failures >= spec.failure_threshold:
                what = "startup probe" if kind == "Startup" else "liveness probe"
                self.kill_message = f"Container {self.name} failed {what}, will be restarted"
                self.ctx.event(pod, "Normal", "Killing", self.kill_message, self._fp())
                self.wake()
                return
            if value != before or kind == "Startup":
                self._refresh_ready()
                self.wake()

    def _refresh_ready(self) -> None:
        ok = self.readiness.value if self.readiness is not None else "readinessProbe" not in self.spec
        self.rec.ready = self.running and self.rec.started and bool(ok)

    # -- exit ---------------------------------------------------------------------------------------
    def check_exit(self) -> bool:
        """Record the instance's end if it has ended; True when the record changed."""
        if self.proc is None or self.rec.state != "running":
            return False
        code = self.proc.poll()
        if code is None:
            self._refresh_ready()
            return False
        self._stop_probes.set()
        self.readiness = None
        oom = self.proc.oom_killed()
        self.rec.state = "terminated"
        self.rec.exit_code = code
        self.rec.signal = None
        self.rec.reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        self.rec.finished_at = utc_now()
        self.rec.message = self._termination_message(code)
        self.rec.ready = False
        self.failures_in_row = 0 if code == 0 else self.failures_in_row + 1
        self.proc.cgroup.destroy()
        self.proc = None
        return True

    def _termination_message(self, code: int) -> str:
        term = self.pod_dir / "termination" / f"{self.name}-{self.rec.restart_count}"
        try:
            text = term.read_bytes()[:4096].decode(errors="replace")
        except OSError:
            text = ""
        if not text and code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = tail_log_text(self.log_path(), 80)
            text = lines[-2048:]
        return text

    def prepare_restart(self, pod: JSON) -> None:
        """Move the terminated record to lastState and enter back-off (CrashLoopBackOff when delayed)."""
        self.rec.last_terminated = self.rec.terminated_json()
        self.rec.restart_count += 1
        delay = backoff_delay(self.rec.restart_count - 1)
        self.next_start = time.monotonic() + delay
        meta = pod["metadata"]
        self.rec.state, self.rec.container_id, self.rec.started = "waiting", "", False
        if delay > 0:
            self.rec.reason = "CrashLoopBackOff"
            self.rec.message = (
                f"back-off {int(delay)}s restarting failed container={self.name} "
                f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"
            )
            self.ctx.event(pod, "Warning", "BackOff", "Back-off restarting failed container", self._fp())
        else:
            self.rec.reason, self.rec.message = "ContainerCreating", ""

    # -- termination --------------------------------------------------------------------------------
    def stop(self, pod: JSON, grace: float, reason_event: str = "") -> None:
        """preStop hook, SIGTERM, wait up to `grace` seconds in total, then SIGKILL every process."""
        proc = self.proc
        if proc is None or self.rec.state != "running":
            return
        deadline = time.monotonic() + grace
        if reason_event:
            self.ctx.event(pod, "Normal", "Killing", reason_event, self._fp())
        pre_stop = (self.spec.get("lifecycle") or {}).get("preStop")
        if pre_stop and grace > 0:
            ok, message = self._run_hook(pre_stop, max(0.1, deadline - time.monotonic()))
            if not ok:
                self.ctx.event(pod, "Warning", "FailedPreStopHook", message, self._fp())
        log.info(
            "%s/%s: SIGTERM (grace %.0fs left)",
            pod["metadata"]["name"],
            self.name,
            deadline - time.monotonic(),
        )
        proc.send(signal.SIGTERM)
        while time.monotonic() < deadline and proc.proc is not None and proc.proc.poll() is None:
            time.sleep(0.05)
        if proc.proc is not None and proc.proc.poll() is None:
            log.info("%s: grace period over, SIGKILL", self.name)
        proc.kill()
        self.check_exit()

    def _run_hook(self, hook: JSON, timeout: float) -> tuple[bool, str]:
        """Run a lifecycle hook (exec, httpGet or sleep) against the current instance."""
        pod_ip = (self.pod_dir / "pod-ip").read_text().strip() if (self.pod_dir / "pod-ip").exists() else ""
        if "sleep" in hook:
            time.sleep(min(float(hook["sleep"].get("seconds", 0)), timeout))
            return True, ""
        if "httpGet" in hook:
            return run_http(hook["httpGet"], pod_ip, self.spec, timeout)
        if self.proc is None:
            return False, "container is not running"
        return run_probe(hook, pod_ip, self.spec, self.proc.pid, self.uid, self.gid, self.env, timeout)


def _hostname(pod: JSON) -> str:
    return str(pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]


def tail_log_text(path: Path, lines: int) -> str:
    """Last `lines` lines of a CRI log file, as plain text."""
    try:
        raw = path.read_bytes().splitlines()[-lines:]
    except OSError:
        return ""
    out = []
    for rec in raw:
        parts = rec.split(b" ", 3)
        if len(parts) == 4:
            out.append(parts[3].decode(errors="replace") + ("\n" if parts[2] == b"F" else ""))
    return "".join(out)
