"""What one BatchJob shard reads: its slice of each input object (kstudio_core.batch.shard_byte_slices),
as CSV chunks cut at line ends or as the Parquet row groups that start in it. Memory stays flat in the
input's size: a CSV slice is one ranged GET read a block at a time; a Parquet row group is read through
ranged GETs of its column chunks, a buffer at a time.

Ownership, so that every row is read by exactly one shard: a CSV line belongs to the slice that holds its
first byte (a slice that starts mid-line skips to the next line; its last line may run past its end); the
header line (the object's first) is read by every shard and scored by none. A Parquet row group belongs to
the slice that holds the first byte of its first page. Lines end with "\\n" (or "\\r\\n"); values may not
contain line breaks, as in the scorer's own CSV reading (pyarrow's `newlines_in_values` is off there too).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kstudio_core.batch import ByteSlice

HEADER_PROBE_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1024 * 1024


class ShardInputError(Exception):
    """The input cannot be scored as it is (exit 2: retrying cannot help). `reason` is one CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ByteSource(Protocol):
    """One input object: its size, a stream from an offset to its end, and small reads."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def stream_from(self, offset: int) -> IO[bytes]: ...

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class StoreObject:
    """An object in the store as a ByteSource (each stream is one ranged GET)."""

    store: Any  # kstudio_core.storage.ObjectStore
    name: str
    size: int

    def stream_from(self, offset: int) -> IO[bytes]:
        return self.store.open_range(self.name, offset)  # type: ignore[no-any-return]

    def read(self, offset: int, length: int) -> bytes:
        return self.store.read_range(self.name, offset, length)  # type: ignore[no-any-return]


# --- CSV ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvHeader:
    names: list[str]
    length: int  # bytes of the header line, its line end included


def read_csv_header(source: ByteSource) -> CsvHeader:
    """The column names in the object's first line. ShardInputError if there is none."""
    probe = HEADER_PROBE_BYTES
    while True:
        head = source.read(0, min(probe, source.size))
        end = head.find(b"\n")
        if end >= 0 or len(head) >= source.size:
            break
        if probe >= MAX_HEADER_BYTES:
            raise ShardInputError(
                "UnreadableInput", f"{source.name}: no line end in the first {MAX_HEADER_BYTES} bytes"
            )
        probe *= 4
    line = head[: end + 1] if end >= 0 else head
    if not line.strip():
        raise ShardInputError("UnreadableInput", f"{source.name} has no header line")
    try:
        names = pacsv.read_csv(io.BytesIO(line)).column_names
    except pa.ArrowInvalid as exc:
        raise ShardInputError("UnreadableInput", f"{source.name}: cannot read its header: {exc}") from exc
    return CsvHeader(names=list(names), length=len(line))


@dataclass(frozen=True)
class CsvChunk:
    """Complete lines of a slice; `offset`: where the first one starts in the object."""

    data: bytes
    offset: int


def csv_chunks(source: ByteSource, piece: ByteSlice, block_bytes: int) -> Iterator[CsvChunk]:
    """The lines that start in bytes [piece.start, piece.end) of the object, about `block_bytes` at a
    time, each chunk cut after a line end. The header line is never part of them."""
    # Start one byte early: a line starts at `start` exactly when the byte before it ends a line. From
    # offset 0 the first line is the header, skipped the same way.
    begin = max(piece.start - 1, 0)
    with source.stream_from(begin) as stream:
        buffer = bytearray()
        position = begin  # where buffer[0] is in the object
        eof = False
        while True:  # find the first line start at or after piece.start
            if not eof:
                data = stream.read(block_bytes)
                eof = not data
                buffer += data
            cut = buffer.find(b"\n")
            if cut >= 0:
                position += cut + 1
                del buffer[: cut + 1]
                break
            if eof:
                return
            position += len(buffer)
            buffer.clear()
        while position < piece.end:
            limit = piece.end - position  # lines starting before buffer[limit] are ours
            cut = buffer.find(b"\n", limit - 1) + 1 if len(buffer) >= limit else 0
            if cut:  # the last line of the slice ends in the buffer
                yield CsvChunk(bytes(buffer[:cut]), position)
                return
            last = buffer.rfind(b"\n") + 1
            if len(buffer) >= block_bytes and last:
                yield CsvChunk(bytes(buffer[:last]), position)
                position += last
                del buffer[:last]
                continue
            if eof:
                if buffer:
                    yield CsvChunk(bytes(buffer), position)
                return
            data = stream.read(block_bytes)
            eof = not data
            buffer += data


def split_lines(data: bytes) -> list[bytes]:
    """The rows of a chunk as separate lines, each with its line end; empty lines (which the CSV reader
    skips, and which are no rows) left out."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1] if line not in (b"", b"\r")]
    if lines[-1] not in (b"", b"\r"):
        out.append(lines[-1])
    return out


def parse_csv(
    data: bytes, names: list[str], column_types: dict[str, pa.DataType], include: list[str]
) -> pa.RecordBatch:
    """Rows of `data` (lines without the header) as one batch of the `include` columns typed by
    `column_types`: pyarrow's CSV reader, as the scorer's own file scoring reads them. ArrowInvalid when a
    line or a value cannot be read."""
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
        convert_options=pacsv.ConvertOptions(
            column_types=column_types, include_columns=include, strings_can_be_null=True
        ),
    )
    return table.combine_chunks().to_batches()[0] if table.num_rows else _empty_batch(table.schema)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


# --- Parquet -----------------------------------------------------------------------------------------


class RandomAccess(io.RawIOBase):
    """A seekable, read-only file over a ByteSource, for pyarrow's Parquet reader: each read is a ranged
    GET of exactly what was asked (pyarrow asks for the footer, then for column chunks)."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._source.size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self._source.size - self._position)
        if length <= 0:
            return 0
        data = self._source.read(self._position, length)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._source.size - self._position
        length = min(size, self._source.size - self._position)
        if length <= 0:
            return b""
        data = self._source.read(self._position, length)
        self._position += len(data)
        return data


def open_parquet(source: ByteSource, buffer_bytes: int) -> pq.ParquetFile:
    """The object as a ParquetFile that reads column chunks `buffer_bytes` at a time (not whole)."""
    try:
        return pq.ParquetFile(RandomAccess(source), buffer_size=buffer_bytes, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardInputError("UnreadableInput", f"{source.name} is not a Parquet file: {exc}") from exc


def row_group_start(metadata: pq.FileMetaData, group: int) -> int:
    """Where row group `group` starts in the file: the first byte of its first page."""
    rg = metadata.row_group(group)
    starts = []
    for column in range(rg.num_columns):
        chunk = rg.column(column)
        offsets = [chunk.data_page_offset]
        if chunk.has_dictionary_page and chunk.dictionary_page_offset:
            offsets.append(chunk.dictionary_page_offset)
        starts.append(min(o for o in offsets if o is not None))
    return min(starts) if starts else 0


def owned_row_groups(metadata: pq.FileMetaData, piece: ByteSlice, size: int) -> list[int]:
    """The row groups (with rows) that start in the slice, once the slice is mapped onto the file's data.

    A file's bytes are "PAR1", the row groups, the footer, its length and "PAR1": the footer holds no row,
    and in a small file it is much of the file. So bytes [0, size) of the file map proportionally onto
    its data [4, footer start): every shard maps the same (all read the same footer), the mapped slices
    of the file still follow each other and cover its data, and the row groups go to shards in
    proportion to their bytes, not to the footer's."""
    data_start = len(b"PAR1")
    data_end = max(size - metadata.serialized_size - 8, data_start)
    span = data_end - data_start

    def mapped(offset: int) -> int:
        return data_start + offset * span // size if size else data_start

    lo, hi = mapped(piece.start), mapped(piece.end)
    return [
        group
        for group in range(metadata.num_row_groups)
        if metadata.row_group(group).num_rows > 0 and lo <= row_group_start(metadata, group) < hi
    ]
