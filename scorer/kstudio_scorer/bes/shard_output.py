"""Where a BatchJob shard writes: a stream uploaded to the store while it is written.

A part is never spooled to disk: pyarrow's writer writes into an `UploadSink`, whose bytes a thread uploads
as a multipart upload, part by part (memory: a few MiB, whatever the part's size; scoring and uploading
overlap). The object appears only when `finish()` completes the upload, whole; `abort()` (or any error)
aborts it and nothing appears: a retried shard simply writes its part again.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from dataclasses import dataclass
from typing import Any

from kstudio_core.storage import STREAM_PART_BYTES

_END = object()
_HANDOFF_BYTES = 1024 * 1024
_QUEUED_HANDOFFS = 4


@dataclass(frozen=True)
class Written:
    """An object as it was uploaded: where, how big, its sha256, and its first line's length."""

    uri: str
    size_bytes: int
    sha256: str
    first_line_bytes: int


class _Abort:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _QueueStream(io.RawIOBase):
    """The reading end: what the upload thread hands to ObjectStore.put_stream."""

    def __init__(self, handoffs: queue.Queue[Any]) -> None:
        self._handoffs = handoffs
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            item = self._handoffs.get()
            if item is _END:
                return 0
            if isinstance(item, _Abort):
                raise item.error  # put_object aborts the multipart upload
            self._pending = memoryview(item)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class UploadSink(io.RawIOBase):
    """A writable, tell()-able file whose bytes become the object `uri` (pyarrow writes Parquet and CSV
    into it). Closing it (pyarrow does) does not publish: `finish()` does; `abort()` discards."""

    def __init__(self, store: Any, uri: str, content_type: str, part_bytes: int = STREAM_PART_BYTES) -> None:
        self.uri = uri
        self._handoffs: queue.Queue[Any] = queue.Queue(maxsize=_QUEUED_HANDOFFS)
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._first_line = -1
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(
            target=self._upload, args=(store, uri, content_type, part_bytes), daemon=True
        )
        self._thread.start()

    def _upload(self, store: Any, uri: str, content_type: str, part_bytes: int) -> None:
        try:
            store.put_stream(_QueueStream(self._handoffs), uri, content_type, part_bytes)
        except BaseException as exc:  # handed to the writer at its next write or at finish()
            self._error = exc

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if self._first_line < 0:
            newline = chunk.find(b"\n")
            if newline >= 0:
                self._first_line = self._size + newline + 1
        self._digest.update(chunk)
        self._size += len(chunk)
        self._buffer += chunk
        if len(self._buffer) >= _HANDOFF_BYTES:
            self._hand_off(bytes(self._buffer))
            self._buffer.clear()
        return len(chunk)

    def _hand_off(self, item: Any) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._handoffs.put(item, timeout=1.0)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError(f"the upload of {self.uri} stopped") from self._error

    @property
    def size(self) -> int:
        return self._size

    def finish(self) -> Written:
        """Upload what is left and complete the object; raises what the upload raised."""
        if self._buffer:
            self._hand_off(bytes(self._buffer))
            self._buffer.clear()
        self._hand_off(_END)
        self._thread.join()
        self._done = True
        if self._error is not None:
            raise self._error
        first = self._first_line if self._first_line >= 0 else self._size
        return Written(self.uri, self._size, self._digest.hexdigest(), first)

    def abort(self, error: BaseException | None = None) -> None:
        """Discard: the multipart upload is aborted and no object appears."""
        if self._done:
            return
        self._done = True
        if self._thread.is_alive():
            try:
                self._handoffs.put(_Abort(error or RuntimeError("aborted")), timeout=30)
            except queue.Full:
                return  # the thread is stuck in a request; it is a daemon and dies with the process
            self._thread.join(timeout=30)
