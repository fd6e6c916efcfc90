"""The NumPy side of :func:`churnguard.data.scan.scan_transactions`.

Row checks (ids stripped, date and amount rules) and the ordering of the used rows
by customer then date without a general sort when the log is already ordered or the
ids are short. Shared internals of the scan; not a public API.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._resources import cpu_budget
from churnguard.data._scan_sql import WHITESPACE, Limits, big_column_pool, release_arrow_memory

__all__ = [
    "AFTER",
    "USED",
    "gather",
    "id_runs",
    "id_values",
    "row_codes",
    "sort_order",
    "strip_ids",
]


# Row codes: 0 used, 1-6 quarantined (first failing rule), 7 after as-of.
USED, AFTER = 0, 7


_BLOCK = 1 << 16  # rows per block of NumPy work that should stay in cache
_SORT_THREADS: int | None = None  # None: the cores this process may use, at most 8
_SORT_PIECE = 1 << 20  # below this many rows per thread a single sort is as fast


_MAX_ID_BYTES = 24  # longer ids are sorted as text


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (as stored: int32, or int64 for large strings) and bytes of a string chunk."""
    _, offsets, data = chunk.buffers()
    n = len(chunk)
    dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    off = np.frombuffer(offsets, dtype=dtype)[chunk.offset : chunk.offset + n + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return off, raw


def strip_ids(ids: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Ids without surrounding whitespace, and where an id is missing (null or empty).

    Why not strip every id: that copies every string. The first and last byte of
    each id are checked in NumPy instead; only ids that start or end with a space, a
    control character or a non-ASCII character (possibly a Unicode space) are looked
    at, and the column is stripped (Python's whitespace set, as ``str.strip``) only
    if one of them really changes. Returns ``ids`` itself when nothing changes.
    """
    if ids.type not in (pa.string(), pa.large_string()):
        ids = ids.cast(pa.string())
    missing_at, suspects = [], []
    start = 0
    step = _BLOCK * 32  # by blocks: the temporaries stay small
    blocks = (c.slice(a, step) for c in ids.chunks for a in range(0, len(c), step))
    for chunk in blocks:
        off, raw = _string_buffers(chunk)
        lengths = np.diff(off)
        if chunk.null_count or not lengths.all():  # missing ids here: test the others
            present = lengths > 0
            if chunk.null_count:
                present &= np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            missing_at.append(np.flatnonzero(~present) + start)
            at = np.flatnonzero(present)
            first, last = raw[off[:-1][at]], raw[off[1:][at] - 1]
        else:
            at = None
            first, last = raw[off[:-1]], raw[off[1:] - 1]
        # A byte <= 32 or >= 128 is >= 95 once 33 is taken away (uint8 wraps around).
        edge = (first - np.uint8(33)) >= 95
        edge |= (last - np.uint8(33)) >= 95
        if edge.any():
            hits = np.flatnonzero(edge)
            suspects.append((hits if at is None else at[hits]) + start)
        start += len(chunk)
    missing = np.zeros(len(ids), dtype=bool)
    for positions in missing_at:
        missing[positions] = True
    suspect = np.concatenate(suspects) if suspects else np.zeros(0, dtype=np.int64)
    if not len(suspect):
        return ids, missing
    if len(suspect) <= 1 << 16:
        values = ids.take(pa.array(suspect)).to_pylist()
        if all(v == v.strip() for v in values):
            return ids, missing  # non-ASCII ids without surrounding spaces
    stripped = pc.utf8_trim(ids, characters=WHITESPACE)
    empty = pc.fill_null(pc.equal(pc.binary_length(stripped), 0), True)
    missing |= np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)
    return stripped, missing


def row_codes(
    stamps: np.ndarray,
    per_day: int,
    amount: pa.ChunkedArray,
    limits: Limits,
) -> np.ndarray:
    """Row codes of the date and amount rules: 0 used, 2-6 the first that fails, 7 after as-of.

    (Rule 1, the missing id, comes first and is applied by the caller over these.)
    Most rows of most logs pass every rule: one combined test finds the others (NaT
    fails the date range, NaN, infinity and null the amount limit by themselves),
    and the rules are applied to those only, from the last to the first, so that the
    first failing rule wins. The amounts are tested by slices in Arrow: no
    full-length copy of them is made.
    """

    def start_of(day: dt.date) -> int:
        return (day - dt.date(1970, 1, 1)).days * per_day

    floor, future = start_of(limits.floor), start_of(limits.today + dt.timedelta(days=1))
    end = future
    if limits.as_of is not None:
        end = min(end, start_of(limits.as_of + dt.timedelta(days=1)))
    ok = stamps >= floor  # NaT is the smallest int64: fails here
    ok &= stamps < end
    at = 0  # NaN, null and (for a finite limit) infinity fail the amount limit
    # By slices: Arrow's temporaries stay small (a whole-column abs() is 80 MB for 10M).
    slices = (c.slice(a, _BLOCK * 16) for c in amount.chunks for a in range(0, len(c), _BLOCK * 16))
    for chunk in slices:
        fine = pc.less_equal(pc.abs(chunk), limits.max_amount)
        if np.isinf(limits.max_amount):  # then infinity passes the limit: test it apart
            fine = pc.and_(fine, pc.is_finite(chunk))
        fine = pc.fill_null(fine, False)
        ok[at : at + len(chunk)] &= np.asarray(fine.to_numpy(zero_copy_only=False), dtype=bool)
        at += len(chunk)
    code = np.zeros(len(stamps), dtype=np.uint8)
    rest = np.flatnonzero(~ok)
    if not len(rest):
        return code
    when = stamps[rest]
    value = np.asarray(amount.take(pa.array(rest)).to_numpy(zero_copy_only=False), dtype=float)
    sub = np.zeros(len(rest), dtype=np.uint8)
    if limits.as_of is not None:
        sub[when >= start_of(limits.as_of + dt.timedelta(days=1))] = AFTER
    with np.errstate(invalid="ignore"):
        sub[np.abs(value) > limits.max_amount] = 6
    sub[~np.isfinite(value)] = 5  # a null became NaN
    nat = np.iinfo(np.int64).min  # NaT: the date could not be parsed
    sub[(when < floor) & (when != nat)] = 4
    sub[when >= future] = 3
    sub[when == nat] = 2
    code[rest] = sub
    return code


def _already_sorted(ids: pa.ChunkedArray, stamps: np.ndarray) -> bool:
    """Whether the rows are in (customer_id, date) order already (then no sort is needed).

    Logs read back from a sorted store often are (the partitioned scorer sorts each
    partition in DuckDB); the first rows are checked in Python first, so an
    unsorted log costs next to nothing.
    """
    n = len(stamps)
    if n < 2:
        return True
    head = ids.slice(0, min(n, 4096)).to_pylist()
    if any(a > b for a, b in zip(head, head[1:], strict=False)):
        return False
    whole = ids.combine_chunks()
    first, second = whole.slice(0, n - 1), whole.slice(1)
    if not pc.all(pc.less_equal(first, second)).as_py():
        return False
    same = np.asarray(pc.equal(first, second).to_numpy(zero_copy_only=False), dtype=bool)
    return bool((stamps[:-1][same] <= stamps[1:][same]).all())


def _time_of_day(stamps: np.ndarray, per_day: int) -> tuple[int, np.ndarray | None]:
    """Radix and values of the times of day in their coarsest exact unit (1, None: midnight).

    Most logs hold dates without a time: that is checked by blocks, without a
    full-length array. Times to the second take 86,400 values, to the microsecond
    8.64e10: a coarser unit leaves more room for the customer and the position in
    one 64-bit key.
    """
    for a in range(0, len(stamps), _BLOCK):
        if (stamps[a : a + _BLOCK] % per_day).any():
            break
    else:
        return 1, None
    tod = stamps % per_day  # floor modulo: never negative, also before 1970
    unit = per_day // 86_400  # one second
    while unit > 1 and (tod % unit).any():
        unit //= 1000
    values = tod // unit if unit > 1 else tod
    return int(values.max()) + 1, values


def _padded_blocks(parts: list[tuple[np.ndarray, np.ndarray]], width: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ids as ``(rows, width)`` bytes, zero-padded on the right."""
    for off, raw in parts:
        n = len(off) - 1
        for a in range(0, n, _BLOCK):
            b = min(a + _BLOCK, n)
            o = off[a : b + 1]
            lengths = np.diff(o)
            if (lengths == width).all():  # fixed-width ids: a view of the bytes, no copy
                yield raw[o[0] : o[-1]].reshape(b - a, width)
                continue
            # Each id's bytes move by (row * width - offset): one scatter.
            block = np.zeros((b - a, width), dtype=np.uint8)
            shift = np.arange(b - a, dtype=np.int64) * width - (o[:-1] - o[0])
            dest = np.arange(o[-1] - o[0], dtype=np.int64) + np.repeat(shift, lengths)
            block.reshape(-1)[dest] = raw[o[0] : o[-1]]
            yield block


def _byte_ranges(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest byte at each position of a block of padded ids.

    Reduced over a wide view (rows folded into columns): reducing a narrow matrix
    along its rows is several times slower in NumPy.
    """
    n, width = block.shape
    k = 64
    head = (n // k) * k
    lo = np.full(width, 255, dtype=np.uint8)
    hi = np.zeros(width, dtype=np.uint8)
    if head:
        wide = block[:head].reshape(-1, k * width)
        lo = np.minimum(lo, wide.min(axis=0).reshape(k, width).min(axis=0))
        hi = np.maximum(hi, wide.max(axis=0).reshape(k, width).max(axis=0))
    if head < n:
        lo = np.minimum(lo, block[head:].min(axis=0))
        hi = np.maximum(hi, block[head:].max(axis=0))
    return lo, hi


def id_values(ids: pa.ChunkedArray) -> tuple[np.ndarray, int] | None:
    """Each id as an integer in the ids' order, and how many values there can be.

    An id of up to :data:`_MAX_ID_BYTES` bytes, zero-padded to the longest, compares
    byte by byte as the text does (UTF-8 keeps the code point order; ids holding a
    NUL byte are refused, else ``"a"`` and ``"a\\0"`` would tie). Each byte position
    that varies is a digit of a mixed-radix number: the byte less the smallest seen
    there when that fits, else its rank among the bytes seen there (where padding
    sits next to text). Seven-digit ids take 10^7 values (24 bits), leaving room for
    the day, the time and the row in one 64-bit key. None when the ids are longer,
    or need more than 62 bits (random ids such as UUIDs).
    """
    chunks = [c if not c.null_count else pc.fill_null(c, "") for c in ids.chunks if len(c)]
    parts = [_string_buffers(c) for c in chunks]
    if not parts:
        return None
    width = max(int(np.diff(off).max()) for off, _ in parts)
    if not 0 < width <= _MAX_ID_BYTES:
        return None
    if any((raw[off[0] : off[-1]] == 0).any() for off, raw in parts):
        return None
    lo = np.full(width, 255, dtype=np.uint8)
    hi = np.zeros(width, dtype=np.uint8)
    for block in _padded_blocks(parts, width):
        block_lo, block_hi = _byte_ranges(block)
        np.minimum(lo, block_lo, out=lo)
        np.maximum(hi, block_hi, out=hi)
    radix = hi.astype(np.int64) - lo + 1
    tables: dict[int, np.ndarray] = {}
    if math.prod(int(r) for r in radix) >= 2**62:
        # Ranges are too wide (padding zeros next to letters or digits): rank the bytes
        # actually seen at those positions instead.
        wide = [p for p in range(width) if radix[p] > 16]
        seen = np.zeros((width, 256), dtype=bool)
        for block in _padded_blocks(parts, width):
            for p in wide:
                seen[p] |= np.bincount(block[:, p], minlength=256) > 0
        for p in wide:
            tables[p] = (np.cumsum(seen[p]) - 1).astype(np.uint64)
            radix[p] = int(seen[p].sum())
    digits = [p for p in range(width) if radix[p] > 1]  # constant positions cost nothing
    total = math.prod(int(radix[p]) for p in digits)
    if total >= 2**62:
        return None
    dtype = np.uint32 if total <= 2**32 else np.uint64  # half the memory when it fits
    values = np.empty(sum(len(off) - 1 for off, _ in parts), dtype=dtype)
    at = 0
    for block in _padded_blocks(parts, width):
        value = values[at : at + len(block)]
        value[:] = 0
        for p in digits:
            np.multiply(value, int(radix[p]), out=value, casting="unsafe")
            digit = tables[p][block[:, p]] if p in tables else block[:, p] - lo[p]
            np.add(value, digit, out=value, casting="unsafe")
        at += len(block)
    return values, total


def sort_order(
    ids: pa.ChunkedArray,
    stamps: np.ndarray,
    per_day: int,
    used: np.ndarray | None,
    pending: Future[tuple[np.ndarray, int] | None] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Positions of the used rows in (customer_id, date, position) order.

    ``stamps`` are the dates as integers (``per_day`` units a day), valid on used
    rows; ``used`` the positions of the used rows (None: all). Returns the positions
    (None when all rows are used and already in order) and, when the sort keys tell
    it for free, the first row of each customer in the sorted rows (else None).

    Why integer keys: sorting ten million rows by text costs ~6 s on two cores. Short
    ids become integers in their order (:func:`id_values`); with the day, the time
    of day (when there is one) and the position as lower digits, every key is unique,
    so one unstable (SIMD) sort of 64-bit integers gives the stable order. When the
    key is too wide, a stable ``numpy.lexsort``; ids that cannot be made integers
    (long or random) are sorted as text by Arrow's stable sort. ``pending`` may
    hold :func:`id_values` of ``ids`` being computed on another thread.
    """
    n = len(stamps)
    if used is None and _already_sorted(ids, stamps):
        return None, None
    mine = stamps if used is None else stamps[used]
    packed_ids = pending.result() if pending is not None else id_values(ids)
    if packed_ids is None:
        subset = ids if used is None else ids.take(pa.array(used))
        table = pa.table({"c": subset, "d": pa.array(mine)})
        order = pc.sort_indices(table, sort_keys=[("c", "ascending"), ("d", "ascending")])
        positions = np.asarray(order.to_numpy(), dtype=np.int64)
        return (positions if used is None else used[positions]), None
    values, id_radix = packed_ids
    if used is not None:
        values = values[used]
    day_lo = int(mine.min()) // per_day
    day_radix = int(mine.max()) // per_day - day_lo + 1
    tod_radix, tod = _time_of_day(mine, per_day)
    row_bits = max(1, (n - 1).bit_length())
    below_id = day_radix * tod_radix
    if id_radix * below_id << row_bits > 2**64:
        order = np.lexsort((mine, values))  # stable: ties keep their position
        return (order if used is None else used[order]), None
    packed = np.empty(len(mine), dtype=np.uint64)
    rows = np.uint64(row_bits)
    for a in range(0, len(mine), _BLOCK):  # by blocks: no full-length temporaries
        b = min(a + _BLOCK, len(mine))
        key = packed[a:b]
        np.multiply(values[a:b], np.uint64(day_radix), out=key)
        key += (mine[a:b] // per_day - day_lo).astype(np.uint64)
        if tod is not None:
            key *= np.uint64(tod_radix)
            key += tod[a:b].astype(np.uint64)
        key <<= rows
        key |= np.arange(a, b, dtype=np.uint64) if used is None else used[a:b].astype(np.uint64)
    del values, tod
    _sort_unique(packed)
    starts = _key_runs(packed, row_bits, below_id)
    packed &= np.uint64((1 << row_bits) - 1)
    return packed.view(np.int64), starts


def _sort_unique(keys: np.ndarray) -> None:
    """Sort ``keys`` (unique integers) in place, on several threads when it pays.

    Why: NumPy's sort uses one core (0.65 s for ten million 64-bit keys here). The
    pieces are sorted on their own threads (NumPy releases the GIL) and a stable sort
    then merges the sorted runs, which Timsort does in about one pass (0.07 s).
    The keys are unique, so the result is the one a single sort gives.
    """
    pieces = min(_SORT_THREADS or cpu_budget(8), len(keys) // _SORT_PIECE)
    if pieces < 2:
        keys.sort()
        return
    cuts = np.linspace(0, len(keys), pieces + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=pieces) as pool:
        list(pool.map(np.ndarray.sort, [keys[a:b] for a, b in itertools.pairwise(cuts)]))
    keys.sort(kind="stable")


def _key_runs(packed: np.ndarray, row_bits: int, below_id: int) -> np.ndarray:
    """First row of each customer in sorted keys (where the id digits change)."""
    new = np.ones(len(packed), dtype=bool)
    previous = None
    for a in range(0, len(packed), _BLOCK):
        part = (packed[a : a + _BLOCK] >> np.uint64(row_bits)) // np.uint64(below_id)
        new[a + 1 : a + len(part)] = part[1:] != part[:-1]
        if previous is not None:
            new[a] = part[0] != previous
        previous = part[-1]
    return np.flatnonzero(new)


def _take_ids(ids: pa.ChunkedArray, positions: np.ndarray, starts: np.ndarray | None) -> pa.Array:
    """``ids`` at ``positions`` (which are sorted by customer).

    Gathering ten million strings at random costs ~0.8 s. When the customer runs are
    known and the ids all have one length, only the first row of each run is
    gathered and the ids are repeated over their runs in NumPy.
    """
    n = len(positions)
    if starts is not None and len(starts):
        firsts = pc.take(
            ids, pa.array(positions[starts]), memory_pool=big_column_pool()
        ).combine_chunks()
        off, raw = _string_buffers(firsts)
        lengths = np.diff(off)
        width = int(lengths[0]) if len(lengths) else 0
        if width and not firsts.null_count and (lengths == width).all() and n * width < 2**31:
            items = raw[off[0] : off[-1]].view(np.dtype((np.void, width)))
            data = np.repeat(items, np.diff(np.append(starts, n)))
            offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
            return pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets), pa.py_buffer(data.view(np.uint8))
            )
    return pc.take(ids, pa.array(positions), memory_pool=big_column_pool()).combine_chunks(
        big_column_pool()
    )


def gather(
    columns: dict[str, Any],
    unit: str,
    positions: np.ndarray | None,
    starts: np.ndarray | None,
    order: list[str],
) -> pa.Table:
    """The output table: every column at ``positions`` (as it is when None).

    ``columns`` holds the source columns (``date`` as int64 NumPy stamps) and is
    emptied: the caller keeps no other reference, so each source is released as soon
    as it has been gathered (a gather from a chunked column first concatenates it)
    and the peak holds the log about once plus one column, not twice.
    """
    date_type = pa.timestamp(unit)
    gathered: dict[str, pa.Array | pa.ChunkedArray] = {}
    stamps = columns.pop("date")
    if positions is None:
        gathered["date"] = pa.array(stamps.view(f"M8[{unit}]"), type=date_type)
        gathered.update(columns)
        columns.clear()
    else:
        index = pa.array(positions)

        def take(name: str) -> pa.Array:
            column = columns.pop(name)
            if name == "date":
                out = pa.array(column[positions].view(f"M8[{unit}]"), type=date_type)
            elif name == "customer_id":
                out = _take_ids(column, positions, starts)
            else:
                out = pc.take(column, index, memory_pool=big_column_pool()).combine_chunks(
                    big_column_pool()
                )
            del column
            release_arrow_memory()
            return out

        columns["date"] = stamps
        del stamps
        # Two at a time: each gather holds its source and its output, so the peak
        # grows with the number of threads, and two cores are what most machines
        # running this have free.
        with ThreadPoolExecutor(max_workers=2) as pool:
            names = list(columns)
            gathered.update(zip(names, pool.map(take, names), strict=True))
    out = pa.table({name: gathered.pop(name) for name in order})
    if unit != "ns":
        at = order.index("date")
        out = out.set_column(at, "date", out.column("date").cast(pa.timestamp("ns")))
    return out


def id_runs(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """First row of each customer in rows sorted by customer."""
    n = len(ids)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    whole = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    new = np.ones(n, dtype=bool)
    if n > 1:
        differ = pc.not_equal(whole.slice(1), whole.slice(0, n - 1))
        new[1:] = np.asarray(differ.to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(new)
