"""Order-preserving integer sort keys for short text customer ids.

Sorting ten million rows by a text id and a day is the costliest step of a feature
build: DuckDB compares strings, ~2 s on two cores. Most customer ids are short
(``00042``, ``CUST-0001234``), and a short id can be packed, with the day, into one
or two unsigned integers whose numeric order is the order of ``(customer_id, day)``.
DuckDB sorts those several times faster, the fewer bits the faster; the ids come back
from the keys of the first row of each customer.

How a key is made: an id of up to :data:`MAX_ID_BYTES` bytes of UTF-8, zero-padded to
the longest id, compares position by position exactly as the text compares byte by
byte, provided no id holds a NUL byte (else ``"a"`` and ``"a\\0"`` would be equal;
such logs are sorted as text). Each byte position that varies in the log, then the
day, is a digit of a mixed-radix number; the digit at a position is the rank of its
byte among the bytes seen there. A 7-digit id spends 10 values on each varying digit
(11 where shorter ids leave padding), so a million such ids and two years of days fit
one 32-bit key, and a constant prefix costs nothing. When ids are missing, a leading
0/1 digit sorts them last, as SQL's ``NULLS LAST``. Digits are grouped greedily into
keys of up to 64 bits, most significant first.

What it gains depends on the ids (``benchmarks/bench_id_formats.py``: whole aggregation
of 10M rows of 1M customers on 2 cores, packed against text, two runs): zero-padded
numbers 1.3-1.6x faster (the sort itself ~5x), plain numbers and 18-character
``cus_...`` ids 1.2-1.3x, 45-character prefixed ids about even (their bytes must be
scattered into place first). Random ids such as UUIDs need more than :data:`MAX_KEYS`
keys: that shows on the first chunk, and they are sorted as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MAX_ID_BYTES", "PackedKeys", "pack_keys"]

#: Longest id (in UTF-8 bytes) that is packed; longer ids are sorted as text.
MAX_ID_BYTES = 64
#: Most keys a row may take; wider keys sort no faster than the text (random ids such
#: as UUIDs need more and are sorted as text).
MAX_KEYS = 2
#: Rows per block of the packing arithmetic (its temporaries stay in cache).
_BLOCK_ROWS = 1 << 16
_OFFSETS = {pa.string(): np.int32, pa.large_string(): np.int64}
_DAY = -1  # the position of the day among the digits
_MISSING = -2  # the position of the "id is missing" digit, first when there is one

#: A key's digits, most significant first: (byte position, _MISSING or _DAY; radix).
_Digits = list[tuple[int, int]]


def _lengths(chunk: pa.Array) -> tuple[int, int] | None:
    """Shortest and longest id of a chunk in bytes (shortest -1 when one is missing).

    None when an id holds a NUL byte.
    """
    if len(chunk) == 0:
        return MAX_ID_BYTES, 0
    off, raw = _buffers(chunk)
    lens = np.diff(off)
    if (raw[off[0] : off[-1]] == 0).any():
        return None
    return (-1 if chunk.null_count else int(lens.min())), int(lens.max())


def _buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and bytes of a string array, missing ids as empty strings."""
    if chunk.null_count:
        chunk = pc.fill_null(chunk, "")  # a null slot may still span bytes
    _, offsets, data = chunk.buffers()
    n = len(chunk)
    off = np.frombuffer(offsets, dtype=_OFFSETS[chunk.type])[chunk.offset : chunk.offset + n + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return off, raw


def _id_bytes(chunk: pa.Array, out: np.ndarray) -> np.ndarray | None:
    """Write the ids of one chunk to the zeroed rows ``out``, zero-padded.

    Returns the rows' validity (None: no id missing); missing ids are left as zeros.
    """
    n = len(chunk)
    if n == 0:
        return None
    valid = None
    if chunk.null_count:
        valid = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    off, raw = _buffers(chunk)
    lens = np.diff(off)
    longest = int(lens.max())
    if int(lens.min()) == longest:  # fixed-width ids: one reshape
        out[:, :longest] = raw[off[0] : off[0] + n * longest].reshape(n, longest)
    elif longest:
        # Each id's bytes move by (row * width - offset): one scatter of the contiguous
        # bytes, by blocks of rows to bound the index arrays.
        flat = out.reshape(-1)
        for a in range(0, n, _BLOCK_ROWS):
            b = min(a + _BLOCK_ROWS, n)
            shift = np.arange(a, b, dtype=np.int64) * out.shape[1] - off[a:b]
            dest = np.arange(int(off[a]), int(off[b]), dtype=np.int64)
            dest += np.repeat(shift, lens[a:b])
            flat[dest] = raw[off[a] : off[b]]
    return valid


def _seen_bytes(rows: np.ndarray) -> np.ndarray:
    """``(positions, 256)`` bool: byte values that may occur at each position of ``rows``.

    A position's range is cheap and tight for fixed-width ids; where the zero padding
    of shorter ids sits next to text, the range (``0`` to ``'9'``) is mostly empty, and
    the bytes actually there are counted instead.
    """
    n, width = rows.shape
    k = 64  # reduce over a wide view: along axis 0 of a narrow matrix is much slower
    head = (n // k) * k
    lo = np.full(width, 255, dtype=np.uint8)
    hi = np.zeros(width, dtype=np.uint8)
    if head:
        wide = rows[:head].reshape(-1, k * width)
        lo = np.minimum(lo, wide.min(axis=0).reshape(k, width).min(axis=0))
        hi = np.maximum(hi, wide.max(axis=0).reshape(k, width).max(axis=0))
    if head < n:
        lo = np.minimum(lo, rows[head:].min(axis=0))
        hi = np.maximum(hi, rows[head:].max(axis=0))
    seen = np.zeros((width, 256), dtype=bool)
    for p in range(width):
        if lo[p] == 0 < hi[p]:
            seen[p] = np.bincount(rows[:, p], minlength=256) > 0
        else:
            seen[p, lo[p] : int(hi[p]) + 1] = True
    return seen


def _split(value: np.ndarray, digits: _Digits) -> dict[int, np.ndarray]:
    """The digits of mixed-radix numbers, by position (a byte position's digit is a rank)."""
    out: dict[int, np.ndarray] = {}
    for position, radix in reversed(digits):
        value, out[position] = np.divmod(value, radix)
    return out


@dataclass(frozen=True)
class PackedKeys:
    """Sort keys of a log's rows and how to read ids and days back from them.

    Attributes
    ----------
    keys : list of ndarray
        ``uint32`` or ``uint64`` columns, most significant first: sorting the rows by
        them sorts by ``(customer_id, day)``.
    """

    keys: list[np.ndarray]
    _digits: list[_Digits]  # per key
    _values: list[np.ndarray]  # the bytes seen at each position of the padded ids, sorted
    _day_lo: int
    _width: int | None  # the length of every id, when all have one length

    def days(self, keys: list[np.ndarray]) -> np.ndarray:
        """Days (int32) of rows given their keys."""
        day_radix = self._digits[-1][-1][1]
        offset = keys[-1] % day_radix if len(self._digits[-1]) > 1 else keys[-1]
        days = offset.astype(np.int32)
        days += self._day_lo
        return days

    def new_customer(self, keys: list[np.ndarray]) -> np.ndarray:
        """True on each row whose id differs from the row before (rows sorted by key)."""
        flags = np.zeros(len(keys[0]), dtype=bool)
        for values, digits in zip(keys, self._digits, strict=True):
            if digits[-1][0] == _DAY:  # the day is the last, least significant digit
                if len(digits) == 1:
                    continue
                values = values // digits[-1][1]
            flags[1:] |= values[1:] != values[:-1]
        flags[:1] = True
        return flags

    def ids(self, keys: list[np.ndarray]) -> np.ndarray:
        """Ids (object array of ``str``, ``None`` where missing) of rows given their keys."""
        m = len(keys[0])
        padded = np.empty((m, len(self._values)), dtype=np.uint8)
        padded[:] = [v[0] for v in self._values]
        missing = None
        for values, digits in zip(keys, self._digits, strict=True):
            for position, rank in _split(values, digits).items():
                if position == _MISSING:
                    missing = rank.astype(bool)
                elif position != _DAY:
                    padded[:, position] = self._values[position][rank]
        if self._width is not None:
            lens = np.full(m, self._width)
            data = padded[:, : self._width]
        else:
            lens = np.count_nonzero(padded, axis=1)  # ids hold no NUL: zeros are the padding
            data = padded[np.arange(padded.shape[1]) < lens[:, None]]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        buffer = pa.py_buffer(np.ascontiguousarray(data))
        text = pa.StringArray.from_buffers(m, pa.py_buffer(offsets), buffer)
        out = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        if missing is not None:
            out[missing] = None
        return out


def _group(digits: _Digits) -> list[_Digits]:
    """Digits grouped into keys: all in one if they fit 32 bits, else greedily into keys
    of up to 64 bits (each stored in 32 bits when it fits)."""
    if math.prod(r for _, r in digits) <= 2**32:
        return [digits]
    groups: list[_Digits] = [[]]
    size = 1
    for position, radix in digits:
        if size * radix > 2**64 and groups[-1]:
            groups.append([])
            size = 1
        groups[-1].append((position, radix))
        size *= radix
    return groups


def pack_keys(ids: pa.ChunkedArray, day: np.ndarray) -> PackedKeys | None:
    """Pack ``(customer_id, day)`` into order-preserving unsigned integer keys.

    Parameters
    ----------
    ids : pyarrow.ChunkedArray
        Customer ids, ``string`` or ``large_string``.
    day : ndarray
        Days (integers) of the same rows.

    Returns
    -------
    PackedKeys or None
        None when the ids cannot be packed (not ``string``/``large_string``, an id longer than
        :data:`MAX_ID_BYTES` bytes or holding a NUL byte, or more than
        :data:`MAX_KEYS` keys needed): sort by the text instead.
    """
    if ids.type not in _OFFSETS or len(ids) == 0:
        return None
    shortest, longest = MAX_ID_BYTES, 0
    for chunk in ids.chunks:
        sizes = _lengths(chunk)
        if sizes is None:
            return None
        shortest, longest = min(shortest, sizes[0]), max(longest, sizes[1])
    if longest > MAX_ID_BYTES:
        return None
    day = np.asarray(day)
    day_lo, day_hi = int(day.min()), int(day.max())
    if day_hi - day_lo >= 2**31:
        return None
    day_digit = (_DAY, day_hi - day_lo + 1)
    missing: np.ndarray | None = None

    def grouped(seen: np.ndarray) -> list[_Digits]:
        radix = seen.sum(axis=1)
        digits = [(p, int(r)) for p, r in enumerate(radix) if r > 1] + [day_digit]
        return _group(([(_MISSING, 2)] if missing is not None else []) + digits)

    padded = np.zeros((len(ids), max(longest, 1)), dtype=np.uint8)
    seen = np.zeros((padded.shape[1], 256), dtype=bool)
    start = 0
    for chunk in ids.chunks:
        rows = padded[start : start + len(chunk)]
        valid = _id_bytes(chunk, rows)
        if valid is not None:
            if missing is None:
                missing = np.zeros(len(ids), dtype=bool)
            missing[start : start + len(chunk)] = ~valid
        start += len(chunk)
        present = rows if valid is None else rows[valid]
        if len(present):
            seen |= _seen_bytes(present)
            # Seen values only grow: give up at once when one chunk's ids already need
            # too many keys (random ids such as UUIDs).
            if len(grouped(seen)) > MAX_KEYS:
                return None
    seen[:, 0] |= ~seen.any(axis=1)  # every id missing: one (zero) byte per position
    values = [np.flatnonzero(row).astype(np.uint8) for row in seen]
    if missing is not None:
        padded[missing] = [v[0] for v in values]  # a missing id sorts on its own digit
    # The digit at a position is the rank of its byte among the bytes seen there: the
    # byte less the smallest when they form a range (cheaper than a table lookup).
    rank = np.cumsum(seen, axis=1).astype(np.uint8) - 1
    contiguous = [int(v[-1]) - int(v[0]) + 1 == len(v) for v in values]
    groups = grouped(seen)
    dtypes = [np.uint32 if math.prod(r for _, r in g) <= 2**32 else np.uint64 for g in groups]
    keys = [np.empty(len(ids), dtype=dtype) for dtype in dtypes]
    # Horner's rule by blocks: full-length temporaries would be faulted in afresh per digit.
    for a in range(0, len(ids), _BLOCK_ROWS):
        b = min(a + _BLOCK_ROWS, len(ids))
        for key, group in zip(keys, groups, strict=True):
            value = key[a:b]
            value[:] = 0
            for position, radix in group:
                np.multiply(value, radix, out=value)
                if position == _DAY:
                    np.add(value, (day[a:b].astype(np.int64) - day_lo).astype(key.dtype), out=value)
                elif position == _MISSING:
                    assert missing is not None
                    np.add(value, missing[a:b], out=value)
                elif contiguous[position]:
                    np.add(value, padded[a:b, position] - values[position][0], out=value)
                else:
                    np.add(value, rank[position][padded[a:b, position]], out=value)
    width = longest if shortest == longest else None
    return PackedKeys(keys, groups, values, day_lo, width)
