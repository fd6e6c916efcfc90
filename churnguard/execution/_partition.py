"""One partition of a partitioned scoring run, and the runner that overlaps partitions.

:func:`churnguard.execution.partitioned.score_parquet_partitioned` splits a log into
customer partitions; every partition is then scored (and later explained)
independently of the others. :class:`PartitionRunner` runs ``workers`` of them
at once on threads of this process. Threads rather than processes: the heavy
steps (DuckDB, LightGBM, NumPy reductions) release the GIL, so threads overlap
one partition's pandas steps with another's native ones (measured on 2 cores:
10 partitions of 1M transactions in 13.5 s on two threads against 20.3 s one
after the other, while worker processes managed 16.8 s: each must import
churnguard and load the model, ~2-3 s, and ``spawn`` would re-run a user's
unguarded script). The model is shared read-only; every partition opens its
own DuckDB connection.

A log scanned once instead of split is cut into blocks of whole customers
(:func:`customer_blocks`), scored by :func:`score_block` on the same threads.

Results do not depend on the number of workers: each partition is scored by the
same code on the same rows, and LightGBM's predictions do not depend on its
thread count. The scored customers go to Parquet files in the run's work folder;
only small summaries (:class:`PartitionOutcome`) come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnguard._duckdb import connect as _connect
from churnguard._duckdb import fetch_arrow, quote_literal
from churnguard._resources import cpu_budget
from churnguard.data import ColumnMap, ScannedTransactions, scan_transactions
from churnguard.execution.core import ScoredPart, score_part

__all__ = [
    "PartitionOutcome",
    "PartitionRunner",
    "PartitionStats",
    "customer_blocks",
    "default_workers",
    "score_block",
    "score_partition",
]

#: Most partitions scored at once by default (each holds a partition in memory).
MAX_DEFAULT_WORKERS = 4


@dataclass
class PartitionStats:
    """What one partition did; passed to the ``progress`` callback."""

    index: int
    total: int
    rows: int
    customers: int
    quarantined: int
    seconds: float


@dataclass
class PartitionOutcome:
    """A scored partition: its statistics, last clean date and the reasons note."""

    stats: PartitionStats
    last_date: Any
    note: str


def default_workers() -> int:
    """Partitions scored at once when not asked: the usable cores, at most 4."""
    return cpu_budget(MAX_DEFAULT_WORKERS)


def _round_trip_free(table: pa.Table) -> bool:
    """Whether pandas would hand the scan exactly these Arrow columns back.

    The partitions were cleaned from a pandas frame of the rows; the scan now reads
    the Arrow rows directly, which is only the same when the pandas round trip is the
    identity: text, zone-less timestamps, floats without NaN (pandas turns NaN into
    NULL) and integers without NULLs (pandas turns those into floats). Other types
    (dates, decimals, zoned timestamps...) still take the pandas route, so that the
    quarantine's raw text cannot change.
    """
    for column, field in zip(table.columns, table.schema, strict=True):
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            continue
        if pa.types.is_timestamp(kind) and kind.tz is None:
            continue
        if pa.types.is_integer(kind) and column.null_count == 0:
            continue
        if kind in (pa.float32(), pa.float64()) and not pc.any(pc.is_nan(column)).as_py():
            continue
        return False
    return True


def _read_partition(
    folder: Path, canon: ColumnMap, name: str
) -> ScannedTransactions | pd.DataFrame:
    """The partition's rows as the scoring core takes them.

    Scanned straight from Arrow when that reads the same values as a pandas frame
    would (:func:`_round_trip_free`): less time and memory than a frame that the
    scan turns back into Arrow. The scan numbers quarantined rows by position; they
    are given their row number in the source, as the frame's index did.
    """
    con = _connect()
    try:
        rows = fetch_arrow(
            con,
            f"SELECT * FROM read_parquet({quote_literal(folder / '*.parquet')}, "
            # Cleaning sorts by customer and date; when DuckDB (on every core) has
            # done it, cleaning sees the order and skips its own sort. Ties keep this
            # order (source_row last) on both routes.
            "hive_partitioning = false) ORDER BY customer_id, date, source_row",
        )
    finally:
        con.close()
    source_row = rows.column("source_row").to_numpy()
    rows = rows.drop_columns(["source_row"])
    if not _round_trip_free(rows):
        # What fetch_frame gives: Arrow-backed text, which the scan reads without a copy.
        arrow_text = pd.StringDtype("pyarrow")
        text = {pa.string(): arrow_text, pa.large_string(): arrow_text}
        raw = rows.to_pandas(types_mapper=text.get)
        raw.index = pd.Index(source_row, name=None)
        return raw
    scanned = scan_transactions(rows, canon, name=name)
    quarantine = scanned.quarantine
    if len(quarantine):
        quarantine["source_row"] = source_row[quarantine["source_row"].to_numpy()]
    return scanned


def score_partition(
    model: Any,
    folder: Path,
    work: Path,
    index: int,
    total: int,
    canon: ColumnMap,
    as_of: Any,
    num_threads: int | None = None,
) -> PartitionOutcome:
    """Clean and score the rows of ``folder`` (one partition); write ``work/scored_<i>``.

    Unusable rows go to ``work/quarantine_<i>.parquet`` with their source row.
    ``num_threads`` is passed to the models' LightGBM predictions.
    """
    start = time.perf_counter()
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    n_rows = n_customers = n_bad = 0
    last_date, note = None, ""
    if files:
        name = f"partition {index + 1}/{total}"
        # The rows are handed over, not kept: scoring frees them once the features are built.
        part = score_part(
            model,
            _read_partition(folder, canon, name),
            as_of=as_of,
            columns=canon,
            reasons_limit=0,
            source=name,
            require_customers=False,
            num_threads=num_threads,
        )
        n_rows, n_bad = part.rows, len(part.quarantine)
        n_customers, note = _write_part(part, work, index)
        last_date = part.last_date
    stats = PartitionStats(index, total, n_rows, n_customers, n_bad, time.perf_counter() - start)
    return PartitionOutcome(stats, last_date, note)


def _write_part(part: ScoredPart, work: Path, index: int) -> tuple[int, str]:
    """Write a scored part's rejects and customers to ``work``; its customers and note."""
    if len(part.quarantine):
        part.quarantine.to_parquet(work / f"quarantine_{index:05d}.parquet", index=False)
    scored = part.scored
    if scored is None:
        return 0, ""
    # reasons_limit=0: every row holds the same note; keep it once, not per row.
    note = str(scored["reasons"].iloc[0]) if len(scored) else ""
    columns = [c for c in scored.columns if c != "reasons"]
    table = pa.Table.from_pandas(scored, columns=columns, preserve_index=False)
    # A work file, read back a few times and deleted: plain pages, no dictionaries
    # or statistics (at 1M customers 0.5 CPU-s to write instead of 2.8 s with the
    # defaults; the values are the same).
    pq.write_table(
        table,
        work / f"scored_{index:05d}.parquet",
        use_dictionary=False,
        compression="none",
        write_statistics=False,
    )
    return len(scored), note


def score_block(
    model: Any,
    block: ScannedTransactions,
    work: Path,
    index: int,
    total: int,
    as_of: Any,
    num_threads: int | None = None,
) -> PartitionOutcome:
    """Score whole customers' cleaned rows (a slice of one scan); write ``work/scored_<i>``.

    The partition of a log scanned once (see
    :func:`churnguard.execution.partitioned.score_parquet_partitioned`): cleaning and
    the quarantine were done by the scan, so only the scoring is left.
    """
    start = time.perf_counter()
    part = score_part(
        model,
        block,
        as_of=as_of,
        reasons_limit=0,
        source=f"block {index + 1}/{total}",
        require_customers=False,
        num_threads=num_threads,
    )
    n_customers, note = _write_part(part, work, index)
    seconds = time.perf_counter() - start
    stats = PartitionStats(index, total, part.rows, n_customers, 0, seconds)
    return PartitionOutcome(stats, part.last_date, note)


def customer_blocks(scanned: ScannedTransactions, n: int) -> list[ScannedTransactions]:
    """``scanned`` cut into ``n`` (or fewer) blocks of whole customers, in order."""
    table = scanned.transactions
    ids = table.column("customer_id")
    rows = table.num_rows
    cuts = [0]
    for k in range(1, n):
        at = max(k * rows // n, cuts[-1])
        # Rows are sorted by customer: move the cut to the customer's first row after it.
        while 0 < at < rows and ids[at] == ids[at - 1]:
            at += 1
        if cuts[-1] < at < rows:
            cuts.append(at)
    cuts.append(rows)
    empty = scanned.quarantine.iloc[:0]
    return [
        replace(scanned, transactions=table.slice(a, b - a), quarantine=empty, quarantined={})
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def explain_partition(
    model: Any,
    scored: Path,
    top_ids: Path | None,
    out: Path,
    currency: str = "",
    as_of: Any = None,
) -> bool:
    """Reasons of the customers of ``scored`` listed in ``top_ids`` (all when None).

    Writes ``customer_id`` and ``reasons`` to ``out``; False when none was selected.
    ``as_of``: the scoring date (see ``ChurnGuardModel.reasons``).
    """
    where = "TRUE"
    if top_ids is not None:
        where = f"customer_id IN (SELECT customer_id FROM read_parquet({quote_literal(top_ids)}))"
    con = _connect()
    try:
        frame = con.sql(f"SELECT * FROM read_parquet({quote_literal(scored)}) WHERE {where}").df()
    finally:
        con.close()
    if frame.empty:
        return False
    # One LightGBM thread: this runs alongside the whole-base stage (see PartitionRunner).
    reasons = model.reasons(frame, num_threads=1, currency=currency, as_of=as_of)
    frame["reasons"] = reasons.to_numpy()
    frame[["customer_id", "reasons"]].to_parquet(out, index=False)
    return True


class PartitionRunner:
    """Run partition tasks on ``workers`` threads (see the module docstring).

    Use as a context manager: the threads are shut down (pending tasks
    cancelled) on exit, also on errors.

    Parameters
    ----------
    model : ChurnGuardModel
        The fitted model, shared by the threads (read only).
    workers : int
        Partitions scored at once.
    """

    def __init__(self, model: Any, workers: int) -> None:
        self.model = model
        self.workers = workers
        # The cores shared out between the partitions scored at once: LightGBM's
        # default (every core for every call) puts workers x cores OpenMP threads on
        # the cores, which spin while they wait for each other.
        self.threads = max(1, cpu_budget() // max(1, int(workers)))

    def __enter__(self) -> PartitionRunner:
        self.pool_ = ThreadPoolExecutor(
            max_workers=max(1, int(self.workers)), thread_name_prefix="churnguard-partition"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool_.shutdown(wait=True, cancel_futures=True)

    def score(self, tasks: list[tuple[Any, ...]]) -> Iterator[PartitionOutcome]:
        """Score partitions (``score_partition`` arguments ``folder`` to ``as_of``) as they end."""
        futures: list[Future[PartitionOutcome]] = [
            self.pool_.submit(partial(score_partition, num_threads=self.threads), self.model, *task)
            for task in tasks
        ]
        for future in as_completed(futures):
            yield future.result()

    def score_blocks(self, tasks: list[tuple[Any, ...]]) -> Iterator[PartitionOutcome]:
        """Score blocks (``score_block`` arguments ``block`` to ``as_of``) as they end."""
        futures: list[Future[PartitionOutcome]] = [
            self.pool_.submit(partial(score_block, num_threads=self.threads), self.model, *task)
            for task in tasks
        ]
        for future in as_completed(futures):
            yield future.result()

    def explain(self, tasks: list[tuple[Any, ...]]) -> Callable[[], list[bool]]:
        """Start explaining partitions in the background; returns a function that waits.

        The caller goes on meanwhile (the whole-base stage, mostly pandas, overlaps
        well with LightGBM's contributions, which release the GIL).
        """
        futures = [self.pool_.submit(explain_partition, self.model, *task) for task in tasks]
        return lambda: [future.result() for future in futures]
