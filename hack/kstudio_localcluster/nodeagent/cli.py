"""`kstudio-dev node-agent --config FILE`: run the local node agent in the foreground until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, load_config


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kstudio-dev node-agent", description=__doc__)
    parser.add_argument(
        "--config", required=True, type=Path, help="node agent JSON config (from `kstudio-dev cluster up`)"
    )
    parser.add_argument("--log-level", default=os.environ.get("KSTUDIO_NODE_AGENT_LOG", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"kstudio-dev node-agent: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("kstudio-dev node-agent: must run as root (network namespaces, mounts, cgroups)",
              file=sys.stderr)  # fmt: skip
        return 2
    from .agent import NodeAgent, install_signal_handlers

    agent = NodeAgent(cfg)
    install_signal_handlers(agent)
    return agent.run()
