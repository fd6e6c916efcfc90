"""Packed sort keys: same order as the text, ids and days read back exactly."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

from churnguard.features.sortkeys import MAX_ID_BYTES, pack_keys

ZERO_PADDED = [f"{i:07d}" for i in (0, 42, 999_999, 123_456, 7)]
MIXED = ["", "a", "ab", "b", "é", "Z", "zz", "00042", "0042", "ÿ", "a" * 15, "abc", "abcé"]
MISSING = ["", "a", "ab", "é", None, "zz", "00042", "0042"]
PREFIXED = ["CUST-0000001", "CUST-0000010", "CUST-0000100", "CUST-1000000"]


def _chunked(ids: list[str | None], cut: int = 7) -> pa.ChunkedArray:
    # Two chunks, the second a slice (non-zero offset), as DuckDB and Arrow hand them over.
    head = pa.array(ids[:cut], pa.string())
    tail = pa.array(["pad", *ids[cut:]], pa.string()).slice(1)
    return pa.chunked_array([head, tail])


def _check_round_trip(ids: list[str | None], days: np.ndarray) -> None:
    packed = pack_keys(_chunked(ids), days)
    assert packed is not None
    order = np.lexsort(list(reversed(packed.keys)))
    keys = [k[order] for k in packed.keys]
    got = list(zip(packed.ids(keys), packed.days(keys).tolist(), strict=True))

    def text_order(row: tuple[str | None, int]) -> tuple[int, bytes, int]:
        return (row[0] is None, (row[0] or "").encode(), row[1])

    assert got == sorted(zip(ids, days.tolist(), strict=True), key=text_order)
    first = packed.new_customer(keys)
    ids_sorted = [row[0] for row in got]
    expected = [True] + [a != b for a, b in zip(ids_sorted[1:], ids_sorted[:-1], strict=True)]
    assert first.tolist() == expected


@pytest.mark.parametrize("values", [ZERO_PADDED, MIXED, MISSING, PREFIXED])
def test_keys_sort_rows_as_text_then_day(values: list[str | None]) -> None:
    rng = np.random.default_rng(7)
    ids = [values[i] for i in rng.integers(0, len(values), 400)]
    _check_round_trip(ids, rng.integers(-400, 20_000, 400).astype(np.int32))


def test_short_ids_and_two_years_fit_one_32_bit_key() -> None:
    ids = ["0000000", "0999999", "0123456"]
    packed = pack_keys(_chunked(ids, cut=1), np.array([19_000, 19_730, 19_365], dtype=np.int32))
    assert packed is not None
    assert [k.dtype for k in packed.keys] == [np.dtype(np.uint32)]


def test_varied_16_character_ids_take_two_keys() -> None:
    rng = np.random.default_rng(3)
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    ids = ["".join(rng.choice(alphabet, 16)) for _ in range(50)]
    days = rng.integers(0, 3_000, 50).astype(np.int32)
    packed = pack_keys(_chunked(ids), days)
    assert packed is not None and len(packed.keys) == 2
    assert packed.keys[0].dtype == np.uint64
    _check_round_trip(ids, days)


def test_long_ids_with_a_constant_prefix_are_packed() -> None:
    ids = [f"{'customer/eu-west/retail/' * 2}{i:06d}" for i in (5, 77, 123_456, 9)]
    assert len(ids[0]) == 54
    _check_round_trip(ids, np.array([3, 1, 4, 1], dtype=np.int32))


def test_random_ids_such_as_uuids_are_left_to_the_text_sort() -> None:
    rng = np.random.default_rng(2)
    ids = [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(300)]
    days = rng.integers(0, 730, 300).astype(np.int32)
    assert pack_keys(_chunked(ids), days) is None


def test_a_missing_id_costs_one_digit_not_the_prefix() -> None:
    ids = [*PREFIXED, None]
    days = np.array([1, 2, 3, 4, 5], dtype=np.int32)
    packed = pack_keys(_chunked(ids, cut=2), days)
    assert packed is not None and [k.dtype for k in packed.keys] == [np.dtype(np.uint32)]
    _check_round_trip(ids, days)


def test_day_spans_beyond_int32_are_not_packed() -> None:
    days = np.array([20_000, -(2**31) + 1], dtype=np.int32)
    assert pack_keys(_chunked(["a", "b"]), days) is None


def test_only_the_bytes_seen_at_a_position_count() -> None:
    # Unpadded numbers: a position holds a digit or the padding, 11 values, not 0..'9'.
    ids = [str(i) for i in range(0, 1_000_000, 997)]
    days = np.arange(len(ids), dtype=np.int32) % 730
    packed = pack_keys(_chunked(ids), days)
    assert packed is not None and [k.dtype for k in packed.keys] == [np.dtype(np.uint32)]
    _check_round_trip(ids, days)


def test_null_slot_spanning_bytes_reads_as_missing() -> None:
    # Arrow lets a null slot cover bytes; they must not leak into the id.
    offsets = pa.py_buffer(np.array([0, 2, 4, 5], dtype=np.int32))
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little"))
    array = pa.StringArray.from_buffers(3, offsets, pa.py_buffer(b"abxyc"), validity)
    packed = pack_keys(pa.chunked_array([array]), np.array([5, 6, 7], dtype=np.int32))
    assert packed is not None
    assert packed.ids(packed.keys).tolist() == ["ab", None, "c"]


@pytest.mark.parametrize(
    "ids",
    [
        pa.chunked_array([pa.array(["x" * (MAX_ID_BYTES + 1), "y"])]),  # too long
        pa.chunked_array([pa.array(["a\0", "a"])]),  # NUL byte: "a" and "a\0" would tie
        pa.chunked_array([pa.array([1, 2])]),  # not text
        pa.chunked_array([], type=pa.string()),  # nothing to pack
    ],
)
def test_unpackable_ids_fall_back(ids: pa.ChunkedArray) -> None:
    assert pack_keys(ids, np.zeros(len(ids), dtype=np.int32)) is None


def test_large_string_ids() -> None:
    ids = pa.chunked_array([pa.array(["b", "a", "ab"], pa.large_string())])
    packed = pack_keys(ids, np.array([3, 2, 1], dtype=np.int32))
    assert packed is not None
    order = np.argsort(packed.keys[0])
    assert packed.ids([packed.keys[0][order]]).tolist() == ["a", "ab", "b"]
