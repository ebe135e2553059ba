"""`kstudio operator`: run the kopf operator; with --leader-election, one of several replicas.

Environment: KUBECONFIG or in-cluster credentials; KSTUDIO_S3_ENDPOINT and keys (or
KSTUDIO_S3_CREDENTIALS_DIR) for verifying artifacts; KSTUDIO_S3_POD_ENDPOINT for what pods use;
KSTUDIO_IMAGE for the training and scorer pods (default `kstudio:<this version>`); KSTUDIO_RESYNC_SECONDS
(the safety-net resync, default 300); KSTUDIO_WORKERS (reconcile workers per kind, default 8);
KSTUDIO_SETTLE_SECONDS (how long a new object's first Pending may wait in memory for its Ready, default 5).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def _stop_while_starting(signum: int, frame: Any) -> None:
    """SIGTERM before kopf has installed its own handler (the imports below take a second or more on a
    busy node): nothing is watched or written yet, so this is a clean stop (exit 0) rather than a death by
    the signal (exit 143), which a rolling update would report as a crash."""
    print("kstudio operator: stopped by SIGTERM while starting", file=sys.stderr, flush=True)
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_while_starting)  # kopf replaces it once it runs
    parser = argparse.ArgumentParser(prog="kstudio operator", description="run the kstudio operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--leader-election",
        metavar="NAMESPACE/NAME",
        default=None,
        help="reconcile only while holding this coordination.k8s.io Lease, so that several replicas can "
        "run with one active (default: always, a single replica)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=10.0,
        help="with --leader-election: seconds without a renewal after which another replica takes over",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    import kopf

    kopf.configure(verbose=args.verbose)
    import kstudio_operator.main  # noqa: F401  (registers the handlers)

    operator_args: dict[str, Any] = {
        "standalone": True,
        "clusterwide": not args.namespace,
        "namespaces": tuple(args.namespace),
    }
    if not args.leader_election:
        kopf.run(liveness_endpoint=args.liveness, **operator_args)
        return 0
    from kstudio_operator.leader import LeaseConfig

    duration = args.lease_seconds
    lease = LeaseConfig.parse(
        args.leader_election, duration=duration, renew_deadline=0.7 * duration, retry=duration / 5
    )
    return asyncio.run(run_elected(lease, args.liveness, operator_args))


async def run_elected(lease: Any, liveness: str | None, operator_args: dict[str, Any]) -> int:
    """Run the operator as a hot standby, and reconcile while this replica holds the Lease (leader.py says
    why this way).

    kopf's watches, indexes and wake-ups run from the start, so the caches and work queues are current
    when the Lease comes; only the reconcile workers wait for it (main.configure, main.lead). Metrics and
    the health endpoint answer from the start too, so a standby replica is live and Ready (it is
    healthy: it waits); `kstudio_operator_leader` says which replica leads."""
    import kopf

    from kstudio_operator import metrics
    from kstudio_operator.kube import Kube
    from kstudio_operator.leader import Elector
    from kstudio_operator.main import credentials
    from kstudio_operator.settings import OperatorConfig

    settings = kopf.OperatorSettings()
    info = credentials(settings)
    if info is None:
        raise SystemExit("kstudio operator: no Kubernetes credentials (in-cluster or KUBECONFIG)")

    async def relogin() -> kopf.ConnectionInfo | None:
        return credentials(settings)

    config = OperatorConfig.from_env()
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    metrics.LEADER.set(0)
    health = await _serve_health(liveness) if liveness else None
    kube = Kube(info, login=relogin)
    elector = Elector(kube, lease)
    leading = asyncio.Event()  # main.configure starts the workers when it is set

    async def elect() -> None:
        """Wait for the Lease, lead, and return once it is lost."""
        await elector.acquire()
        leading.set()
        await elector.hold()

    # The election first: kopf cancels at its stop the tasks made after it started ("hung" ones).
    election = asyncio.create_task(elect(), name="leader election")
    operator = asyncio.create_task(kopf.operator(memo=kopf.Memo(leading=leading), **operator_args))
    try:
        done, _ = await asyncio.wait({election, operator}, return_when=asyncio.FIRST_COMPLETED)
        if election in done:
            # Another replica may take over `duration - renew_deadline` seconds from now: stop at once,
            # mid-reconcile if need be (every write is idempotent; the pod restarts as a candidate).
            log.error("leader election: stopping, this replica no longer holds the Lease")
            logging.shutdown()
            os._exit(1)
        # kopf stopped (SIGTERM: a rolling update, a drain) or failed, leading or standing by.
        election.cancel()
        await elector.release()  # if held: the next replica takes over at once
        operator.result()
    finally:
        await kube.close()
        if health is not None:
            await health.cleanup()
    return 0


async def _serve_health(url: str) -> Any:
    """A /healthz that answers 200 while the event loop runs (what kopf's liveness endpoint answers for an
    operator without probes), for the standby and the leader alike."""
    from aiohttp import web

    where = urlparse(url)

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get(where.path or "/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, where.hostname, where.port).start()
    return runner


if __name__ == "__main__":
    sys.exit(main())
