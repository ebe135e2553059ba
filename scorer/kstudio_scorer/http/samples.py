"""Request/response samples to object storage (Azure's endpoint logging: None, Error or All).

Level Error records failed calls (route, status, error); level All also records successful calls with their
request and response bodies. A mirror's disagreements (http/mirror.py) go to a logger of their own, under
`<prefix>/mirror/`, at either level. Headers are never recorded, so API keys never reach storage. Records are
queued (bounded; overflow is counted, never blocks a request) and written by one background thread as
JSON-lines objects `<prefix>/YYYY/MM/DD/HH/<time>-<random>.jsonl`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from kstudio_core.storage import ObjectStore, S3Uri, StorageError

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
RECORDS_PER_OBJECT = 1_000


class SampleLogger:
    def __init__(
        self,
        level: str,
        uri: str,
        store_factory: Callable[[], ObjectStore],
        *,
        flush_seconds: float = 5.0,
        max_body_bytes: int = 64 * 1024,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.level = level
        if not uri.startswith("s3://") or not uri[5:].partition("/")[0]:
            raise ValueError(f"logging URI must be s3://bucket[/prefix], got {uri!r}")
        bucket, _, prefix = uri[5:].partition("/")
        self._bucket = bucket
        self._key_prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._store_factory = store_factory
        self._flush_seconds = flush_seconds
        self._max_body = max_body_bytes
        self._on_dropped = on_dropped or (lambda n: None)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread = threading.Thread(target=self._run, name="kstudio-samples", daemon=True)
        self._thread.start()
        self.written_objects: list[str] = []

    def wants(self, status: int) -> bool:
        return self.level == "All" or (self.level == "Error" and status >= 400)

    def _body(self, body: bytes | None) -> Any:
        if not body:
            return None
        if len(body) > self._max_body:
            return {
                "truncated": True,
                "bytes": len(body),
                "head": body[: self._max_body].decode("utf-8", "replace"),
            }
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return {"text": body.decode("utf-8", "replace")}

    def record(
        self,
        *,
        route: str,
        status: int,
        request: bytes | None,
        response: bytes | None,
        error: str | None = None,
    ) -> None:
        """Queue one sample if the level wants it. Never raises, never blocks."""
        if not self.wants(status):
            return
        item: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "route": route,
            "status": status,
        }
        if error is not None:
            item["error"] = error
        if self.level == "All":
            item["request"] = self._body(request)
            item["response"] = self._body(response) if status < 400 else None
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._on_dropped(1)

    def record_disagreement(
        self,
        *,
        route: str,
        model: str,
        mirror: str,
        rows: int,
        differing: int,
        sample: dict[str, Any],
        request: bytes,
    ) -> None:
        """Queue a copy the mirror answered otherwise than `model` (http/mirror.py). Never raises, never
        blocks."""
        item: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(),
            "route": route,
            "model": model,
            "mirror": mirror,
            "rows": rows,
            "differing": differing,
            **sample,
            "request": self._body(request),
        }
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._on_dropped(1)

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=self._flush_seconds)
                if item is None:
                    stopping = True
                else:
                    pending.append(item)
                    while len(pending) < RECORDS_PER_OBJECT:
                        nxt = self._queue.get_nowait()
                        if nxt is None:
                            stopping = True
                            break
                        pending.append(nxt)
            except queue.Empty:
                pass
            if pending and (stopping or len(pending) >= RECORDS_PER_OBJECT or self._queue.empty()):
                self._write(pending)
                pending = []

    def _write(self, records: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        key = f"{self._key_prefix}{now:%Y/%m/%d/%H}/{now:%H%M%S%f}-{secrets.token_hex(4)}.jsonl"
        uri = S3Uri(self._bucket, key)
        data = b"\n".join(orjson.dumps(r) for r in records) + b"\n"
        try:
            self._store_factory().put_bytes(data, uri, content_type="application/x-ndjson")
            self.written_objects.append(str(uri))
        except StorageError as exc:
            log.warning("could not write %d log samples to %s: %s", len(records), uri, exc)
            self._on_dropped(len(records))

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued and stop the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
