"""Bring the local cluster up, check it, tear it down.

`ensure_up()` is idempotent and safe against leftovers: under a file lock it either reuses a healthy
cluster started from the same checkout and binaries (restarting only a dead or outdated node agent),
or tears down whatever an earlier session left (pidfiles, namespace, cgroups, ports) and starts clean.
`teardown()` stops everything in reverse order (etcd last, so the API server never hangs on it) and
removes the namespace, the pod namespaces, the agent's cgroups and the runtime data.

Pytest sessions share one cluster: each registers itself as a user; a cluster that a fixture started is
torn down when its last user releases it, one started by `kstudio-dev cluster up` is left running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kstudio_localcluster import cleanup, fakenodes, health, hosttools, kubeconfig, netns, processes, sessions
from kstudio_localcluster.certs import Pki, ensure_pki
from kstudio_localcluster.components import COMPONENTS as COMPONENTS  # re-exported
from kstudio_localcluster.components import OPTIONAL_COMPONENTS as OPTIONAL_COMPONENTS  # re-exported
from kstudio_localcluster.components import (
    STOP_GRACE,
    component_argv,
    component_env,
    failure_summary,
    start_component,
)
from kstudio_localcluster.components import ClusterError as ClusterError  # re-exported
from kstudio_localcluster.layout import (
    API_PORT,
    BRIDGE,
    CNI_BIN_DIR,
    KUBELET_PORT,
    MINIO_PORT,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    ClusterLayout,
    repo_root,
)

StartedBy = Literal["cli", "fixture"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class MinioInfo:
    host_endpoint: str
    pod_endpoint: str
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class ClusterInfo:
    layout: ClusterLayout
    kubeconfig: Path
    api_server: str
    minio: MinioInfo
    bin_dir: Path
    node_agent: bool
    reused: bool
    started_by: StartedBy
    fake_nodes: tuple[str, ...] = ()  # kwok's Nodes, when asked for (fakenodes.py)

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"


def _stderr(msg: str) -> None:
    print(f"kstudio-dev cluster: {msg}", file=sys.stderr, flush=True)


def agent_available(repo: Path) -> bool:
    """The node agent is started only once its CLI module exists in the checkout."""
    return (repo / "hack" / "kstudio_localcluster" / "nodeagent" / "cli.py").exists()


def agent_fingerprint(repo: Path, image_venv: Path | None = None) -> str:
    """Hash of the node agent's sources and image venv: a reused cluster restarts an agent whose code or
    image venv changed."""
    h = hashlib.sha256(str(image_venv or "").encode())
    base = repo / "hack" / "kstudio_localcluster" / "nodeagent"
    for p in sorted(base.rglob("*.py")) if base.is_dir() else []:
        h.update(str(p.relative_to(base)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def resolve_bin_dir(repo: Path, log: Log = _stderr, extra: tuple[str, ...] = ()) -> Path:
    """Run hack/build-binaries.sh (instant when built; builds once per machine otherwise); `extra`
    components (kwok) are built too and linked into the same directory."""
    script = repo / "hack" / "build-binaries.sh"
    proc = subprocess.run(
        ["bash", str(script), *extra], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(f"{script} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class _Timeline:
    """Seconds since the start of `up` at which each wait finished (state.json "startup")."""

    t0: float = field(default_factory=time.monotonic)
    steps: dict[str, float] = field(default_factory=dict)


def _wait(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    layout: ClusterLayout,
    log_name: str,
    timeline: _Timeline | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                if timeline is not None:
                    timeline.steps[what] = round(time.monotonic() - timeline.t0, 2)
                return
        except (OSError, ValueError, ssl.SSLError, netns.NetnsError):
            pass
        rec = processes.read_record(layout.run, log_name)
        log_file = layout.logs / f"{log_name}.log"
        if rec is not None and not processes.record_alive(rec):
            raise ClusterError(
                f"{log_name} exited while waiting for {what}: {failure_summary(log_file)} (log: {log_file})"
            )
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f}s waiting for {what}: {failure_summary(log_file)} "
                f"(log: {log_file})"
            )
        time.sleep(0.2)


# ---------------------------------------------------------------- config files


def _write_configs(
    layout: ClusterLayout, pki: Pki, repo: Path, minio: MinioInfo, image_venv: Path | None = None
) -> None:
    inside = f"https://127.0.0.1:{API_PORT}"
    kubeconfig.write(layout.kubeconfig, pki, "admin", f"https://127.0.0.1:{layout.api_host_port}", "admin")
    kc = layout.component_kubeconfigs
    for stem in ("kube-controller-manager", "kube-scheduler", "kube-proxy"):
        kubeconfig.write(kc / f"{stem}.kubeconfig", pki, stem, inside, stem)
    node_kc = kubeconfig.write(
        kc / "node.kubeconfig", pki, "node", f"https://{NODE_IP}:{API_PORT}", f"system:node:{NODE_NAME}"
    )
    sessions.write_json(
        layout.minio_json,
        {
            "hostEndpoint": minio.host_endpoint,
            "podEndpoint": minio.pod_endpoint,
            "accessKey": minio.access_key,
            "secretKey": minio.secret_key,
        },
    )
    sessions.write_json(
        layout.node_agent_json,
        {
            "kubeconfig": str(node_kc),
            "apiServer": f"https://{NODE_IP}:{API_PORT}",
            "nodeName": NODE_NAME,
            "nodeIP": NODE_IP,
            "podCIDR": POD_CIDR,
            "bridge": BRIDGE,
            "netns": layout.netns,
            "cniBinDir": CNI_BIN_DIR,
            "stateDir": str(layout.agent_state),
            "servingCert": str(pki.crt("kubelet")),
            "servingKey": str(pki.key("kubelet")),
            "clientCAFile": str(pki.ca_crt),
            "caFile": str(pki.ca_crt),
            "kubeletPort": KUBELET_PORT,
            "cgroupParent": layout.cgroup_parent,
            "podNetnsPrefix": layout.pod_netns_prefix,
            "repo": str(repo),
            "imageVenv": str(image_venv or ""),
        },
    )


def _minio_info(layout: ClusterLayout) -> MinioInfo | None:
    raw = sessions.read_json(layout.minio_json)
    if not raw:
        return None
    try:
        return MinioInfo(raw["hostEndpoint"], raw["podEndpoint"], raw["accessKey"], raw["secretKey"])
    except KeyError:
        return None


# How long `ensure_up` waits for other sessions to stop using a cluster it would have to replace.
CLUSTER_WAIT_SECONDS = float(os.environ.get("KSTUDIO_CLUSTER_WAIT_SECONDS", "5400"))


def _busy_with_another_setup(layout: ClusterLayout, repo: Path, bin_dir: Path, want_agent: bool) -> str:
    """Why the running cluster cannot serve this checkout while live sessions still use it, else ''.

    Only a healthy cluster started for another checkout, other binaries or another agent setting counts:
    a dead one has nothing left to protect."""
    state = sessions.read_json(layout.state_json) or {}
    if not state or not sessions.other_users(layout):
        return ""
    reason = _control_plane_healthy(layout, state, repo, bin_dir)
    if not reason and bool(state.get("agent")) != want_agent:
        reason = "it was started with a different node agent setting"
    foreign = reason.startswith(("it runs pods from", "it was started"))
    return f"{reason}; {len(sessions.other_users(layout))} session(s) use it" if foreign else ""


def _control_plane_healthy(layout: ClusterLayout, state: dict[str, Any], repo: Path, bin_dir: Path) -> str:
    """'' if the running cluster can be reused as is, else the reason it cannot."""
    if state.get("repo") != str(repo):
        return f"it runs pods from another checkout ({state.get('repo')})"
    if state.get("binDir") != str(bin_dir):
        return f"it was started from other binaries ({state.get('binDir')})"
    if not netns.exists(layout.netns):
        return f"network namespace {layout.netns} is gone"
    pki = Pki(layout.pki)
    for name in COMPONENTS[:-1]:
        rec = processes.read_record(layout.run, name)
        if rec is None or not processes.record_alive(rec):
            return f"{name} is not running"
    try:
        if not health.api_ready(layout, pki):
            return "the API server is not ready"
        if not health.minio_ready(layout):
            return "MinIO is not ready"
    except (OSError, ssl.SSLError) as exc:
        return f"health check failed: {exc}"
    return ""


def _flags_outdated(layout: ClusterLayout, repo: Path, bin_dir: Path) -> str:
    """'' if every component runs with the flags this checkout's harness gives it, else which does not."""
    pki = Pki(layout.pki)
    for name in COMPONENTS[:-1]:
        rec = processes.read_record(layout.run, name)
        expected = component_argv(name, bin_dir, layout, pki, repo)
        if rec is None or list(rec.argv[-len(expected) :]) != expected:
            return f"{name} runs with other flags than this checkout's harness gives it"
    return ""


# ---------------------------------------------------------------- up


def _start_agent(layout: ClusterLayout, pki: Pki, repo: Path, bin_dir: Path, timeout: float) -> None:
    layout.agent_state.mkdir(parents=True, exist_ok=True)
    start_component(
        "node-agent", layout, component_argv("node-agent", bin_dir, layout, pki, repo), component_env()
    )
    _wait(f"node {NODE_NAME} Ready", lambda: health.node_ready(layout, pki), timeout, layout, "node-agent")


def _start_clean(
    layout: ClusterLayout,
    repo: Path,
    bin_dir: Path,
    started_by: StartedBy,
    agent: bool,
    timeout: float,
    log: Log,
    image_venv: Path | None,
) -> ClusterLayout:
    """Start every component and wait until ready; returns the layout actually used."""
    tl = _Timeline()
    t0 = tl.t0
    if layout.minio_host_port == MINIO_PORT and health.port_in_use(MINIO_PORT):
        # 9000 is a popular port; MinIO's host endpoint is read from minio.json, so any port will do.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            layout = dataclasses.replace(layout, minio_host_port=int(s.getsockname()[1]))
        log(f"127.0.0.1:{MINIO_PORT} is busy: MinIO's host forward uses {layout.minio_host_port}")
    for port in {layout.api_host_port, layout.minio_host_port}:
        if health.port_in_use(port):
            owners = ", ".join(
                f"pid {p} ({' '.join(processes.cmdline(p))[:80]})" for p in processes.listener_pids(port)
            )
            raise ClusterError(
                f"127.0.0.1:{port} is already in use by another process: {owners or 'unknown'}"
            )
    for d in (layout.etcd_data, layout.minio_data, layout.agent_state):
        shutil.rmtree(d, ignore_errors=True)  # a clean start never inherits old objects or pods
    for d in (layout.root, layout.run, layout.logs, layout.etcd_data, layout.minio_data):
        d.mkdir(parents=True, exist_ok=True)
    for old in layout.logs.glob("*.log"):
        old.replace(old.with_suffix(".log.prev"))  # keep the previous run's logs, not all of them
    pki = ensure_pki(layout.pki)
    minio = MinioInfo(
        host_endpoint=f"127.0.0.1:{layout.minio_host_port}",
        pod_endpoint=f"{NODE_IP}:{MINIO_PORT}",
        access_key="kstudio-" + secrets.token_hex(6),
        secret_key=secrets.token_urlsafe(30),
    )
    _write_configs(layout, pki, repo, minio, image_venv)
    netns.ensure_netns(layout.netns)

    def argv(name: str) -> list[str]:
        return component_argv(name, bin_dir, layout, pki, repo)

    env = component_env()
    start_component("etcd", layout, argv("etcd"), env)
    start_component(
        "minio",
        layout,
        argv("minio"),
        component_env(
            {
                "MINIO_ROOT_USER": minio.access_key,
                "MINIO_ROOT_PASSWORD": minio.secret_key,
                "MINIO_BROWSER": "off",
            }
        ),
    )

    def etcd_ok() -> bool:
        status, body = netns.http_get(layout.netns, "http://127.0.0.1:2379/health")
        return status == 200 and '"health":"true"' in body

    _wait("etcd health", etcd_ok, timeout, layout, "etcd", tl)
    start_component("kube-apiserver", layout, argv("kube-apiserver"), env)
    ctx = health.api_context(pki)

    def api_ok_inside() -> bool:
        status, body = netns.http_get(layout.netns, f"https://127.0.0.1:{API_PORT}/readyz", context=ctx)
        return status == 200 and body.strip() == "ok"

    _wait("kube-apiserver /readyz", api_ok_inside, timeout, layout, "kube-apiserver", tl)
    log(f"API server ready after {time.monotonic() - t0:.1f}s")
    start_component("forward", layout, argv("forward"), env)
    for name in ("kube-controller-manager", "kube-scheduler"):
        start_component(name, layout, argv(name), env)
    if agent:
        layout.agent_state.mkdir(parents=True, exist_ok=True)
        start_component("node-agent", layout, argv("node-agent"), env)
    _wait(
        "host forward to the API server",
        lambda: health.api_ready(layout, pki),
        timeout,
        layout,
        "forward",
        tl,
    )
    insecure = health.insecure_context()
    for name, url in (
        ("kube-controller-manager", "https://127.0.0.1:10257/healthz"),
        ("kube-scheduler", "https://127.0.0.1:10259/healthz"),
    ):

        def ok(url: str = url) -> bool:
            return netns.http_get(layout.netns, url, context=insecure)[0] == 200

        _wait(f"{name} /healthz", ok, timeout, layout, name, tl)
    if agent:
        # kube-proxy waits up to 30 s for its Node to exist before it programs anything: start it after.
        _wait(
            f"node {NODE_NAME} Ready",
            lambda: health.node_ready(layout, pki),
            timeout,
            layout,
            "node-agent",
            tl,
        )
        start_component("kube-proxy", layout, argv("kube-proxy"), env)
        _wait("kube-proxy's nftables table", lambda: "table ip kube-proxy" in netns.nft_tables(layout.netns),
              timeout, layout, "kube-proxy", tl)  # fmt: skip
    else:
        start_component("kube-proxy", layout, argv("kube-proxy"), env)  # no Node: it syncs 30 s later
    _wait("MinIO ready", lambda: health.minio_ready(layout), timeout, layout, "minio", tl)
    _wait("the default ServiceAccount (controllers working)", lambda: health.default_sa_exists(layout, pki),
          timeout, layout, "kube-controller-manager", tl)  # fmt: skip
    state = {
        "name": layout.name,
        "repo": str(repo),
        "binDir": str(bin_dir),
        "startedBy": started_by,
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "apiHostPort": layout.api_host_port,
        "minioHostPort": layout.minio_host_port,
        "agent": agent,
        "agentFingerprint": agent_fingerprint(repo, image_venv) if agent else "",
        "imageVenv": str(image_venv or ""),
        "startup": tl.steps,
    }
    sessions.write_json(layout.state_json, state)
    if not agent and not agent_available(repo):
        log("node agent not present yet (hack/kstudio_localcluster/nodeagent/cli.py); pods will stay Pending")
    log(f"cluster ready after {time.monotonic() - t0:.1f}s")
    return layout


def _repair_agent(
    layout: ClusterLayout,
    state: dict[str, Any],
    repo: Path,
    bin_dir: Path,
    timeout: float,
    log: Log,
    image_venv: Path | None,
) -> None:
    """On reuse: (re)start the node agent if it is missing, dead or its code or image venv changed.

    A changed agent is restarted only when no other session uses the cluster: its restart stops and
    reruns every pod, which would upset running tests (`kstudio-dev cluster down` then `up` forces it).
    """
    if not state.get("agent"):
        return
    fp = agent_fingerprint(repo, image_venv)
    rec = processes.read_record(layout.run, "node-agent")
    alive = rec is not None and processes.record_alive(rec)
    if alive and state.get("agentFingerprint") == fp:
        return
    if rec is not None and alive:
        others = sessions.other_users(layout)
        if others:
            log(
                f"warning: node agent code or image venv changed; not restarting it while {len(others)} "
                "session(s) use it"
            )
            return
        log("node agent code or image venv changed: restarting it")
        processes.stop(rec, grace=STOP_GRACE["node-agent"])
    else:
        log("node agent not running: starting it")
    _write_configs(layout, Pki(layout.pki), repo, _minio_info(layout) or _missing_minio(layout), image_venv)
    state["agentFingerprint"] = fp
    state["imageVenv"] = str(image_venv or "")
    sessions.write_json(layout.state_json, state)
    _start_agent(layout, Pki(layout.pki), repo, bin_dir, timeout)


def _missing_minio(layout: ClusterLayout) -> MinioInfo:
    raise ClusterError(f"{layout.minio_json} is missing or invalid")


def _info(
    layout: ClusterLayout, bin_dir: Path, reused: bool, started_by: StartedBy, agent: bool
) -> ClusterInfo:
    minio = _minio_info(layout) or _missing_minio(layout)
    return ClusterInfo(
        layout=layout,
        kubeconfig=layout.kubeconfig,
        api_server=f"https://127.0.0.1:{layout.api_host_port}",
        minio=minio,
        bin_dir=bin_dir,
        node_agent=agent,
        reused=reused,
        started_by=started_by,
    )


def ensure_up(
    layout: ClusterLayout | None = None,
    *,
    bin_dir: Path | None = None,
    started_by: StartedBy = "cli",
    register_user: bool = False,
    timeout: float = 90.0,
    agent: bool | None = None,
    image_venv: Path | None = None,
    fake_nodes: int | None = None,
    log: Log = _stderr,
) -> ClusterInfo:
    """Return a ready cluster: reuse a healthy one, else clean up leftovers and start one.

    `register_user=True` records this process as a user (see `release`). `agent` None starts the
    node agent when its code exists; False never (control-plane-only instances in tests). `image_venv`
    is what `kstudio` images run (default: the checkout's .venv). `fake_nodes` N: exactly N Ready kwok
    nodes (0 removes them); None keeps what the cluster has. Raises ClusterError naming the
    missing tool, or the failing component with the last error line of its log.
    """
    layout = layout or ClusterLayout()
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (network namespaces, cgroups, nftables)")
    if missing := hosttools.missing_tools():
        raise ClusterError(hosttools.missing_message(missing))
    repo = repo_root()
    if fake_nodes and bin_dir is not None and not (bin_dir / "kwok").exists():
        bin_dir = None  # the same directory, once kwok is built and linked into it
    bin_dir = bin_dir or resolve_bin_dir(repo, log, ("kwok",) if fake_nodes else ())
    want_agent = agent_available(repo) and agent is not False
    waited_since: float | None = None
    while True:
        with sessions.cluster_lock(layout):
            busy = _busy_with_another_setup(sessions.effective(layout), repo, bin_dir, want_agent)
            if not busy:
                break
        # Another checkout's (or another setting's) test sessions are using it: replacing it now would
        # kill their pods mid-test, so wait for them to finish, as one machine has one cluster.
        now = time.monotonic()
        if waited_since is None:
            waited_since = now
            log(f"waiting for the running cluster to be free: {busy}")
        if now - waited_since > CLUSTER_WAIT_SECONDS:
            raise ClusterError(f"gave up after {CLUSTER_WAIT_SECONDS:.0f}s waiting: {busy}")
        time.sleep(5)
    with sessions.cluster_lock(layout):
        layout = sessions.effective(layout)
        state = sessions.read_json(layout.state_json) or {}
        reason = _control_plane_healthy(layout, state, repo, bin_dir) if state else "no cluster state"
        if not reason and bool(state.get("agent")) != want_agent:
            reason = "it was started with a different node agent setting"
        if not reason and (outdated := _flags_outdated(layout, repo, bin_dir)):
            if sessions.other_users(layout):  # never pull a working cluster from under running test sessions
                log(f"warning: {outdated}; reusing it anyway while other sessions use it")
            else:
                reason = outdated
        if not reason:
            log(f"reusing the running cluster (started {state.get('startedAt')} by {state.get('startedBy')})")
            if started_by == "cli" and state.get("startedBy") != "cli":
                state["startedBy"] = "cli"  # someone asked for it by hand: no fixture may take it down
                sessions.write_json(layout.state_json, state)
            _repair_agent(layout, state, repo, bin_dir, timeout, log, image_venv)
            if fake_nodes is None:
                fakenodes.repair(layout, repo, bin_dir, state, timeout, log)
            info = _info(layout, bin_dir, True, state["startedBy"], want_agent)
        else:
            left = cleanup.leftovers(layout)
            if left:
                log(f"cleaning up a previous cluster ({reason}): {', '.join(left)}")
                cleanup.teardown_locked(layout, log)
            try:
                layout = _start_clean(layout, repo, bin_dir, started_by, want_agent, timeout, log, image_venv)
            except BaseException:
                log("start failed; tearing down what was started")
                cleanup.teardown_locked(layout, log)
                raise
            info = _info(layout, bin_dir, False, started_by, want_agent)
        if fake_nodes is not None:
            names = fakenodes.ensure(layout, repo, bin_dir, fake_nodes, timeout=timeout, log=log)
            info = dataclasses.replace(info, fake_nodes=tuple(names))
        if register_user:
            layout.users.mkdir(parents=True, exist_ok=True)
            (layout.users / sessions.self_user_id()).touch()
        return info


def release(layout: ClusterLayout | None = None, *, log: Log = _stderr) -> bool:
    """Unregister this process; tear the cluster down if a fixture started it and no user is left.

    Returns True if it tore the cluster down.
    """
    layout = sessions.effective(layout or ClusterLayout())
    with sessions.cluster_lock(layout):
        (layout.users / sessions.self_user_id()).unlink(missing_ok=True)
        state = sessions.read_json(layout.state_json) or {}
        if state.get("startedBy") == "fixture" and not sessions.live_users(layout):
            cleanup.teardown_locked(layout, log)
            return True
        return False


def teardown(layout: ClusterLayout | None = None, *, log: Log = _stderr) -> None:
    """Stop every process and remove netns, pod netns, cgroups and runtime data. Idempotent."""
    layout = sessions.effective(layout or ClusterLayout())
    with sessions.cluster_lock(layout):
        cleanup.teardown_locked(layout, log)


# ---------------------------------------------------------------- status


def status(layout: ClusterLayout | None = None) -> dict[str, Any]:
    """A JSON-able report: state, each component's pid/alive/RSS, namespace, API readiness."""
    layout = sessions.effective(layout or ClusterLayout())
    state = sessions.read_json(layout.state_json)
    comps: dict[str, Any] = {}
    for name in (*COMPONENTS, *OPTIONAL_COMPONENTS):
        rec = processes.read_record(layout.run, name)
        alive = rec is not None and processes.record_alive(rec)
        comps[name] = {
            "pid": rec.pid if rec else None,
            "alive": alive,
            "rssBytes": processes.rss_bytes(rec.pid) if rec and alive else 0,
        }
    api_ready = False
    fake: list[dict[str, Any]] = []
    if state:
        with contextlib.suppress(OSError, ssl.SSLError):
            api_ready = health.api_ready(layout, Pki(layout.pki))
        with contextlib.suppress(OSError, ssl.SSLError, ClusterError):
            fake = fakenodes.list_nodes(layout, Pki(layout.pki)) if api_ready else []
    return {
        "running": bool(state) and api_ready,
        "state": state,
        "netns": netns.exists(layout.netns),
        "apiReady": api_ready,
        "kubeconfig": str(layout.kubeconfig),
        "components": comps,
        "fakeNodes": fake,
        "leftovers": cleanup.leftovers(layout) if not state else [],
    }
