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

Results do not depend on the number of workers: each partition is scored by the
same code on the same rows, and LightGBM's predictions do not depend on its
thread count. The scored customers go to Parquet files in the run's work folder;
only small summaries (:class:`PartitionOutcome`) come back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard._duckdb import connect as _connect
from churnguard._duckdb import fetch_frame, quote_literal
from churnguard.data import ColumnMap
from churnguard.execution.core import score_part

__all__ = [
    "PartitionOutcome",
    "PartitionRunner",
    "PartitionStats",
    "default_workers",
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
    """Partitions scored at once when not asked: the CPU count, at most 4."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def score_partition(
    model: Any,
    folder: Path,
    work: Path,
    index: int,
    total: int,
    canon: ColumnMap,
    as_of: Any,
) -> PartitionOutcome:
    """Clean and score the rows of ``folder`` (one partition); write ``work/scored_<i>``.

    Unusable rows go to ``work/quarantine_<i>.parquet`` with their source row.
    """
    start = time.perf_counter()
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    n_rows = n_customers = n_bad = 0
    last_date, note = None, ""
    if files:
        con = _connect()
        try:
            raw = fetch_frame(
                con,
                f"SELECT * FROM read_parquet({quote_literal(folder / '*.parquet')}, "
                # Cleaning sorts by customer and date; when DuckDB (on every core) has
                # done it, cleaning sees the order and skips its own sort.
                "hive_partitioning = false) ORDER BY customer_id, date, source_row",
            )
        finally:
            con.close()
        raw.index = pd.Index(raw.pop("source_row").to_numpy(), name=None)
        n_rows = len(raw)
        part = score_part(
            model,
            raw,
            as_of=as_of,
            columns=canon,
            reasons_limit=0,
            source=f"partition {index + 1}/{total}",
            require_customers=False,
        )
        del raw
        n_bad = len(part.quarantine)
        if n_bad:
            part.quarantine.to_parquet(work / f"quarantine_{index:05d}.parquet", index=False)
        last_date = part.last_date
        scored = part.scored
        if scored is not None:
            n_customers = len(scored)
            # reasons_limit=0: every row holds the same note; keep it once, not per row.
            note = str(scored["reasons"].iloc[0]) if n_customers else ""
            scored.drop(columns="reasons").to_parquet(
                work / f"scored_{index:05d}.parquet", index=False
            )
    stats = PartitionStats(index, total, n_rows, n_customers, n_bad, time.perf_counter() - start)
    return PartitionOutcome(stats, last_date, note)


def explain_partition(
    model: Any, scored: Path, top_ids: Path | None, out: Path, currency: str = ""
) -> bool:
    """Reasons of the customers of ``scored`` listed in ``top_ids`` (all when None).

    Writes ``customer_id`` and ``reasons`` to ``out``; False when none was selected.
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
    frame["reasons"] = model.reasons(frame, num_threads=1, currency=currency).to_numpy()
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

    def __enter__(self) -> PartitionRunner:
        self.pool_ = ThreadPoolExecutor(
            max_workers=max(1, int(self.workers)), thread_name_prefix="churnguard-partition"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool_.shutdown(wait=True, cancel_futures=True)

    def score(self, tasks: list[tuple[Any, ...]]) -> Iterator[PartitionOutcome]:
        """Score partitions (``score_partition`` arguments after the model), as they finish."""
        futures: list[Future[PartitionOutcome]] = [
            self.pool_.submit(score_partition, self.model, *task) for task in tasks
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
