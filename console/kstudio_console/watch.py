"""One watch per kind (and per namespace, when the console is given namespaces) feeding the cache.

Each follows the API's list-then-watch protocol: LIST once (paged) and hand the items to the cache, then
WATCH from the list's resourceVersion with bookmarks, applying every event; a watch that ends is resumed
from the last version seen, and a 410 Gone (the version is too old) starts over with a LIST. Errors are
kept in the cache (the pages show them) and retried with a capped backoff; a 401 re-reads the
credentials (a projected service account token is rotated).

A small aiohttp client of its own (the console does not import the operator's): GET only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from kstudio_console.cache import KINDS, Kind, ObjectCache

log = logging.getLogger("kstudio.console")

PAGE_SIZE = 500
WATCH_SECONDS = 290  # the server ends each watch after this; resumed at once from the last version
BACKOFF_SECONDS = (1, 2, 5, 10, 30)
_MAX_LINE = 16 * 2**20  # one object per line; the API server's own limit on an object is ~1.5 MiB

Credentials = Callable[[], Any]  # -> kopf.ConnectionInfo (server, as_ssl_context(), as_http_headers())


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Gone(ApiError):
    """The resourceVersion a watch asked for is no longer kept: LIST again."""


def collection_path(kind: Kind, namespace: str) -> str:
    base = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
    return base + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{kind.plural}"


class KubeReader:
    """GET requests to the API server; one aiohttp session, rebuilt with fresh credentials after a 401."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            info = self._credentials()
            if info is None:
                raise ApiError(0, "no cluster credentials: no service account and no KUBECONFIG")
            self._server = str(info.server).rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=64),
                headers={**info.as_http_headers(), "User-Agent": "kstudio-console"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _check(self, resp: aiohttp.ClientResponse, what: str) -> None:
        if resp.status < 300:
            return
        text = await resp.text()
        try:
            message = str(json.loads(text).get("message") or text[:300])
        except (ValueError, AttributeError):
            message = text[:300]
        if resp.status == 401:
            await self.close()  # the next request logs in again
        raise (Gone if resp.status == 410 else ApiError)(resp.status, f"{what}: {message}")

    async def list(self, path: str, query: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        """Every item (following `continue`) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        page = {**query, "limit": str(PAGE_SIZE)}
        while True:
            session = self._open()
            async with session.get(f"{self._server}{path}?{urlencode(page)}") as resp:
                await self._check(resp, f"LIST {path}")
                doc = await resp.json()
            items += doc.get("items") or []
            meta = doc.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion") or "")
            page["continue"] = meta["continue"]

    async def watch(self, path: str, query: dict[str, str], version: str) -> AsyncIterator[dict[str, Any]]:
        """The watch events from `version` on, until the server ends the watch."""
        params = {
            **query,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        session = self._open()
        async with session.get(f"{self._server}{path}?{urlencode(params)}") as resp:
            await self._check(resp, f"WATCH {path}")
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                if len(buffer) > _MAX_LINE:
                    raise ApiError(0, f"WATCH {path}: an event larger than {_MAX_LINE} bytes")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)


class Watches:
    """The watch tasks of one console process."""

    def __init__(self, cache: ObjectCache, reader: KubeReader, namespaces: list[str]) -> None:
        self.cache = cache
        self.reader = reader
        self.scopes = namespaces or [""]  # "": every namespace
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for kind in KINDS:
            for scope in self.scopes:
                self._tasks.append(asyncio.create_task(self.follow(kind, scope), name=f"watch {kind.plural}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.reader.close()

    @property
    def synced(self) -> bool:
        return all((k.plural, s) in self.cache.synced for k in KINDS for s in self.scopes)

    async def follow(self, kind: Kind, scope: str) -> None:
        path = collection_path(kind, scope)
        query = {"labelSelector": kind.selector} if kind.selector else {}
        failures = 0
        while True:
            try:
                items, version = await self.reader.list(path, query)
                self.cache.replace(kind.plural, scope, items)
                self.cache.errors.pop((kind.plural, scope), None)
                failures = 0
                while True:
                    version = await self._watch_once(kind, path, query, version)
            except Gone:
                log.info("watch of %s %s: history expired, listing again", kind.plural, scope or "*")
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                failures += 1
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1]
                message = str(exc) or type(exc).__name__
                self.cache.errors[(kind.plural, scope)] = message
                log.warning(
                    "watch of %s %s failed (%s); again in %d s", kind.plural, scope or "*", message, delay
                )
                await asyncio.sleep(delay)

    async def _watch_once(self, kind: Kind, path: str, query: dict[str, str], version: str) -> str:
        """Apply the events of one watch request; the last resourceVersion seen."""
        async for event in self.reader.watch(path, query, version):
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(410, str(obj.get("message") or "too old resource version"))
                raise ApiError(int(obj.get("code") or 0), str(obj.get("message") or obj))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            self.cache.apply(kind.plural, str(event.get("type")), obj)
        return version
