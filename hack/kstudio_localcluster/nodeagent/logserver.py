"""The kubelet's containerLogs endpoint over TLS, so `kubectl logs` works (API server -> node:10250).

Only clients presenting a certificate signed by the cluster's client CA (the API server's kubelet client
cert) are served. Supports tailLines, follow, timestamps, limitBytes, sinceSeconds and previous.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .context import log

# (namespace, pod, container, previous) -> (log file, still running?) or None
LogLocator = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]


def parse_cri_line(raw: bytes) -> tuple[str, str, bool, bytes] | None:
    """(timestamp, stream, full_line, text) of one CRI log record."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2] == b"F", text


def render(raw: bytes, timestamps: bool) -> bytes:
    rec = parse_cri_line(raw)
    if rec is None:
        return b""
    ts, _, full, text = rec
    return (ts.encode() + b" " if timestamps else b"") + text + (b"\n" if full else b"")


def _since_ok(raw: bytes, since: float | None) -> bool:
    if since is None:
        return True
    rec = parse_cri_line(raw)
    if rec is None:
        return False
    stamp = datetime.strptime(rec[0][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return stamp >= since


def log_chunks(
    path: Path,
    tail: int | None,
    follow: bool,
    timestamps: bool,
    since: float | None,
    running: Callable[[], bool],
) -> Iterator[bytes]:
    with open(path, "rb") as f:
        lines = f.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for raw in lines:
            if _since_ok(raw, since):
                yield render(raw, timestamps)
        if not follow:
            return
        pending = b""
        while True:
            chunk = f.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    yield render(pending, timestamps)
                    pending = b""
                continue
            if not running():
                return
            time.sleep(0.2)


def make_handler(locate: LogLocator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("logserver: " + format, *args)

        def _fail(self, code: int, message: str) -> None:
            body = message.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/healthz":
                self._fail(200, "ok")
                return
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._fail(404, f"not found: {url.path}")
                return
            q = urllib.parse.parse_qs(url.query)

            def flag(name: str) -> bool:
                return q.get(name, ["false"])[0].lower() in {"true", "1"}

            _, namespace, pod, container = parts
            found = locate(namespace, pod, container, flag("previous"))
            if found is None:
                self._fail(
                    404, f'container "{container}" in pod "{pod}" in namespace "{namespace}" has no logs'
                )
                return
            path, running = found
            tail = int(q["tailLines"][0]) if "tailLines" in q else None
            limit = int(q["limitBytes"][0]) if "limitBytes" in q else None
            since = time.time() - int(q["sinceSeconds"][0]) if "sinceSeconds" in q else None
            if "sinceTime" in q:
                since = datetime.fromisoformat(q["sinceTime"][0].replace("Z", "+00:00")).timestamp()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            try:
                for chunk in log_chunks(path, tail, flag("follow"), flag("timestamps"), since, running):
                    if limit is not None:
                        chunk = chunk[: max(0, limit - sent)]
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        sent += len(chunk)
                    if limit is not None and sent >= limit:
                        break
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # a client without a certificate from the cluster CA ends here: one line, not a traceback
        exc = sys.exc_info()[1]
        log.info("logserver: rejected %s: %s", client_address[0], exc)


class LogServer:
    def __init__(
        self, host: str, port: int, cert: Path, key: Path, client_ca: Path | None, locate: LogLocator
    ) -> None:
        self.httpd = _Server((host, port), make_handler(locate))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        self.httpd.socket = ctx.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="logserver", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
