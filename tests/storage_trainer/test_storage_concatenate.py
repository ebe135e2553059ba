"""Writing objects from parts, against a real MinIO: a streamed upload appears whole or not at all, and a
concatenation copies 5 MiB+ pieces server-side, gathering only the pieces S3 cannot copy as parts."""

from __future__ import annotations

import itertools
import os

import pytest

from kstudio_core.storage import (
    MIN_PART_BYTES,
    Bundle,
    ChunkStream,
    Copy,
    ObjectStore,
    Piece,
    S3Uri,
    plan_concatenation,
)

BUCKET = "concat-tests"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def store(object_store: ObjectStore) -> ObjectStore:
    object_store.ensure_bucket(BUCKET)
    return object_store


def test_plan_copies_large_pieces_and_bundles_small_ones_to_the_s3_minimum() -> None:
    assert plan_concatenation([10, 10], 5) == [Copy(0, 0, 10), Copy(1, 0, 10)]
    assert plan_concatenation([1, 1, 1], 5) == [Bundle((Copy(0, 0, 1), Copy(1, 0, 1), Copy(2, 0, 1)))]
    # A short bundle before a large piece takes just the head it needs; the rest is copied.
    assert plan_concatenation([1, 10, 1], 5) == [
        Bundle((Copy(0, 0, 1), Copy(1, 0, 4))),
        Copy(1, 4, 6),
        Bundle((Copy(2, 0, 1),)),
    ]
    assert plan_concatenation([0, 3, 6], 5) == [Bundle((Copy(1, 0, 3), Copy(2, 0, 6)))]
    for lengths in itertools.product([0, 1, 4, 5, 6, 12], repeat=4):
        plan = plan_concatenation(list(lengths), 5)
        sizes = [s.length for s in plan]
        assert all(size >= 5 for size in sizes[:-1]), (lengths, plan)
        assert sum(sizes) == sum(lengths)
        assert all(b.length < 10 for b in plan if isinstance(b, Bundle))


def test_streamed_upload_appears_whole_and_an_error_leaves_nothing(store: ObjectStore) -> None:
    data = [os.urandom(3 * MIB) for _ in range(4)]  # 12 MiB: a multipart upload of 8 MiB parts
    store.put_stream(ChunkStream(data), f"s3://{BUCKET}/stream/whole")
    assert store.get_bytes(f"s3://{BUCKET}/stream/whole") == b"".join(data)

    def failing() -> object:
        yield from data[:3]
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        store.put_stream(ChunkStream(failing()), f"s3://{BUCKET}/stream/broken")  # type: ignore[arg-type]
    assert not store.exists(f"s3://{BUCKET}/stream/broken")


@pytest.mark.parametrize(
    "sizes",
    [
        [6 * MIB, 7 * MIB, 100],  # all copied by the store
        [1000, 2000, 3000],  # all small: one bundle, one plain write
        [100, 6 * MIB, 200, 300, 6 * MIB + 5],  # mixed: heads taken into bundles
    ],
)
def test_concatenation_equals_the_pieces_one_after_the_other(store: ObjectStore, sizes: list[int]) -> None:
    pieces, expected = [], b""
    for number, size in enumerate(sizes):
        data = os.urandom(size)
        uri = S3Uri(BUCKET, f"concat/{len(sizes)}-{sizes[0]}/part-{number}")
        store.put_bytes(data, uri)
        skip = 7 if number else 0  # a header to leave out, as CSV parts after the first do
        pieces.append(Piece(uri, skip, size - skip))
        expected += data[skip:]
    scratch = (f"s3://{BUCKET}/concat/scratch-{n}" for n in itertools.count())
    target = S3Uri(BUCKET, f"concat/{len(sizes)}-{sizes[0]}/all")
    assert store.concatenate(pieces, target, scratch, "text/csv") == len(expected)
    assert store.get_bytes(target, max_bytes=64 * MIB) == expected
    assert not [k for k in store.list_keys(BUCKET, "concat/scratch-")]  # bundles are removed
    listed = {o.uri.key.rsplit("/", 1)[-1]: o.size_bytes for o in store.list_objects(BUCKET, target.key[:-3])}
    assert listed == {"all": len(expected)} | {f"part-{n}": size for n, size in enumerate(sizes)}
    assert MIN_PART_BYTES == 5 * MIB
