"""Local cluster figures: warm `up` to ready, reuse, `down`, and control-plane RSS per process.

Runs its own instance (netns `kstudio-bench`, temporary state dir, free host ports; with --agent its own
node agent too), so the shared cluster is never touched. Binaries must be built (hack/build-binaries.sh).
Usage:
    .venv/bin/python bench/cluster_up.py [--runs 3] [--agent]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kstudio_localcluster import cluster, processes
from kstudio_localcluster.layout import ClusterLayout, repo_root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agent", action="store_true", help="also start the node agent (Node Ready)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to let RSS settle before reading")
    args = parser.parse_args()
    bin_dir = cluster.resolve_bin_dir(repo_root())
    with tempfile.TemporaryDirectory(prefix="kstudio-bench-") as tmp:
        layout = ClusterLayout(
            name="kstudio-bench",
            root=Path(tmp) / "cluster",
            api_host_port=_free_port(),
            minio_host_port=_free_port(),
        )
        ups, api, reuse, downs = [], [], [], []
        rss: dict[str, int] = {}
        try:
            for i in range(args.runs):
                msgs: list[str] = []
                t0 = time.monotonic()
                cluster.ensure_up(layout, bin_dir=bin_dir, agent=args.agent, log=msgs.append)
                ups.append(time.monotonic() - t0)
                api += [float(m.split()[-1].rstrip("s")) for m in msgs if m.startswith("API server ready")]
                t0 = time.monotonic()
                cluster.ensure_up(layout, bin_dir=bin_dir, agent=args.agent, log=lambda _: None)
                reuse.append(time.monotonic() - t0)
                if i == args.runs - 1:
                    time.sleep(args.settle)
                    rss = {
                        r.name: processes.rss_bytes(r.pid)
                        for r in processes.all_records(layout.run)
                        if processes.record_alive(r)
                    }
                t0 = time.monotonic()
                cluster.teardown(layout, log=lambda _: None)
                downs.append(time.monotonic() - t0)
        finally:
            cluster.teardown(layout, log=lambda _: None)

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f}s (runs: {', '.join(f'{x:.2f}' for x in xs)})"

    print(f"up (clean start to ready, {'with' if args.agent else 'no'} node agent): {fmt(ups)}")
    print(f"  of which API server /readyz:        {fmt(api)}")
    print(f"up (reuse of a healthy cluster):     {fmt(reuse)}")
    print(f"down:                                {fmt(downs)}")
    print(f"RSS after {args.settle:.0f}s idle:")
    for name, b in sorted(rss.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {b / 2**20:6.0f} MiB")
    print(f"  {'total':<24} {sum(rss.values()) / 2**20:6.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
