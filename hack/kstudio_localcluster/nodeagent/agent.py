"""The node agent process: clean up what a previous run left, register the Node, serve logs, and run one
PodWorker per pod bound to this node (list + watch with fieldSelector spec.nodeName)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cgroups import CgroupRoot
from .config import AgentConfig
from .context import NodeContext, log
from .images import compile_image
from .kubeapi import ApiError, KubeClient
from .logserver import LogServer
from .node import NodeRegistration, node_capacity
from .podworker import PodWorker
from .quantity import parse_quantity
from .sandbox import CniNetwork

JSON = dict[str, Any]


class NodeAgent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        client = KubeClient(cfg.kubeconfig, cfg.api_server)
        cap = node_capacity(cfg)
        self.ctx = NodeContext(
            cfg=cfg,
            client=client,
            cni=CniNetwork(
                cfg.cni_bin_dir, cfg.bridge, cfg.pod_cidr, cfg.node_ip, cfg.state_dir, cfg.pod_netns_prefix
            ),
            cgroups=CgroupRoot(cfg.state_dir, cfg.cgroup_parent),
            cpu=parse_quantity(cap["cpu"]),
            memory=parse_quantity(cap["memory"]),
        )
        self.node = NodeRegistration(client, cfg)
        self.workers: dict[str, PodWorker] = {}
        self.finished: dict[str, float] = {}  # uid -> when its worker ended (late watch events are ignored)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.log_server: LogServer | None = None

    # -- startup --------------------------------------------------------------------------------------
    def clean_leftovers(self) -> None:
        """A previous agent's containers, sandboxes and cgroups: kill and remove them all. Pods still bound
        here are then run afresh from the API's view (their status says what happened before)."""
        for pod_dir in self.ctx.cgroups.pod_dirs():
            log.info("cleaning leftover cgroup %s", pod_dir.name)
            self.ctx.cgroups.remove_pod(pod_dir.name)
        pods_dir = self.ctx.pods_dir
        uids = [p.name for p in pods_dir.iterdir()] if pods_dir.exists() else []
        for uid in uids:
            self.ctx.cni.teardown(uid)
        for name in self.ctx.cni.leftover_netns():
            log.info("removing leftover netns %s", name)
            self.ctx.cni.teardown_by_name(name, name)
        shutil.rmtree(pods_dir, ignore_errors=True)
        shutil.rmtree(self.cfg.state_dir / "cni-ipam", ignore_errors=True)
        pods_dir.mkdir(parents=True, exist_ok=True)

    def locate_log(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, Callable[[], bool]] | None:
        with self.lock:
            worker = next((w for w in self.workers.values() if w.key == f"{namespace}/{pod}"), None)
        if worker is None:
            return None
        runner = worker.runner(container)
        if runner is None:
            return None
        restart = runner.rec.restart_count - 1 if previous else runner.rec.restart_count
        if restart < 0:
            return None
        path = runner.log_path(restart)
        if not path.exists():
            path = runner.log_path(restart - 1) if restart > 0 and not previous else path
        if not path.exists():
            return None
        current = restart == runner.rec.restart_count

        def running() -> bool:
            return current and runner.running and not self.stopping.is_set()

        return path, running

    # -- pods -------------------------------------------------------------------------------------------
    def _worker_done(self, uid: str, crashed: bool) -> None:
        with self.lock:
            self.workers.pop(uid, None)
            now = time.monotonic()
            if not crashed:
                self.finished[uid] = now
            for old in [u for u, t in self.finished.items() if now - t > 600]:
                del self.finished[old]

    def _observe(self, etype: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None and uid in self.finished:
                return
        if etype == "DELETED":
            if worker is not None:
                worker.api_deleted()
            return
        if worker is not None:
            worker.update(pod)
            return
        if self.stopping.is_set():
            return
        worker = PodWorker(self.ctx, pod, self._worker_done)
        with self.lock:
            self.workers[uid] = worker
        log.info("pod %s bound here; starting", worker.key)
        worker.start()

    def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.cfg.node_name}"
        while not self.stopping.is_set():
            try:
                listing = self.ctx.client.get("/api/v1/pods", fieldSelector=selector)
                seen = set()
                for pod in listing.get("items", []):
                    seen.add(pod["metadata"]["uid"])
                    self._observe("ADDED", pod)
                with self.lock:
                    gone = [w for uid, w in self.workers.items() if uid not in seen]
                for worker in gone:
                    worker.api_deleted()
                rv = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for event in self.ctx.client.watch("/api/v1/pods", rv, fieldSelector=selector):
                        obj = event.get("object", {})
                        if event["type"] == "ERROR":
                            raise ApiError(
                                int(obj.get("code", 500)), obj.get("reason", ""), obj.get("message", "")
                            )
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event["type"] in {"ADDED", "MODIFIED", "DELETED"}:
                            self._observe(event["type"], obj)
                        if self.stopping.is_set():
                            return
            except (ApiError, OSError, ValueError) as exc:
                if self.stopping.is_set():
                    return
                log.warning("pod watch restarting after: %s", exc)
                time.sleep(1.0)

    # -- run --------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.clean_leftovers()
        threading.Thread(target=self._compile_image, name="compile-image", daemon=True).start()
        self.node.register()
        if self.cfg.serving_cert and self.cfg.serving_key:
            self.log_server = LogServer(
                self.cfg.node_ip,
                self.cfg.kubelet_port,
                self.cfg.serving_cert,
                self.cfg.serving_key,
                self.cfg.client_ca_file,
                self.locate_log,
            )
            self.log_server.start()
        threading.Thread(target=self.node.run, name="node-heartbeat", daemon=True).start()
        watcher = threading.Thread(target=self.watch_pods, name="pod-watch", daemon=True)
        watcher.start()
        log.info("node agent for %s ready (state %s)", self.cfg.node_name, self.cfg.state_dir)
        self.stopping.wait()
        self.shutdown()
        return 0

    def _compile_image(self) -> None:
        try:
            seconds = compile_image(self.cfg.venv, self.cfg.repo, sys.executable)
            log.info("kstudio image byte-compiled in %.1fs", seconds)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("byte-compiling the kstudio image failed: %s", exc)

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every pod's processes and sandbox here (the API objects stay: a new agent reruns them)."""
        self.node.stop.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown()
        deadline = time.monotonic() + 20
        for worker in workers:
            worker.thread.join(max(0.1, deadline - time.monotonic()))
        if self.log_server is not None:
            self.log_server.stop()
        self.clean_leftovers()
        log.info("node agent stopped")


def install_signal_handlers(agent: NodeAgent) -> None:
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
