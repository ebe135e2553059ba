"""Bounded artifact inflation: how large a model may inflate, and reading `model.skops` within that bound.

A 2 MB zip can declare (or really hold) a member that inflates to gigabytes. The loader therefore

- refuses a model member whose declared size is over the limit before reading any of it, and a skops
  payload whose inner members' declared sizes add up to more than the limit (skops reads each whole);
- never trusts a declaration alone: a deflated member is inflated in 1 MiB chunks into a temporary file
  and refused as soon as it passes the limit (zipfile also stops at the declared size and then fails its
  CRC check), and a stored member (what the trainer writes) is not copied at all: skops reads it through
  a window onto the verified file.

The limit (`ModelSizeLimit`) is KSTUDIO_MAX_MODEL_BYTES when set, otherwise half the container's memory
limit read from its cgroup (v2 `memory.max` or v1 `memory.limit_in_bytes`, the smallest along the path),
otherwise half the machine's memory; never more than kstudio_core.ilearner.MAX_MODEL_BYTES.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from kstudio_core.environment import env_name
from kstudio_core.ilearner import MAX_MODEL_BYTES, InvalidArtifactError

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP: Final = Path("/proc/self/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number rather than "max".
_UNLIMITED_V1: Final = 1 << 60
_CHUNK: Final = 1024 * 1024
# A zip local file header (APPNOTE 4.3.7): signature, versions, flags, method, time, date, crc, sizes,
# then the lengths of the file name and of the extra field that precede the data.
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")
_LOCAL_HEADER_SIGNATURE: Final = b"PK\x03\x04"


class ArtifactTooLargeError(InvalidArtifactError):
    """The model would inflate past the configured limit; nothing beyond the limit was read."""


@dataclass(frozen=True)
class ModelSizeLimit:
    """At most `bytes` inflated bytes of model; `source` says where the number comes from (for errors)."""

    bytes: int
    source: str

    def refuse(self, what: str, declared_size: int | None = None) -> ArtifactTooLargeError:
        """The error for `what` passing the limit: by its declared size, or (None) while inflating."""
        size = (
            f"declares {declared_size} inflated bytes, more than"
            if declared_size is not None
            else "inflates to more than"
        )
        return ArtifactTooLargeError(
            f"{what} {size} the limit of {self.bytes} bytes ({self.source}); refusing to load it: "
            "give the pod more memory or set KSTUDIO_MAX_MODEL_BYTES"
        )

    def less(self, used: int, by: str) -> ModelSizeLimit:
        """What is left of this limit once `used` bytes are taken (by another model of the pod, `by`)."""
        return ModelSizeLimit(
            max(self.bytes - used, 0), f"{self.source}, less {used} bytes inflated by {by} loaded before it"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def cgroup_memory_limit(proc_self_cgroup: Path = PROC_SELF_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """This process's memory limit in bytes from its cgroup (v2 or v1), or None when there is none.

    Limits of ancestor cgroups apply too, so the smallest one on the way up to the root wins. With a
    cgroup namespace the process sees its own cgroup as the root, which the walk reaches as well.
    """
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2 unified hierarchy: "0::/path"
            limits += _limits_up_the_tree(root, path, "memory.max")
        elif "memory" in controllers.split(","):  # v1: "N:memory:/path"
            limits += _limits_up_the_tree(root / "memory", path, "memory.limit_in_bytes")
    return min(limits) if limits else None


def _limits_up_the_tree(root: Path, path: str, filename: str) -> list[int]:
    found = []
    current = root / path.lstrip("/")
    while True:
        value = _read_limit(current / filename)
        if value is not None:
            found.append(value)
        if current == root or root not in current.parents:
            break
        current = current.parent
    return found


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():  # "max"
        return None
    value = int(text)
    return value if value < _UNLIMITED_V1 else None


def machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def model_size_limit(configured: int | None = None, container_limit: int | None = None) -> ModelSizeLimit:
    """KSTUDIO_MAX_MODEL_BYTES (`configured`) if set, else half the container's (or machine's) memory."""
    if configured is not None:
        return ModelSizeLimit(configured, env_name("max_model_bytes"))
    cap = f"at most {_mib(MAX_MODEL_BYTES)}"
    container = container_limit if container_limit is not None else cgroup_memory_limit()
    if container is not None:
        return ModelSizeLimit(
            min(container // 2, MAX_MODEL_BYTES),
            f"default: half the container's memory limit of {_mib(container)}, {cap}",
        )
    machine = machine_memory()
    if machine is not None:
        return ModelSizeLimit(
            min(machine // 2, MAX_MODEL_BYTES), f"default: half the machine's {_mib(machine)}, {cap}"
        )
    return ModelSizeLimit(MAX_MODEL_BYTES, f"default: {_mib(MAX_MODEL_BYTES)}")


class MemberWindow(io.RawIOBase):
    """Read-only, seekable view of `size` bytes at `offset` of an open file (positional reads, no copy)."""

    def __init__(self, fileno: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = fileno
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + pos < 0:
            raise ValueError("negative seek position")
        self._pos = base + pos
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        data = os.pread(self._fd, n, self._offset + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_model_member(
    raw: IO[bytes], archive: zipfile.ZipFile, name: str, limit: ModelSizeLimit
) -> IO[bytes]:
    """A seekable binary file with the member's inflated bytes, within `limit`. The caller closes it.

    `raw` is the open file `archive` reads from. Stored members come back as a window onto `raw`;
    compressed ones are inflated chunk by chunk into a temporary file, stopping at the limit.
    """
    info = archive.getinfo(name)
    if info.file_size > limit.bytes:
        raise limit.refuse(name, info.file_size)
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size:
        return io.BufferedReader(MemberWindow(raw.fileno(), _data_offset(raw, info), info.file_size))
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    try:
        written = 0
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                written += len(chunk)
                if written > limit.bytes:
                    raise limit.refuse(name)
                spool.write(chunk)
        spool.seek(0)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        spool.close()
        raise InvalidArtifactError(f"{name} is damaged: {exc}") from exc
    except BaseException:
        spool.close()
        raise
    return spool


def _data_offset(raw: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header, whose name/extra lengths can differ from the
    central directory's."""
    header = os.pread(raw.fileno(), _LOCAL_HEADER.size, info.header_offset)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_HEADER_SIGNATURE:
        raise InvalidArtifactError(f"{info.filename} is damaged: bad local file header")
    fields = _LOCAL_HEADER.unpack(header)
    name_length, extra_length = int(fields[10]), int(fields[11])
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.file_size > os.fstat(raw.fileno()).st_size:
        raise InvalidArtifactError(f"{info.filename} is damaged: it extends past the end of the file")
    return start


def check_inner_sizes(payload: IO[bytes], what: str, limit: ModelSizeLimit) -> int:
    """Refuse a skops payload (itself a zip) whose members declare more than `limit` bytes in total;
    return what they declare (the model's inflated size).

    zipfile never inflates a member past its declared size (it fails the CRC check instead), so this
    bounds what skops can allocate while reading them.
    """
    try:
        with zipfile.ZipFile(payload) as inner:
            declared = sum(i.file_size for i in inner.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidArtifactError(f"{what} is not a readable skops payload: {exc}") from exc
    if declared > limit.bytes:
        raise limit.refuse(f"{what} (its members together)", declared)
    payload.seek(0)
    return declared
