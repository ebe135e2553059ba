"""Object storage (S3 API, MinIO in our clusters): `s3://bucket/key` URIs, streaming, sha256, clear errors.

Every call has bounded time: connect and read timeouts plus a few retries with backoff on connection
errors and 5xx, after which StorageUnavailableError says "infrastructure, retry later". Errors that will
not go away by retrying (missing bucket or object, bad credentials) have their own classes. Credentials
are never part of a message or a repr.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import MIN_PART_SIZE
from pydantic import BaseModel, ConfigDict, Field

from kstudio_core.environment import StorageEnv, env_name

_CHUNK = 1024 * 1024
# The S3 rule every multipart upload and server-side compose obeys: each part but the last is at least
# this big (5 MiB).
MIN_PART_BYTES: Final = MIN_PART_SIZE
# Part size of streamed uploads (put_stream): the memory one upload holds.
STREAM_PART_BYTES: Final = 8 * 1024 * 1024
# Keys as variables serve processes outside a pod (tests, a workstation); pods read the mounted Secret.
ACCESS_KEY_VARIABLE: Final = env_name("s3_access_key")
SECRET_KEY_VARIABLE: Final = env_name("s3_secret_key")


class StorageError(Exception):
    """Base class for object storage failures. The message names the URI and the reason."""


class ObjectNotFoundError(StorageError):
    """The bucket exists but the object does not."""


class BucketNotFoundError(StorageError):
    """The bucket does not exist."""


class AccessDeniedError(StorageError):
    """Credentials are wrong or lack permission."""


class StorageUnavailableError(StorageError):
    """The server could not be reached or kept failing after retries (infrastructure; retry later)."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Parse `s3://bucket/key`. Raises ValueError naming what is wrong."""
        prefix = "s3://"
        if not uri.startswith(prefix):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len(prefix) :].partition("/")
        if not bucket:
            raise ValueError(f"s3 URI has no bucket: {uri!r}")
        if not key or key.endswith("/"):
            raise ValueError(f"s3 URI has no object key: {uri!r}")
        check_bucket_name(bucket)
        return cls(bucket=bucket, key=key)

    def with_suffix(self, suffix: str) -> S3Uri:
        """The URI of a sibling object: `s3://b/m.ilearner` -> `s3://b/m.ilearner.result.json`."""
        return S3Uri(self.bucket, self.key + suffix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(bucket: str) -> None:
    """Raise ValueError unless `bucket` is a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')."""
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )


class StorageSettings(BaseModel):
    """Where the object store is and how to authenticate.

    Timeouts are seconds. `retries` counts extra attempts on connection errors and 5xx responses.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(min_length=1, description="host:port, no scheme")
    access_key: str = Field(repr=False)
    secret_key: str = Field(repr=False)
    secure: bool = False
    region: str = "us-east-1"
    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        """Read the storage part of the pod environment (`kstudio_core.environment.StorageEnv`:
        KSTUDIO_S3_ENDPOINT, _SECURE, _CREDENTIALS_DIR, _REGION) and the keys.

        Keys come from the files `accessKey` and `secretKey` in KSTUDIO_S3_CREDENTIALS_DIR (a mounted
        Secret: what pods use) or, outside a pod, from KSTUDIO_S3_ACCESS_KEY / KSTUDIO_S3_SECRET_KEY.
        Raises StorageError naming the missing or wrong setting (never a key).
        """
        env = os.environ if environ is None else environ
        try:
            where = StorageEnv.read(env)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        if where.s3_credentials_dir:
            access_key = _read_secret_file(Path(where.s3_credentials_dir) / "accessKey")
            secret_key = _read_secret_file(Path(where.s3_credentials_dir) / "secretKey")
        else:
            access_key = env.get(ACCESS_KEY_VARIABLE, "")
            secret_key = env.get(SECRET_KEY_VARIABLE, "")
            missing = [
                n for n, v in ((ACCESS_KEY_VARIABLE, access_key), (SECRET_KEY_VARIABLE, secret_key)) if not v
            ]
            if missing:
                directory = env_name("s3_credentials_dir")
                raise StorageError(f"{' and '.join(missing)} not set (or set {directory})")
        extra: dict[str, Any] = {}
        if where.s3_region is not None:
            extra["region"] = where.s3_region
        return cls(
            endpoint=where.s3_endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=where.s3_secure,
            **extra,
        )

    def to_env(self) -> dict[str, str]:
        """The environment `from_env` reads, keys included (for child processes; never log it)."""
        where = StorageEnv(s3_endpoint=self.endpoint, s3_secure=self.secure, s3_region=self.region)
        return {entry["name"]: entry["value"] for entry in where.container_env()} | {
            ACCESS_KEY_VARIABLE: self.access_key,
            SECRET_KEY_VARIABLE: self.secret_key,
        }


def _read_secret_file(path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise StorageError(f"cannot read credentials file {path}: {exc.strerror or exc}") from exc
    if not value:
        raise StorageError(f"credentials file {path} is empty")
    return value


@dataclass(frozen=True)
class ObjectInfo:
    uri: S3Uri
    size_bytes: int
    etag: str
    sha256: str | None  # from our upload metadata, when present


class _ObjectReader(io.RawIOBase):
    """Raw stream over a GET response; closing it releases the connection."""

    def __init__(self, response: Any, uri: S3Uri) -> None:
        self._response = response
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._response.read(len(buffer))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailableError(f"reading {self._uri} failed mid-stream: {exc}") from exc
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class ObjectStore:
    """Thin, typed wrapper over the minio client with bounded time and mapped errors."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        retry = urllib3.Retry(
            total=settings.retries,
            connect=settings.retries,
            read=settings.retries,
            status=settings.retries,
            backoff_factor=settings.backoff,
            status_forcelist=[500, 502, 503, 504],
            allowed_methods=None,  # also retry PUT: our uploads are whole-object and idempotent
            raise_on_status=False,
        )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            retries=retry,
            maxsize=10,
        )
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def __repr__(self) -> str:
        return f"ObjectStore(endpoint={self.settings.endpoint!r})"

    @contextmanager
    def _errors(self, action: str, uri: S3Uri | str) -> Iterator[None]:
        try:
            yield
        except S3Error as exc:
            raise _map_s3_error(exc, action, uri) from exc
        except ServerError as exc:
            raise StorageUnavailableError(
                f"{action} {uri}: server error {exc.status_code} at {self.settings.endpoint} "
                f"(after {self.settings.retries} retries)"
            ) from exc
        except InvalidResponseError as exc:
            status = getattr(exc, "_code", "?")
            raise StorageUnavailableError(
                f"{action} {uri}: HTTP {status} without an S3 error document from {self.settings.endpoint} "
                f"(after {self.settings.retries} retries; is it an S3 server?)"
            ) from exc
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise StorageUnavailableError(
                f"{action} {uri}: object storage at {self.settings.endpoint} unreachable "
                f"after {self.settings.retries} retries: {_reason(exc)}"
            ) from exc
        except MinioException as exc:
            raise StorageError(f"{action} {uri}: {exc}") from exc

    # -- buckets ------------------------------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> bool:
        """Create `bucket` if missing. Returns True when it was created."""
        check_bucket_name(bucket)
        with self._errors("creating bucket", bucket):
            if self._client.bucket_exists(bucket):
                return False
            try:
                self._client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    return False
                raise
            return True

    def bucket_exists(self, bucket: str) -> bool:
        with self._errors("checking bucket", bucket):
            return bool(self._client.bucket_exists(bucket))

    # -- objects ------------------------------------------------------------------------------------

    def stat(self, uri: S3Uri | str) -> ObjectInfo:
        u = _uri(uri)
        with self._errors("reading metadata of", u):
            obj = self._client.stat_object(u.bucket, u.key)
        meta = {k.lower(): v for k, v in (obj.metadata or {}).items()}
        return ObjectInfo(
            uri=u,
            size_bytes=int(obj.size or 0),
            etag=str(obj.etag or ""),
            sha256=meta.get("x-amz-meta-sha256"),
        )

    def exists(self, uri: S3Uri | str) -> bool:
        """True if the object exists; False if it or its bucket does not."""
        try:
            self.stat(uri)
        except (ObjectNotFoundError, BucketNotFoundError):
            return False
        return True

    def upload(self, path: str | os.PathLike[str], uri: S3Uri | str, content_type: str | None = None) -> str:
        """Upload a local file, streaming; returns its sha256 (also stored as object metadata `sha256`)."""
        u = _uri(uri)
        source = Path(path)
        digest = _sha256_path(source)
        size = source.stat().st_size
        with self._errors("uploading to", u), source.open("rb") as f:
            self._client.put_object(
                u.bucket,
                u.key,
                f,
                length=size,
                content_type=content_type or _content_type(u.key),
                metadata={"sha256": digest},
            )
        return digest

    def put_bytes(self, data: bytes, uri: S3Uri | str, content_type: str | None = None) -> str:
        """Store `data` at `uri`; returns its sha256."""
        u = _uri(uri)
        digest = hashlib.sha256(data).hexdigest()
        with self._errors("writing", u):
            self._client.put_object(
                u.bucket,
                u.key,
                io.BytesIO(data),
                length=len(data),
                content_type=content_type or _content_type(u.key),
                metadata={"sha256": digest},
            )
        return digest

    def get_bytes(self, uri: S3Uri | str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Whole object in memory (small objects only; StorageError above `max_bytes`)."""
        u = _uri(uri)
        with self.open_stream(u) as stream:
            data = stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise StorageError(f"{u} is larger than {max_bytes} bytes; stream it instead")
        return bytes(data)

    def open_stream(self, uri: S3Uri | str) -> io.BufferedReader:
        """A buffered, file-like stream over the object (use as a context manager; closing releases it)."""
        return self.open_range(uri, 0)

    def open_range(
        self, uri: S3Uri | str, offset: int, length: int | None = None, buffer_size: int = _CHUNK
    ) -> io.BufferedReader:
        """A stream over `length` bytes of the object from `offset` (to its end when `length` is None): one
        ranged GET. Closing it early drops the connection rather than reading the rest."""
        u = _uri(uri)
        with self._errors("reading", u):
            response = self._client.get_object(u.bucket, u.key, offset=offset, length=length or 0)
        return io.BufferedReader(_ObjectReader(response, u), buffer_size=buffer_size)

    def read_range(self, uri: S3Uri | str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer at the object's end), in memory: for small reads only."""
        if length <= 0:
            return b""
        with self.open_range(uri, offset, length) as stream:
            return bytes(stream.read(length))

    def download(self, uri: S3Uri | str, path: str | os.PathLike[str]) -> str:
        """Stream the object to `path` (atomically: a temp file renamed into place); returns its sha256."""
        u = _uri(uri)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, self.open_stream(u) as stream, self._errors("downloading", u):
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def remove(self, uri: S3Uri | str) -> None:
        u = _uri(uri)
        with self._errors("removing", u):
            self._client.remove_object(u.bucket, u.key)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return [info.uri.key for info in self.list_objects(bucket, prefix)]

    def list_objects(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        """Every object under `prefix`, sorted by key, with its size (BucketNotFoundError if no bucket)."""
        with self._errors("listing", f"s3://{bucket}/{prefix}"):
            found = [
                ObjectInfo(S3Uri(bucket, str(o.object_name)), int(o.size or 0), str(o.etag or ""), None)
                for o in self._client.list_objects(bucket, prefix=prefix, recursive=True)
                if not o.is_dir
            ]
        return sorted(found, key=lambda info: info.uri.key)

    def put_stream(
        self,
        stream: Any,
        uri: S3Uri | str,
        content_type: str | None = None,
        part_size: int = STREAM_PART_BYTES,
    ) -> None:
        """Upload a readable stream of unknown length, `part_size` bytes at a time (the memory it holds).

        Atomic like any S3 upload: the object appears whole when the stream ends, and if reading the stream
        raises, the multipart upload is aborted and nothing appears (an existing object stays as it was).
        """
        u = _uri(uri)
        with self._errors("writing", u):
            self._client.put_object(
                u.bucket,
                u.key,
                stream,
                length=-1,
                part_size=max(part_size, MIN_PART_BYTES),
                content_type=content_type or _content_type(u.key),
                num_parallel_uploads=1,
            )

    def concatenate(
        self, pieces: Sequence[Piece], target: S3Uri | str, scratch: Iterator[str], content_type: str
    ) -> int:
        """Write `target` as the pieces one after the other; returns its size.

        Server-side: the store copies the bytes (S3 multipart copy, what MinIO's compose does), nothing
        passes through this process, except where S3 forbids it: every part of a multipart upload but the
        last must be at least 5 MiB, so pieces smaller than that are first gathered into bundles of at
        least 5 MiB (read here, at most 10 MiB at a time, written to the `scratch` keys and removed at the
        end). Pieces of 5 MiB and more are never read. See `plan_concatenation`.
        """
        t = _uri(target)
        plan = plan_concatenation([p.length for p in pieces], MIN_PART_BYTES)
        if not plan:
            self.put_bytes(b"", t, content_type)
            return 0
        if len(plan) == 1 and isinstance(plan[0], Bundle):
            data = self._gather(pieces, plan[0])
            self.put_bytes(data, t, content_type)
            return len(data)
        sources: list[ComposeSource] = []
        written: list[S3Uri] = []
        try:
            for segment in plan:
                if isinstance(segment, Copy):
                    piece = pieces[segment.piece]
                    offset = piece.offset + segment.skip
                    sources.append(
                        ComposeSource(piece.uri.bucket, piece.uri.key, offset=offset, length=segment.length)
                    )
                else:
                    bundle = _uri(next(scratch))
                    self.put_bytes(self._gather(pieces, segment), bundle)
                    written.append(bundle)
                    sources.append(ComposeSource(bundle.bucket, bundle.key))
            with self._errors("composing", t):
                self._client.compose_object(t.bucket, t.key, sources, metadata={"Content-Type": content_type})
        finally:
            for bundle in written:
                self.remove(bundle)
        return sum(p.length for p in pieces)

    def _gather(self, pieces: Sequence[Piece], bundle: Bundle) -> bytes:
        out = bytearray()
        for segment in bundle.segments:
            piece = pieces[segment.piece]
            out += self.read_range(piece.uri, piece.offset + segment.skip, segment.length)
        return bytes(out)


@dataclass(frozen=True)
class Piece:
    """Bytes [offset, offset + length) of an object, one piece of a concatenation."""

    uri: S3Uri
    offset: int
    length: int


@dataclass(frozen=True)
class Copy:
    """`length` bytes of piece number `piece`, from `skip` bytes into it, copied by the store."""

    piece: int
    skip: int
    length: int


@dataclass(frozen=True)
class Bundle:
    """Pieces (or their heads) read and rewritten as one object, because S3 cannot copy them as parts."""

    segments: tuple[Copy, ...]

    @property
    def length(self) -> int:
        return sum(s.length for s in self.segments)


def plan_concatenation(lengths: Sequence[int], min_part: int) -> list[Copy | Bundle]:
    """The parts of a multipart copy that concatenates pieces of these lengths: every part but the last is
    at least `min_part` bytes. Pieces of `min_part` or more are copied as they are; smaller ones are
    gathered into bundles that close once they reach `min_part`. A bundle that a large piece follows
    while still short takes just enough of that piece's head (or all of it, when what would remain is
    short too), so the bytes read stay below 2 * min_part per bundle."""
    plan: list[Copy | Bundle] = []
    bundle: list[Copy] = []

    def size() -> int:
        return sum(s.length for s in bundle)

    def close() -> None:
        if bundle:
            plan.append(Bundle(tuple(bundle)))
            bundle.clear()

    for number, length in enumerate(lengths):
        if length <= 0:
            continue
        if not bundle and length >= min_part:
            plan.append(Copy(number, 0, length))
        elif length >= min_part:
            need = max(min_part - size(), 0)
            if need and length - need >= min_part:
                bundle.append(Copy(number, 0, need))
                close()
                plan.append(Copy(number, need, length - need))
            elif need:
                bundle.append(Copy(number, 0, length))
                close()
            else:
                close()
                plan.append(Copy(number, 0, length))
        else:
            bundle.append(Copy(number, 0, length))
            if size() >= min_part:
                close()
    close()
    return plan


class ChunkStream(io.RawIOBase):
    """A readable stream over an iterable of byte strings (e.g. a generator of rewritten lines), for
    put_stream. An exception raised by the iterable reaches the reader, which aborts the upload."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _uri(uri: S3Uri | str) -> S3Uri:
    return uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _content_type(key: str) -> str:
    suffix = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    return {
        "csv": "text/csv",
        "json": "application/json",
        "parquet": "application/vnd.apache.parquet",
        "ilearner": "application/zip",
    }.get(suffix, "application/octet-stream")


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc)


def _map_s3_error(exc: S3Error, action: str, uri: S3Uri | str) -> StorageError:
    code = exc.code or ""
    if code in {"NoSuchBucket"}:
        bucket = uri.bucket if isinstance(uri, S3Uri) else str(uri).removeprefix("s3://").split("/")[0]
        return BucketNotFoundError(f"{action} {uri}: bucket {bucket!r} does not exist")
    if code in {"NoSuchKey", "ResourceNotFound"}:
        return ObjectNotFoundError(f"{action} {uri}: object does not exist")
    if code in {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "XMinioServerNotInitialized",
    }:
        return StorageUnavailableError(f"{action} {uri}: the server is failing ({code}); retry later")
    if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}:
        return AccessDeniedError(f"{action} {uri}: access denied ({code}); check the storage credentials")
    return StorageError(f"{action} {uri}: {code or 'error'}: {exc.message}")
