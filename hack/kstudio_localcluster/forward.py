"""TCP forward from the host's 127.0.0.1 into the cluster namespace.

`python -m kstudio_localcluster.forward --netns kstudio 127.0.0.1:6443=127.0.0.1:6443 ...` listens on
each left address in the host namespace; for every connection it makes a socket inside the cluster
namespace (see netns.socket_in_netns) and connects it to the right address, then copies bytes both
ways. One small process instead of a socat + `ip netns exec` fork per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from kstudio_localcluster.netns import socket_in_netns


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


# asyncio keeps only weak references to the per-connection tasks start_server creates: an idle
# connection (a quiet watch stream) would be garbage-collected mid-flight. Hold them here.
_LIVE: set[asyncio.Task[None]] = set()


async def _handle(
    netns: str, target: tuple[str, int], c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
) -> None:
    task = asyncio.current_task()
    if task is not None:
        _LIVE.add(task)
        task.add_done_callback(_LIVE.discard)
    loop = asyncio.get_running_loop()
    try:
        sock = socket_in_netns(netns)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, target), 10.0)
        t_reader, t_writer = await asyncio.open_connection(sock=sock)
    except (OSError, TimeoutError) as exc:
        print(f"forward: cannot reach {target[0]}:{target[1]} in netns {netns}: {exc}", file=sys.stderr)
        c_writer.close()
        return
    try:
        await asyncio.gather(_pipe(c_reader, t_writer), _pipe(t_reader, c_writer))
    finally:
        for w in (t_writer, c_writer):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def serve(netns: str, mappings: Sequence[tuple[tuple[str, int], tuple[str, int]]]) -> None:
    servers = []
    for listen, target in mappings:

        async def handler(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, target: tuple[str, int] = target
        ) -> None:
            await _handle(netns, target, r, w)

        servers.append(await asyncio.start_server(handler, listen[0], listen[1], reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"forward: ready ({len(servers)} listeners into netns {netns})", file=sys.stderr, flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kstudio_localcluster.forward")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--code-hash", default="", help="ignored; lets `up` notice this file changed")
    parser.add_argument("mapping", nargs="+", help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    args = parser.parse_args(argv)
    mappings = []
    for m in args.mapping:
        left, sep, right = m.partition("=")
        if not sep:
            parser.error(f"expected LISTEN=TARGET, got {m!r}")
        try:
            mappings.append((_addr(left), _addr(right)))
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    asyncio.run(serve(args.netns, mappings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
