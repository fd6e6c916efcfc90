"""Per-customer reductions over a log sorted by customer and day, in NumPy.

Every per-customer aggregate of the feature engine is a segmented reduction over the
contiguous run of rows of one customer (``ufunc.reduceat``, ``bincount``), computed by
blocks of whole customers on a few threads. See :mod:`churnguard.features.engine` for
how the rows get sorted and for the SQL semantics these reductions follow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._resources import cpu_budget

__all__ = ["RunSpec", "aggregate_runs", "date_days", "order_ties"]

#: Rows per block (whole customers; see aggregate_runs).
_BLOCK_ROWS = 1 << 18
#: The summed columns, in the order that sorts a day's rows (see _tie_order).
_SUMMED = ("amount", "margin", "quantity")


class RunSpec(NamedTuple):
    """What the per-customer reductions need besides the rows."""

    cutoff_day: int
    windows: tuple[int, ...]
    trend_window: int


def _floats(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as float64 and, when the column has NULLs, a validity mask."""
    values = column.to_numpy()
    if column.null_count == 0:
        return np.asarray(values, dtype=np.float64), None
    valid = pc.is_valid(column).to_numpy()
    return np.asarray(values, dtype=np.float64), np.asarray(valid, dtype=bool)


def date_days(column: pa.ChunkedArray) -> np.ndarray:
    """DATE column as int32 days since the epoch (no NULLs: the cutoff filter drops them)."""
    chunks = [chunk.view(pa.int32()) for chunk in column.chunks]
    return np.asarray(pa.chunked_array(chunks, type=pa.int32()).to_numpy(), dtype=np.int32)


def _segment_sum(values: np.ndarray, starts: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """SQL ``SUM`` per segment: NULLs skipped, NaN when a segment has no value at all."""
    if valid is None:
        return np.add.reduceat(values, starts)
    sums = np.add.reduceat(np.where(valid, values, 0.0), starts)
    counts = np.add.reduceat(valid, starts, dtype=np.int64)
    return np.where(counts > 0, sums, np.nan)


def _occasion_features(
    bday: np.ndarray,
    bgross: np.ndarray,
    bnew: np.ndarray,
    cutoff_day: int,
    windows: Sequence[int],
    trend_window: int,
) -> dict[str, Any]:
    """Per-customer occasion features from purchase rows sorted by customer and day.

    Works on rows, never materialising occasions: a row opens an occasion when its
    day differs from the row before (or it starts a customer), and same-day rows add
    a zero step, which changes neither the largest gap nor the sum of squared gaps.
    """
    n = len(bday)
    first = np.flatnonzero(bnew)
    lengths = np.diff(np.append(first, n))
    last = first + lengths - 1
    step = np.zeros(n, dtype=np.int64)
    np.subtract(bday[1:], bday[:-1], out=step[1:])
    step[first] = 0
    new_occ = step != 0
    new_occ[first] = True
    n_occ = np.add.reduceat(new_occ, first, dtype=np.int64)

    n_gaps = n_occ - 1
    has_gap = n_gaps > 0
    # Population std from exact integer moments: the sum of gaps telescopes to last - first.
    s1 = (bday[last] - bday[first]).astype(np.int64)
    s2 = np.add.reduceat(step * step, first)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_std = np.where(
            has_gap, np.sqrt((n_gaps * s2 - s1 * s1).astype(np.float64)) / n_gaps, np.nan
        )
    in_first = bday == np.repeat(bday[first], lengths)

    out: dict[str, Any] = {
        "n_purchases": n_occ,
        "first_age": (cutoff_day - bday[first]).astype(np.int64),
        "last_age": (cutoff_day - bday[last]).astype(np.int64),
        "first_gross": np.add.reduceat(np.where(in_first, bgross, 0.0), first),
        "gap_std": gap_std,
        "gap_max": np.maximum.reduceat(step, first),
        "has_gap": has_gap,
    }
    out.update(_window_features(bday, bgross, new_occ, bnew, cutoff_day, windows, trend_window))
    return out


def _window_features(
    bday: np.ndarray,
    bgross: np.ndarray,
    new_occ: np.ndarray,
    bnew: np.ndarray,
    cutoff_day: int,
    windows: Sequence[int],
    trend_window: int,
) -> dict[str, np.ndarray]:
    """Occasion counts and spend per trailing window and for the previous trend window.

    One pass for all windows: each row falls in one band between consecutive window
    edges (by its age, days before the cutoff); two ``bincount`` calls sum the bands
    per customer and a window is a run of bands.
    """
    tw = int(trend_window)
    edges = np.array(sorted({int(w) for w in windows} | {tw, 2 * tw}), dtype=np.int64)
    n_bands = len(edges) + 1
    # key = band * customers + customer, the band being the number of edges <= age,
    # looked up in a small table by age (one gather instead of a pass per edge). Bands
    # as rows make each window a sum of a few contiguous rows.
    age = cutoff_day - bday
    top = int(edges[-1])
    band_of_age = np.searchsorted(edges, np.arange(top + 1), side="right").astype(np.int64)
    n_cust = int(bnew.sum())
    key = band_of_age[np.minimum(age, top)]
    key *= n_cust
    key += np.cumsum(bnew, dtype=np.int64)
    key -= 1
    size = n_cust * n_bands
    counts = np.bincount(key, weights=new_occ, minlength=size).reshape(n_bands, n_cust)
    spend = np.bincount(key, weights=bgross, minlength=size).reshape(n_bands, n_cust)
    at = {int(e): i for i, e in enumerate(edges)}
    out: dict[str, np.ndarray] = {}
    for w in windows:
        k = at[int(w)] + 1
        out[f"purchases_{w}d"] = counts[:k].sum(axis=0).astype(np.int64)
        out[f"spend_{w}d"] = spend[:k].sum(axis=0)
    lo, hi = at[tw] + 1, at[2 * tw] + 1
    out[f"purchases_prev_{tw}d"] = counts[lo:hi].sum(axis=0).astype(np.int64)
    out[f"spend_prev_{tw}d"] = spend[lo:hi].sum(axis=0)
    return out


def _tie_order(
    tie: np.ndarray, columns: Sequence[tuple[np.ndarray, np.ndarray | None]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where a day's rows go when put in the order of their values (None: nothing moves).

    ``tie`` flags rows of the same customer and day as the row before; ``columns`` are
    the summed columns (values, validity or None), most significant first. Returns
    ``(at, source)``: the tied rows ``at`` take the values of the rows ``source``.

    Why: a sort leaves such rows in an order that may change from run to run (DuckDB's
    parallel sort) or follow the source (the scan), and float sums over them (a day's
    spend) would change in their last bits with it. Ordered as SQL's ``ORDER BY amount,
    ...`` orders them (``-0.0`` equal to ``0.0``, NaN above every number, NULL last),
    every build of a log gives the same bytes, whatever the route its rows took.
    """
    if not tie.any():
        return None
    member = tie.copy()
    member[:-1] |= tie[1:]
    at = np.flatnonzero(member)
    group = np.cumsum(~tie[at])  # which group of tied rows each one belongs to
    order_by: list[np.ndarray] = []  # (rank, value) per column, most significant first
    for values, valid in columns:
        tied = values[at]
        rank = np.isnan(tied).astype(np.int8)  # 0 a number, 1 NaN, 2 NULL
        if valid is not None:
            rank[~valid[at]] = 2
        order_by += [rank, np.where(rank == 0, tied + 0.0, 0.0)]  # + 0.0: -0.0 to 0.0
    within = np.arange(len(at))
    # Most ties are two rows on one day: swap the pairs whose second row sorts first.
    size = np.bincount(group)[group]
    first = np.flatnonzero((size == 2) & np.r_[True, group[1:] != group[:-1]])
    swap = np.zeros(len(first), dtype=bool)
    decided = np.zeros(len(first), dtype=bool)
    for key in order_by:
        a, b = key[first], key[first + 1]
        swap |= ~decided & (a > b)
        decided |= a != b
    pairs = first[swap]
    within[pairs], within[pairs + 1] = pairs + 1, pairs
    big = np.flatnonzero(size > 2)  # larger groups: a lexsort of their rows only
    if len(big):
        within[big] = big[np.lexsort([*(k[big] for k in reversed(order_by)), group[big]])]
    return at, at[within]


def _moved(
    column: tuple[np.ndarray, np.ndarray | None], at: np.ndarray, source: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """A column with its tied rows put in order (a copy: the input may be Arrow's)."""
    values, valid = column
    values = values.copy()
    values[at] = values[source]
    if valid is not None:
        valid = valid.copy()
        valid[at] = valid[source]
    return values, valid


def _ties(day: np.ndarray, new_cust: np.ndarray) -> np.ndarray:
    tie = np.zeros(len(day), dtype=bool)
    tie[1:] = (day[1:] == day[:-1]) & ~new_cust[1:]
    return tie


def order_ties(rows: pa.Table, new_cust: np.ndarray) -> pa.Table:
    """``rows`` with each customer's same-day rows in value order (see :func:`_tie_order`).

    For rows reduced at several cutoffs: ordered once here, every cutoff's blocks skip it
    (``aggregate_runs(..., ties_ordered=True)``).
    """
    summed = {name: _floats(rows.column(name)) for name in _SUMMED if name in rows.column_names}
    moves = _tie_order(_ties(date_days(rows.column("day")), new_cust), list(summed.values()))
    if moves is None:
        return rows
    for name, column in summed.items():
        values, valid = _moved(column, *moves)
        moved = pa.array(values, mask=None if valid is None else ~valid)
        rows = rows.set_column(rows.column_names.index(name), name, moved)
    return rows


def _block(
    rows: pa.Table, new_cust: np.ndarray, offset: int, spec: RunSpec, ties_ordered: bool
) -> dict[str, Any] | None:
    """Aggregates of the customers of one block of whole customers (None: no buyer in it)."""
    day = date_days(rows.column("day"))
    summed = {name: _floats(rows.column(name)) for name in _SUMMED if name in rows.column_names}
    moves = None if ties_ordered else _tie_order(_ties(day, new_cust), list(summed.values()))
    if moves is not None:
        summed = {name: _moved(column, *moves) for name, column in summed.items()}
    amount, amount_valid = summed.pop("amount")
    starts = np.flatnonzero(new_cust)
    with np.errstate(invalid="ignore"):
        ret = amount < 0
    # SQL orders NaN above every number: a NaN amount is a purchase, never a return;
    # a NULL amount (NaN here too, told apart by the validity mask) is neither.
    buy = ~ret
    if amount_valid is not None:
        buy &= amount_valid

    totals: dict[str, Any] = {}
    if buy.all():
        totals["n_transactions"] = np.diff(np.append(starts, len(day))).astype(np.float64)
        totals["n_returns"] = np.zeros(len(starts))
        totals["returned_amount"] = np.zeros(len(starts))
        totals["gross_spend"] = np.add.reduceat(amount, starts)
        bday, bgross, bnew = day, amount, new_cust
        keep = np.arange(len(starts))
    else:
        totals["n_transactions"] = np.add.reduceat(buy, starts, dtype=np.int64).astype(np.float64)
        totals["n_returns"] = np.add.reduceat(ret, starts, dtype=np.int64).astype(np.float64)
        totals["returned_amount"] = 0.0 - np.add.reduceat(np.where(ret, amount, 0.0), starts)
        totals["gross_spend"] = np.add.reduceat(np.where(buy, amount, 0.0), starts)
        sel = np.flatnonzero(buy)
        if len(sel) == 0:
            return None
        bseg = (np.cumsum(new_cust) - 1)[sel]
        bday, bgross = day[sel], amount[sel]
        bnew = np.ones(len(sel), dtype=bool)
        bnew[1:] = bseg[1:] != bseg[:-1]
        keep = bseg[bnew]
    for col, (values, valid) in summed.items():
        totals[f"{col}_total"] = _segment_sum(values, starts, valid)

    out: dict[str, Any] = {"row": starts[keep] + offset}
    out.update({name: values[keep] for name, values in totals.items()})
    out.update(
        _occasion_features(bday, bgross, bnew, spec.cutoff_day, spec.windows, spec.trend_window)
    )
    return out


def _block_bounds(starts: np.ndarray, n_rows: int, size: int) -> list[tuple[int, int]]:
    """Row ranges of about ``size`` rows that never split a customer."""
    at = np.searchsorted(starts, np.arange(size, n_rows, size))
    cuts = starts[at[at < len(starts)]]
    edges = np.unique(np.concatenate([[0], cuts, [n_rows]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def aggregate_runs(
    rows: pa.Table,
    new_cust: np.ndarray,
    ids_at: Callable[[np.ndarray], np.ndarray],
    spec: RunSpec,
    *,
    ties_ordered: bool = False,
) -> pd.DataFrame | None:
    """Per-customer aggregates from rows sorted by customer then ``day`` (None: no buyer).

    ``new_cust`` flags the first row of each customer and ``ids_at`` gives the ids of
    rows by their numbers. A day's rows are put in value order block by block, unless
    ``ties_ordered`` says :func:`order_ties` did it already. The rows are cut into
    blocks of whole customers: block-sized temporaries stay in cache and are recycled
    by the allocator instead of being faulted in afresh for every full-length array,
    and blocks run on several threads (NumPy releases the GIL).
    """
    if rows.num_rows == 0:
        return None
    starts = np.flatnonzero(new_cust)
    bounds = _block_bounds(starts, rows.num_rows, _BLOCK_ROWS)

    def run(bound: tuple[int, int]) -> dict[str, Any] | None:
        a, b = bound
        return _block(rows.slice(a, b - a), new_cust[a:b], a, spec, ties_ordered)

    threads = cpu_budget(8)
    if len(bounds) > 1 and threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = [p for p in pool.map(run, bounds) if p is not None]
    else:
        parts = [p for p in map(run, bounds) if p is not None]
    if not parts:
        return None
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    has_gap = merged.pop("has_gap")
    gap_max: Any = merged.pop("gap_max")
    if not has_gap.all():  # SQL MAX of no gap is NULL: a nullable integer column, as DuckDB gives
        gap_max = pd.array(gap_max, dtype="Int64")
        gap_max[~has_gap] = pd.NA
    frame: dict[str, Any] = {"customer_id": ids_at(merged.pop("row"))}
    for name in ("n_purchases", "n_transactions", "n_returns", "returned_amount", "gross_spend"):
        frame[name] = merged.pop(name)
    for name in ("first_age", "last_age", "first_gross", "gap_std"):
        frame[name] = merged.pop(name)
    frame["gap_max"] = gap_max
    totals = [name for name in ("margin_total", "quantity_total") if name in merged]
    frame.update({name: values for name, values in merged.items() if name not in totals})
    frame.update({name: merged[name] for name in totals})
    # copy=False keeps one block per column: consolidating would copy every column.
    return pd.DataFrame(frame, copy=False)
