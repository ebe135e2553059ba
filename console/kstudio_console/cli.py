"""`kstudio console`: the read-only web console.

    kstudio console [-n NAMESPACE ...] [--host 127.0.0.1] [--port 8080] [--fd N]

Reads the cluster with the in-cluster service account or KUBECONFIG (kstudio_core.kubelogin) and the
evaluation reports from object storage (KSTUDIO_S3_*, as `kstudio train`; without them the pages say
that reports cannot be read). Without -n it watches every namespace (its RBAC must allow that).
`--fd` serves on an already-listening socket inherited from the parent (socket activation; `make demo`
uses it to run the console inside the local cluster's network while it listens on this machine's
loopback).

The `kstudio` command (kstudio_cli) hands in what the console must not import itself: the trainer's
comparison renderer and the operator's promotion gate.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kstudio_console.app import Console, Verdicts, create_app
from kstudio_console.cache import ObjectCache
from kstudio_console.evaluations import Renderer
from kstudio_console.reports import Reports
from kstudio_console.watch import KubeReader, Watches
from kstudio_core.kubelogin import cluster_credentials
from kstudio_core.storage import ObjectStore, StorageError, StorageSettings

log = logging.getLogger("kstudio.console")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kstudio console", description="the read-only web console")
    p.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace to show (repeat; default: all)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--fd", type=int, help="serve on this inherited, listening socket instead")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def storage() -> tuple[ObjectStore | None, str]:
    try:
        return ObjectStore(StorageSettings.from_env()), ""
    except StorageError as exc:
        return None, f"object storage is not configured (KSTUDIO_S3_*): {exc}"


def main(
    argv: Sequence[str] | None = None, *, render: Renderer | None = None, verdicts: Verdicts | None = None
) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    store, problem = storage()
    if problem:
        log.warning("%s", problem)
    cache = ObjectCache()
    namespaces = sorted(set(args.namespace))
    console = Console(
        cache=cache,
        reports=Reports(store, render, problem),
        namespaces=namespaces,
        verdicts=verdicts,
        watches=Watches(cache, KubeReader(cluster_credentials), namespaces),
    )
    config = uvicorn.Config(
        create_app(console),
        host=args.host,
        port=args.port,
        fd=args.fd,
        log_level="info",
        access_log=args.verbose,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    where = f"fd {args.fd}" if args.fd is not None else f"http://{args.host}:{args.port}/"
    log.info("kstudio console on %s, namespaces: %s", where, ", ".join(namespaces) or "all")
    uvicorn.Server(config).run()
    return 0
