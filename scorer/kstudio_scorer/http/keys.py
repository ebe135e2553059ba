"""The API keys. They live in files of a mounted Secret (primaryKey, secondaryKey) and are re-read when
the files change, so rotating the Secret rotates the keys without a restart. auth.py asks them.

Comparison is constant-time against every configured key (both are always compared), and a failure says
only "unauthorized": never which key was tried or which one failed. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from pathlib import Path

from kstudio_scorer.errors import UnauthorizedError

log = logging.getLogger(__name__)

KEY_FILES = ("primaryKey", "secondaryKey")


class KeyRing:
    """The currently valid keys, reloaded from `keys_dir` at most every `reload_seconds`."""

    def __init__(self, keys_dir: Path, reload_seconds: float = 1.0) -> None:
        self._dir = keys_dir
        self._reload_seconds = reload_seconds
        self._checked_at = -1e18
        self._stamp: tuple[tuple[int, int, int], ...] = ()
        # Digests, not keys: compare_digest on equal-length values, and no key text kept around.
        self._digests: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        self.reload(force=True)

    def _file_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for name in KEY_FILES:
            try:
                # Kubernetes updates a mounted Secret by swapping a symlink: stat follows it, so the
                # inode/mtime change is seen.
                st = os.stat(self._dir / name)
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((0, 0, 0))
        return tuple(stamps)

    def reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < self._reload_seconds:
            return
        with self._lock:
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp == self._stamp and not force:
                return
            digests = []
            for name in KEY_FILES:
                try:
                    key = (self._dir / name).read_text().strip()
                except OSError:
                    continue
                if key:
                    digests.append(hashlib.sha256(key.encode()).digest())
            if not digests:
                log.warning("no keys in %s: every request will get 401", self._dir)
            elif self._digests and digests != list(self._digests):
                log.info("API keys reloaded from %s (%d keys)", self._dir, len(digests))
            self._digests = tuple(digests)
            self._stamp = stamp

    def check(self, authorization: str | None) -> None:
        """Raise UnauthorizedError unless `authorization` is `Bearer <a valid key>`."""
        self.reload()
        if not authorization:
            raise UnauthorizedError("missing or invalid API key")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        offered = hashlib.sha256(token.encode()).digest()
        ok = False
        for digest in self._digests:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(offered, digest)
        if scheme.lower() != "bearer" or not token or not ok:
            raise UnauthorizedError("missing or invalid API key")
