"""`kstudio-dev cluster up|down|status`: the local control plane, MinIO and the node agent."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kstudio_localcluster import cluster
from kstudio_localcluster.certs import PkiError
from kstudio_localcluster.layout import ClusterLayout, cache_root
from kstudio_localcluster.netns import NetnsError


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kstudio-dev cluster", description=__doc__)
    default = ClusterLayout()  # the default instance, or $KSTUDIO_CLUSTER_INSTANCE's (see layout.py)
    parser.add_argument(
        "--name", default=default.name, help=f"instance name = its netns (default {default.name})"
    )
    parser.add_argument("--root", type=Path, help=f"state directory (default {default.root})")
    parser.add_argument("--api-port", type=int, default=default.api_host_port,
                        help="host port of the API forward")  # fmt: skip
    parser.add_argument("--minio-port", type=int, default=default.minio_host_port,
                        help="host port of the MinIO forward")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster (or reuse a healthy one); prints the KUBECONFIG export")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each component")
    up.add_argument("--image-venv", type=Path, help="venv that `kstudio` images run (default: the checkout's "
                    ".venv; `kstudio-dev image-venv` builds the product wheel's)")  # fmt: skip
    up.add_argument("--fake-nodes", type=int, metavar="N",
                    help="exactly N kwok nodes kwok-node-0..N-1 (taint kwok.x-k8s.io/node=fake:NoSchedule, "
                    "label type=kwok), their pods Ready without running; 0 removes them; "
                    "default: keep what runs")  # fmt: skip
    sub.add_parser("down", help="stop everything and remove netns, cgroups and runtime data")
    st = sub.add_parser("status", help="what runs, with RSS; exit 0 if the API server is ready")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(list(argv))
    layout = ClusterLayout(
        name=args.name,
        root=args.root
        or (default.root if args.name == default.name else cache_root() / f"cluster-{args.name}"),
        api_host_port=args.api_port,
        minio_host_port=args.minio_port,
    )
    try:
        if args.command == "up":
            info = cluster.ensure_up(
                layout, timeout=args.timeout, image_venv=args.image_venv, fake_nodes=args.fake_nodes
            )
            print(f"export KUBECONFIG={info.kubeconfig}")
            print(f"export PATH={info.bin_dir}:$PATH  # kubectl v1.36.3, built with the cluster")
            print(f"# MinIO: {info.minio.host_endpoint} (host), {info.minio.pod_endpoint} (pods); "
                  f"credentials in {info.layout.minio_json}")  # fmt: skip
            return 0
        if args.command == "down":
            cluster.teardown(layout)
            print("kstudio-dev cluster: down (no process, netns, cgroup or runtime data left)",
                  file=sys.stderr)  # fmt: skip
            return 0
        report = cluster.status(layout)
    except (cluster.ClusterError, NetnsError, PkiError) as exc:
        print(f"kstudio-dev cluster: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"running: {report['running']}  netns: {report['netns']}  kubeconfig: {report['kubeconfig']}")
        for name, c in report["components"].items():
            rss = f"{c['rssBytes'] / 2**20:.0f} MiB" if c["alive"] else "-"
            if c["pid"] or name not in cluster.OPTIONAL_COMPONENTS:
                print(f"  {name:<24} {'up' if c['alive'] else 'down':<5} pid {c['pid'] or '-':<8} rss {rss}")
        if fake := report["fakeNodes"]:
            ready = sum(1 for n in fake if n["ready"])
            print(f"  fake nodes (kwok): {len(fake)}, {ready} Ready: {', '.join(n['name'] for n in fake)}")
        for item in report["leftovers"]:
            print(f"  leftover: {item}")
    return 0 if report["running"] else 3
