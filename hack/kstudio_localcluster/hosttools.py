"""The host programs the local cluster runs, each with the Debian package that provides it.

hack/prereqs.sh installs the same packages before anything long starts (a unit test keeps the two lists
equal); `ensure_up` checks again right before it starts processes, so a missing tool is reported in one
line ("nft not found: apt-get install nftables") instead of as a component dying with only a log path.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostTool:
    program: str  # a name looked up in PATH, or an absolute path
    package: str  # the Debian package that provides it
    used_by: str

    def present(self, path: str | None = None) -> bool:
        if os.path.isabs(self.program):
            return os.access(self.program, os.X_OK)
        return shutil.which(self.program, path=path) is not None


REQUIRED = (
    HostTool("nft", "nftables", "kube-proxy (nftables mode) and cleanup"),
    HostTool("/usr/lib/cni/bridge", "containernetworking-plugins", "the node agent's pod network"),
    HostTool("/usr/lib/cni/host-local", "containernetworking-plugins", "the node agent's pod IPs"),
    HostTool("/usr/lib/cni/loopback", "containernetworking-plugins", "the node agent's pod loopback"),
    HostTool("openssl", "openssl", "the cluster's PKI"),
    HostTool("ip", "iproute2", "network namespaces"),
    HostTool("sysctl", "procps", "IP forwarding in the cluster's namespace"),
    HostTool("nsenter", "util-linux", "the node agent's exec probes"),
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools(path: str | None = None) -> list[HostTool]:
    search = f"{path or os.environ.get('PATH', '')}:{SYSTEM_PATH}"
    return [t for t in REQUIRED if not t.present(search)]


def packages(tools: list[HostTool]) -> list[str]:
    return sorted({t.package for t in tools})


def missing_message(tools: list[HostTool]) -> str:
    """One line naming what is missing and the command that installs it."""
    names = ", ".join(dict.fromkeys(Path(t.program).name if "/cni/" not in t.program else t.program
                                    for t in tools))  # fmt: skip
    return f"{names} not found: apt-get install {' '.join(packages(tools))} (or run: make prereqs)"


# `exec: "nft": executable file not found` (Go, quotes escaped in klog), `sh: 1: nft: not found`, ...
_NOT_FOUND = re.compile(r"""\\?"?([\w./-]+)\\?"?:? (?:executable file )?not found""")


def diagnose_log_line(line: str) -> str:
    """A log line that says a host program is missing -> the one-line fix, else the line itself."""
    for match in _NOT_FOUND.finditer(line):
        program = match.group(1)
        for tool in REQUIRED:
            if program in (tool.program, Path(tool.program).name):
                return missing_message([tool])
    return line
