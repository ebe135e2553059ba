"""How a BatchJob's input is cut into shards: byte slices over the inputs (core), CSV lines cut at line ends
with the header handled, Parquet row groups by where they start (scorer). Every row is read by exactly one
shard, whatever the shard count, the block size or the line endings."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kstudio_core.batch import (
    ByteSlice,
    ErrorThreshold,
    ShardResult,
    SliceResult,
    numbered_slices,
    shard_bounds,
    shard_byte_slices,
)
from kstudio_core.parquet_footer import FooterError, footer_length, summarize_footer
from kstudio_scorer.bes.shard_input import (
    csv_chunks,
    open_parquet,
    owned_row_groups,
    read_csv_header,
    split_lines,
)


@dataclass
class MemoryObject:
    """A ByteSource over bytes in memory."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def stream_from(self, offset: int) -> IO[bytes]:
        return io.BytesIO(self.data[offset:])

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def test_shard_bounds_are_consecutive_disjoint_and_cover_the_bytes() -> None:
    for total in (0, 1, 7, 1000, 10**12 + 3):
        for count in (1, 2, 3, 8, 1000):
            bounds = [shard_bounds(total, i, count) for i in range(count)]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(bounds[i][1] == bounds[i + 1][0] for i in range(count - 1))
            assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1
    with pytest.raises(ValueError, match=r"shard index 3 is not in 0\.\.2"):
        shard_bounds(10, 3, 3)


def test_byte_slices_span_objects_and_skip_empty_ones() -> None:
    sizes = [10, 0, 5, 20]  # 35 bytes
    assert shard_byte_slices(sizes, 0, 2) == [ByteSlice(0, 0, 10), ByteSlice(2, 0, 5), ByteSlice(3, 0, 2)]
    assert shard_byte_slices(sizes, 1, 2) == [ByteSlice(3, 2, 20)]
    every = [s for i in range(7) for s in shard_byte_slices(sizes, i, 7)]
    assert sum(s.end - s.start for s in every) == 35


def _csv(rows: int, newline: bytes = b"\n", trailing: bool = True, blank_every: int = 0) -> bytes:
    lines = [b"a,b,label"]
    for i in range(rows):
        lines.append(f"{i},{i * 0.5},x{i % 3}".encode())
        if blank_every and i % blank_every == 0:
            lines.append(b"")
    text = newline.join(lines)
    return text + newline if trailing else text


def _read_all(obj: MemoryObject, shards: int, block: int) -> list[list[bytes]]:
    per_shard = []
    for index in range(shards):
        lines: list[bytes] = []
        for piece in shard_byte_slices([obj.size], index, shards):
            for chunk in csv_chunks(obj, piece, block):
                assert chunk.data.endswith(b"\n") or chunk.offset + len(chunk.data) == obj.size
                assert obj.data[chunk.offset : chunk.offset + len(chunk.data)] == chunk.data
                lines += split_lines(chunk.data)
        per_shard.append(lines)
    return per_shard


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("trailing", [True, False])
@pytest.mark.parametrize("shards", [1, 2, 3, 7, 50, 400])
@pytest.mark.parametrize("block", [8, 64, 4096])
def test_csv_slices_read_every_line_once_and_never_the_header(
    newline: bytes, trailing: bool, shards: int, block: int
) -> None:
    data = _csv(97, newline, trailing, blank_every=10)
    obj = MemoryObject("s3://in/x.csv", data)
    per_shard = _read_all(obj, shards, block)
    got = [line.rstrip(b"\r\n") for lines in per_shard for line in lines]
    expected = [line for line in data.replace(b"\r\n", b"\n").split(b"\n")[1:] if line]
    assert got == expected  # in order, each once, no header, no empty line
    if shards <= 3:
        assert all(per_shard), "every shard of a small shard count has rows"


def test_csv_header_is_read_from_the_first_line_whatever_its_length() -> None:
    names = [f"column_{i:05d}" for i in range(20_000)]  # a ~250 KB header line
    data = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    header = read_csv_header(MemoryObject("s3://in/wide.csv", data))
    assert header.names == names and data[header.length - 1 : header.length] == b"\n"


def test_split_lines_keeps_line_ends_and_drops_empty_lines() -> None:
    assert split_lines(b"1,2\n\n3,4\r\n\r\n5,6") == [b"1,2\n", b"3,4\r\n", b"5,6"]


def test_parquet_row_groups_belong_to_the_shard_holding_their_first_page() -> None:
    table = pa.table({"x": np.arange(10_000, dtype=np.float64), "s": [str(i) for i in range(10_000)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=700)
    obj = MemoryObject("s3://in/t.parquet", buffer.getvalue())
    metadata = open_parquet(obj, 64 * 1024).metadata
    for shards in (1, 2, 3, 15, 40):
        owned = [
            g
            for i in range(shards)
            for piece in shard_byte_slices([obj.size], i, shards)
            for g in owned_row_groups(metadata, piece, obj.size)
        ]
        assert owned == list(range(metadata.num_row_groups))  # each once, in order
    per_shard = [
        len(owned_row_groups(metadata, piece, obj.size))
        for i in range(3)
        for piece in shard_byte_slices([obj.size], i, 3)
    ]
    assert min(per_shard) >= 4, per_shard  # 15 row groups: the footer does not starve the last shard
    reread = pq.read_table(io.BytesIO(obj.data)).column("x").to_pylist()
    assert reread == table.column("x").to_pylist()


def test_parquet_footer_gives_rows_and_row_groups_without_pyarrow() -> None:
    table = pa.table(
        {
            "x": np.arange(5000, dtype=np.float64),
            "flag": [i % 2 == 0 for i in range(5000)],
            "nested": [{"k": i} for i in range(5000)],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=600)
    data = buffer.getvalue()
    length = footer_length(data[-8:], len(data))
    summary = summarize_footer(data[-8 - length : -8])
    assert (summary.rows, summary.row_groups) == (5000, 9)
    with pytest.raises(FooterError, match="not a Parquet file"):
        footer_length(b"12345678", 100)


def test_error_threshold_in_rows_percent_or_none() -> None:
    assert not ErrorThreshold(rows=3).exceeded(3, 10) and ErrorThreshold(rows=3).exceeded(4, 10)
    assert not ErrorThreshold(percent=10).exceeded(10, 100) and ErrorThreshold(percent=10).exceeded(11, 100)
    assert not ErrorThreshold().exceeded(0, 100) and ErrorThreshold().exceeded(1, 100)
    assert ErrorThreshold(percent=5).rows_limit() is None and ErrorThreshold().rows_limit() == 0


def test_slices_of_one_input_are_numbered_after_the_earlier_shards_rows() -> None:
    results = [
        ShardResult(
            uid="u", index=1, slices=[SliceResult(input="a", rows=5), SliceResult(input="b", rows=2)]
        ),
        ShardResult(uid="u", index=0, slices=[SliceResult(input="a", rows=10)]),
        ShardResult(uid="u", index=2, slices=[SliceResult(input="b", rows=7)]),
    ]
    assert numbered_slices(results) == {(0, "a"): 1, (1, "a"): 11, (1, "b"): 1, (2, "b"): 3}
