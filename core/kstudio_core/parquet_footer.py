"""How many rows and row groups a Parquet file has, from its footer alone, without pyarrow.

The operator plans BatchJobs (`rowsPerShard`) and must not load the columnar stack (pyarrow pulls in
numpy), yet a Parquet file's row count is only in its footer: a Thrift-compact `FileMetaData` struct
whose field 3 is `num_rows` and field 4 the list of row groups. Reading it means skipping field 2 (the
schema, a list of structs) generically, which is what the small reader below does.

Layout of a Parquet file's end: <footer> <footer length: 4 bytes little-endian> "PAR1".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"PAR1"
TAIL_BYTES: Final = 8  # footer length + magic

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class FooterError(ValueError):
    """The bytes are not a Parquet footer."""


@dataclass(frozen=True)
class ParquetSummary:
    rows: int
    row_groups: int


def footer_length(tail: bytes, size: int) -> int:
    """The footer's length from the file's last 8 bytes. FooterError unless they end a Parquet file."""
    if len(tail) != TAIL_BYTES or tail[4:] != MAGIC:
        raise FooterError("the file does not end with PAR1: not a Parquet file")
    length = int(struct.unpack("<I", tail[:4])[0])
    if length + TAIL_BYTES + len(MAGIC) > size:
        raise FooterError(f"the footer length {length} does not fit a file of {size} bytes")
    return length


def summarize_footer(footer: bytes) -> ParquetSummary:
    """Rows and row groups of the `FileMetaData` serialized in `footer`."""
    reader = _Compact(footer)
    rows, groups = None, None
    last = 0
    try:
        while True:
            kind, field = reader.field_header(last)
            if kind == _STOP:
                break
            last = field
            if field == 3 and kind == _I64:
                rows = reader.zigzag()
            elif field == 4 and kind == _LIST:
                element, count = reader.list_header()
                groups = count
                for _ in range(count):
                    reader.skip_element(element)
            else:
                reader.skip(kind)
    except IndexError:
        raise FooterError("the footer ends in the middle of a field") from None
    if rows is None or groups is None:
        raise FooterError("the footer has no num_rows or row_groups")
    return ParquetSummary(rows=rows, row_groups=groups)


class _Compact:
    """The reading side of Thrift's compact protocol, enough to skip anything and read integers."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise FooterError("a varint longer than 10 bytes")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def field_header(self, last: int) -> tuple[int, int]:
        b = self.byte()
        kind = b & 0x0F
        if kind == _STOP:
            return _STOP, 0
        delta = b >> 4
        return kind, (last + delta if delta else self.zigzag())

    def list_header(self) -> tuple[int, int]:
        b = self.byte()
        count = b >> 4
        if count == 15:
            count = self.varint()
        return b & 0x0F, count

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE):
            return  # in a field header the value is the type; list elements use skip_element
        if kind == _BYTE:
            self.pos += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            length = self.varint()  # read before pos is taken: `pos += varint()` would lose its bytes
            self.pos += length
        elif kind in (_LIST, _SET):
            element, count = self.list_header()
            for _ in range(count):
                self.skip_element(element)
        elif kind == _MAP:
            count = self.varint()
            if count:
                types = self.byte()
                for _ in range(count):
                    self.skip_element(types >> 4)
                    self.skip_element(types & 0x0F)
        elif kind == _STRUCT:
            last = 0
            while True:
                inner, field = self.field_header(last)
                if inner == _STOP:
                    return
                last = field
                self.skip(inner)
        else:
            raise FooterError(f"unknown Thrift type {kind}")
        if self.pos > len(self.data):
            raise IndexError

    def skip_element(self, kind: int) -> None:
        """A list, set or map element: a boolean takes one byte there."""
        if kind in (_TRUE, _FALSE):
            self.pos += 1
        else:
            self.skip(kind)
