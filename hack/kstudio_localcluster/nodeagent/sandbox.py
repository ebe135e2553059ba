"""Pod sandboxes: one network namespace per pod, wired by the CNI loopback + bridge/host-local plugins."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/var/run/netns")
NETNS_PREFIX = "kst-"


class SandboxError(Exception):
    pass


@dataclass
class Sandbox:
    pod_uid: str
    netns_name: str
    ip: str

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns_name)


def netns_name(pod_uid: str, prefix: str = NETNS_PREFIX) -> str:
    return prefix + pod_uid.replace("-", "")[:12]


def bridge_conf(bridge: str, pod_cidr: str, gateway: str, ipam_dir: Path) -> dict[str, Any]:
    net = pod_cidr.rsplit(".", 1)[0]
    return {
        "cniVersion": "1.0.0",
        "name": "kstudio",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "subnet": pod_cidr,
            "gateway": gateway,
            "rangeStart": f"{net}.10",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(ipam_dir),
        },
    }


class CniNetwork:
    def __init__(
        self,
        cni_bin_dir: Path,
        bridge: str,
        pod_cidr: str,
        gateway: str,
        state_dir: Path,
        prefix: str = NETNS_PREFIX,
    ) -> None:
        self.prefix = prefix
        self.bin_dir = cni_bin_dir
        self.conf = bridge_conf(bridge, pod_cidr, gateway, state_dir / "cni-ipam")
        self.loopback = {"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}

    def _exec(self, command: str, conf: dict[str, Any], container_id: str, netns: str, ifname: str) -> Any:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.bin_dir),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        out = subprocess.run(
            [str(self.bin_dir / conf["type"])],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=30,
        )
        if out.returncode != 0:
            detail = out.stdout.decode(errors="replace") or out.stderr.decode(errors="replace")
            raise SandboxError(f"CNI {conf['type']} {command} failed: {detail.strip()}")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def setup(self, pod_uid: str) -> Sandbox:
        """Create the pod's netns and run CNI ADD; returns the sandbox with the pod IP."""
        name = netns_name(pod_uid, self.prefix)
        if not (NETNS_DIR / name).exists():
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
        path = str(NETNS_DIR / name)
        self._exec("ADD", self.loopback, pod_uid, path, "lo")
        result = self._exec("ADD", self.conf, pod_uid, path, "eth0")
        ips = result.get("ips") or []
        if not ips:
            raise SandboxError(f"CNI bridge ADD returned no IP: {result}")
        return Sandbox(pod_uid, name, ips[0]["address"].split("/")[0])

    def teardown(self, pod_uid: str) -> None:
        """CNI DEL and remove the netns; idempotent (DEL of a missing netns still frees the IP)."""
        name = netns_name(pod_uid, self.prefix)
        path = str(NETNS_DIR / name)
        with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
            self._exec("DEL", self.conf, pod_uid, path if (NETNS_DIR / name).exists() else "", "eth0")
        if (NETNS_DIR / name).exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            with contextlib.suppress(FileNotFoundError):
                (NETNS_DIR / name).unlink()

    def leftover_netns(self) -> list[str]:
        if not NETNS_DIR.exists():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(self.prefix))

    def teardown_by_name(self, name: str, container_id: str) -> None:
        path = NETNS_DIR / name
        with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
            self._exec("DEL", self.conf, container_id, str(path), "eth0")
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
