"""Bounded-memory scoring of a large Parquet transaction log on one machine.

:func:`score_parquet_partitioned` produces the same retention list as the in-memory
executor (:func:`churnguard.execution.local.score_in_memory`) without ever holding the
whole log, or every scored column of every customer, in memory:

1. **Split.** One DuckDB pass reads only the mapped columns (customer id cast to
   text, as the in-memory reader does) plus each row's position in the file, and
   writes them to ``partitions`` Parquet files by ``hash(customer_id) % partitions``:
   every customer's transactions land in exactly one partition.
   *Or scan once.* Without ``partitions``, a log whose cleaned rows fit half the
   budget (:func:`scan_fits`) and whose types read the same either way
   (:func:`~churnguard.execution._partition_sql.scans_like_partitions`) is cleaned
   by one scan (:func:`churnguard.data.scan_transactions`, its quarantine written
   once) and cut into as many blocks of whole customers: no split to write, re-read
   and re-sort (at 10M rows ~8 CPU-s less), and the same list.
2. **Score.** Partition by partition, the scoring core
   (:func:`churnguard.execution.core.score_part`) cleans the rows (unusable rows go to
   the quarantine file with their row number in the source, exactly as in memory) and
   scores them. Each partition's scored customers are written to a Parquet file in a
   temporary folder next to ``out``.
3. **Whole-base columns.** Tiers (20/60/20), RFM quintiles, the look-alike
   growth score, the budgeted contacts and priorities depend on every customer.
   DuckDB sorts the ~14 columns they need (no features, no reason text) by
   customer id into one file, and the one implementation of the decision steps
   (:func:`churnguard.decision.retention.decide`) reads it a few columns at a time:
   ~150 bytes per customer at the peak, against ~1.3 KB for a frame of every scored
   column (6.6 GB at 5M). From this step on, DuckDB may use a quarter of the budget
   and spills its sorts to disk beyond that.
4. **Reasons.** They are the expensive part (TreeSHAP), so, as in memory, only
   the ``reasons_limit`` customers with the highest value at risk across the
   whole base get them; they are read back from the partition files.
5. **Write.** DuckDB joins the columns and the reasons and writes the list
   sorted by priority (an out-of-core sort) to a temporary file renamed onto
   ``out``: a killed run leaves no partial file; a re-run writes the same bytes.

Partition count rule (when ``partitions`` is not given): a partition's peak
memory is about :data:`BYTES_PER_ROW` bytes per transaction row (raw frame,
cleaning copies, DuckDB aggregation, features), and it may use half of
``max_memory_gb`` (the other half is for DuckDB and the whole-base columns),
shared by the ``workers`` partitions in memory at once, so
``partitions = ceil(rows * BYTES_PER_ROW * workers / (max_memory_gb / 2))``, at
least ``workers``.

Parallelism: step 2 scores ``workers`` partitions at once, on threads
(:mod:`churnguard.execution._partition`), and the reasons (4) are computed in the
background while the whole-base columns (3) are. The list does not depend on
the number of workers.

Layout: this module runs the stages; the sizing rules (:func:`choose_partitions`,
:func:`choose_workers`, :func:`needs_partitions`) live in
:mod:`churnguard.execution._sizing` and the DuckDB statements of steps 1 and 5 in
:mod:`churnguard.execution._partition_sql`. The sizing names are re-exported here.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from churnguard._dates import to_date
from churnguard._duckdb import quote_identifier as _q
from churnguard._duckdb import quote_literal as _s
from churnguard.data import ColumnMap, resolve_columns, scan_transactions
from churnguard.data.io import read_columns, table_format, temporary_folder
from churnguard.decision.retention import DECISION_INPUTS, ParquetSource, decide
from churnguard.exceptions import InputDataError
from churnguard.execution._partition import PartitionRunner, PartitionStats, customer_blocks
from churnguard.execution._partition_sql import (
    default_as_of,
    limit_duckdb,
    open_duckdb,
    read_head,
    scalar,
    scans_like_partitions,
    split_log,
    write_list,
    write_quarantine_csv,
)
from churnguard.execution._sizing import (
    BYTES_PER_ROW,
    DEFAULT_MAX_MEMORY_GB,
    IN_MEMORY_BYTES_PER_ROW,
    PARALLEL_FROM_ROWS,
    available_memory_gb,
    choose_partitions,
    choose_workers,
    needs_partitions,
    scan_fits,
)
from churnguard.execution._sizing import IN_MEMORY_LIMIT_GB as IN_MEMORY_LIMIT_GB
from churnguard.execution._sizing import IN_MEMORY_SHARE as IN_MEMORY_SHARE
from churnguard.execution.local import ScoreResult, run_summary
from churnguard.execution.request import ScoringRequest
from churnguard.model.estimator import ChurnGuardModel

__all__ = [
    "IN_MEMORY_BYTES_PER_ROW",
    "available_memory_gb",
    "needs_partitions",
    "BYTES_PER_ROW",
    "DEFAULT_MAX_MEMORY_GB",
    "PartitionStats",
    "PARALLEL_FROM_ROWS",
    "choose_partitions",
    "choose_workers",
    "scan_fits",
    "score_parquet_partitioned",
]

log = logging.getLogger(__name__)

# Columns of the scored frame that the decision steps need or the list copies;
# everything else (features, reasons) stays on disk.
_SLIM = DECISION_INPUTS
_OPTIONAL_SLIM = ["margin_total"]


@contextmanager
def _reporter(
    total: int, progress: Callable[[PartitionStats], None] | None
) -> Iterator[Callable[[PartitionStats], None]]:
    """Yield a per-partition report function: callback, rich bar on a TTY, else log lines."""
    bar: Any = None
    task: Any = None
    if progress is None and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = ("scoring partitions", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar = Progress(*columns, transient=True)
        task = bar.add_task("score", total=total)
        bar.start()

    def report(stats: PartitionStats) -> None:
        line = (
            f"partition {stats.index + 1}/{stats.total}: {stats.customers:,} customers, "
            f"{stats.seconds:.1f} s"
        )
        if progress is not None:
            progress(stats)
        if bar is not None:
            bar.advance(task)
            log.debug(line)
        else:
            log.info(line)

    try:
        yield report
    finally:
        if bar is not None:
            bar.stop()


def _mark(stages: dict[str, float], peaks: dict[str, float], name: str, since: float) -> None:
    """Record a stage's seconds and the process's peak RSS so far (GB; Linux reports KB).

    The peak so far, not the stage's own: resetting the kernel's high-water mark
    (``/proc/self/clear_refs``) would also erase it from what ``time -v`` reports.
    """
    import resource

    stages[name] = time.perf_counter() - since
    scale = 1024**3 if sys.platform == "darwin" else 1024**2
    peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _release_memory() -> None:
    """Hand memory freed by the partition threads back to the OS.

    glibc keeps what a thread frees in that thread's arena, so after the partitions
    the process would carry their peak into the whole-base stage; Arrow's pool
    likewise holds freed buffers.
    """
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def _score_partitions(
    runner: PartitionRunner,
    split: Path,
    work: Path,
    n: int,
    resolved: dict[str, str],
    cmap: ColumnMap,
    as_of: Any,
    report: Callable[[PartitionStats], None],
) -> tuple[list[PartitionStats], int, Any, str]:
    canon = ColumnMap(
        date_format=cmap.date_format,
        optional={c: c for c in resolved if c not in ("customer_id", "date", "amount")},
    )
    tasks = [(split / f"part={i}", work, i, n, canon, as_of) for i in range(n)]
    stats, last_date, note = [], None, ""
    for outcome in runner.score(tasks):
        stats.append(outcome.stats)
        report(outcome.stats)
        top = outcome.last_date
        if top is not None and (last_date is None or top > last_date):
            last_date = top
        note = outcome.note or note
    stats.sort(key=lambda s: s.index)
    return stats, sum(s.quarantined for s in stats), last_date, note


def _start_reasons(
    con: duckdb.DuckDBPyConnection,
    runner: PartitionRunner,
    work: Path,
    total: int,
    reasons_limit: int | None,
    currency: str = "",
    as_of: Any = None,
) -> Callable[[], Path | None]:
    """Start the reasons of the whole base's top ``reasons_limit`` by value at risk.

    Returns a function that waits for them and gives their folder (None: no reasons).
    ``as_of``: the scoring date, for the drift correction's driver.
    """
    if reasons_limit is not None and int(reasons_limit) <= 0:
        return lambda: None
    top_ids: Path | None = None
    if reasons_limit is not None and int(reasons_limit) < total:
        # Series.nlargest(keep="first") on a frame sorted by customer_id: NaN never
        # selected, ties at the boundary go to the smaller id.
        top_ids = work / "top_ids.parquet"
        con.sql(
            f"COPY (SELECT customer_id FROM read_parquet({_s(work / 'scored_*.parquet')}) "
            f"WHERE NOT isnan(value_at_risk) ORDER BY value_at_risk DESC, customer_id "
            f"LIMIT {int(reasons_limit)}) TO {_s(top_ids)} (FORMAT parquet)"
        )
    out = work / "reasons"
    out.mkdir()
    parts = sorted(work.glob("scored_*.parquet"))
    wait = runner.explain([(part, top_ids, out / part.name, currency, as_of) for part in parts])
    return lambda: out if any(wait()) else None


def _score_split(
    con: duckdb.DuckDBPyConnection,
    runner: PartitionRunner,
    src: Path,
    resolved: dict[str, str],
    cmap: ColumnMap,
    work: Path,
    n: int,
    as_of: Any,
    progress: Callable[[PartitionStats], None] | None,
    timing: tuple[dict[str, float], dict[str, float], float],
) -> tuple[list[PartitionStats], int, Any, str]:
    """Split the log into ``n`` partitions and score them; stats, rejects, as-of date, note."""
    stages, peaks, t = timing
    split = work / "split"
    split_log(con, src, resolved, n, split)
    estimated = False
    if as_of is None:
        as_of_date, estimated = default_as_of(con, split, cmap)
    else:
        as_of_date = to_date(as_of)
    _mark(stages, peaks, "split", t)

    t = time.perf_counter()
    with _reporter(n, progress) as report:
        stats, quarantined, last, note = _score_partitions(
            runner, split, work, n, resolved, cmap, as_of_date, report
        )
    shutil.rmtree(split, ignore_errors=True)
    if estimated and last is not None and to_date(last) != as_of_date:
        raise InputDataError(
            f"the last date of the cleaned log is {to_date(last)}, but DuckDB read the "
            f"text dates as ending on {as_of_date}; pass as_of (--as-of YYYY-MM-DD) "
            "explicitly."
        )
    return stats, quarantined, as_of_date, note


def _score_scanned(
    runner: PartitionRunner,
    src: Path,
    cmap: ColumnMap,
    work: Path,
    n: int,
    as_of: Any,
    progress: Callable[[PartitionStats], None] | None,
    timing: tuple[dict[str, float], dict[str, float], float],
) -> tuple[list[PartitionStats], int, Any, str]:
    """Scan the whole log once and score it in ``n`` blocks of whole customers.

    The same rows, quarantine and as-of date as :func:`_score_split` (the caller checks
    :func:`scans_like_partitions` first), so the same list.
    """
    stages, peaks, t = timing
    scanned = scan_transactions(src, cmap)
    quarantined = scanned.rows_quarantined
    if len(scanned.quarantine):
        scanned.quarantine.to_parquet(work / "quarantine_scan.parquet", index=False)
    as_of_date = to_date(as_of) if as_of is not None else scanned.last_date
    blocks = customer_blocks(scanned, n)
    del scanned  # the blocks hold the rows now
    _mark(stages, peaks, "split", t)

    stats, note = [], ""
    tasks = [(block, work, i, len(blocks), as_of_date) for i, block in enumerate(blocks)]
    del blocks  # slices of the scan's rows, freed once every block is scored
    with _reporter(len(tasks), progress) as report:
        for outcome in runner.score_blocks(tasks):
            stats.append(outcome.stats)
            report(outcome.stats)
            note = outcome.note or note
    stats.sort(key=lambda s: s.index)
    return stats, quarantined, as_of_date, note


def score_parquet_partitioned(
    path: str | os.PathLike[str],
    model: ChurnGuardModel,
    request: ScoringRequest,
    *,
    progress: Callable[[PartitionStats], None] | None = None,
) -> ScoreResult:
    """Score a large Parquet log partition by partition and write the retention list.

    Same list as :func:`churnguard.execution.local.score_in_memory` (same rows, values,
    priority order and reasons) with memory bounded by the partition size plus a slim
    per-customer frame.

    Parameters
    ----------
    path : path
        Parquet transaction log.
    model : ChurnGuardModel
        A fitted model.
    request : ScoringRequest
        The run's options; ``request.out`` (required) is written atomically, unusable
        rows go to ``<out>.quarantine.csv``. ``request.execution`` sizes the run: the
        partition count (default from the memory budget and the log's row count, see
        the module docstring), the memory budget (DuckDB may use half of it while the
        log is split and scored, a quarter once the whole-base stage starts) and the
        workers (partitions scored at once, on threads; default from the log's size,
        see :func:`choose_workers`).
    progress : callable, optional
        Called with a :class:`PartitionStats` after each partition; without it a
        rich progress bar is shown on a terminal and log lines are written otherwise.

    Returns
    -------
    ScoreResult
        ``retention`` is None (the list is on disk); ``top`` holds its first rows.
    """
    if request.out is None:
        raise InputDataError("partitioned scoring writes its list to a file; pass --out PATH.")
    partitions = request.execution.partitions
    max_memory_gb = request.execution.max_memory_gb
    workers = request.execution.workers
    as_of, cmap, reasons_limit, top = (
        request.as_of, request.columns, request.reasons_limit, request.top
    )  # fmt: skip
    fitted = model
    out = request.out
    start = time.perf_counter()
    src, target = Path(path), Path(out)
    if table_format(src) != "parquet":
        raise InputDataError(
            f"partitioned scoring reads Parquet; '{src}' is not a .parquet file. Convert it "
            "(e.g. duckdb -c \"COPY (FROM 'log.csv') TO 'log.parquet'\") or score it in memory "
            "with churnguard.pipeline.score_transactions."
        )
    resolved = resolve_columns(read_columns(src), cmap, f"'{src}'")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = temporary_folder(target)
    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}
    con = open_duckdb(work, max_memory_gb)
    try:
        t = time.perf_counter()
        rows = int(scalar(con, f"SELECT count(*) FROM read_parquet({_s(src)})") or 0)
        if rows == 0:
            raise InputDataError(f"'{src}' has no rows; expected at least one transaction.")
        n_workers = choose_workers(rows, workers)
        n = partitions or choose_partitions(rows, max_memory_gb, n_workers)
        n_workers = min(n_workers, n)
        log.info(
            "scoring %s: %s rows in %d partition(s), %d worker(s)",
            src, f"{rows:,}", n, n_workers,
        )  # fmt: skip
        with PartitionRunner(fitted, n_workers) as runner:
            # Without a partition count asked for, a log whose cleaned rows fit is scanned
            # once (no split to write, re-read and re-sort: ~8 CPU-s less at 10M rows).
            if (
                partitions is None
                and scan_fits(rows, max_memory_gb)
                and scans_like_partitions(src, resolved)
            ):
                stats, quarantined, as_of_date, note = _score_scanned(
                    runner, src, cmap, work, n, as_of, progress, (stages, peaks, t)
                )
            else:
                stats, quarantined, as_of_date, note = _score_split(
                    con, runner, src, resolved, cmap, work, n, as_of, progress, (stages, peaks, t)
                )
            if not any(work.glob("scored_*.parquet")):
                raise InputDataError(
                    f"no customer has a purchase on or before {as_of_date}; choose a later --as-of."
                )
            _release_memory()
            # From here DuckDB's sorts share the process with the whole-base columns
            # and the reasons: a quarter of the budget, so the peak does not grow with
            # the base (DuckDB spills to disk instead).
            limit_duckdb(con, max_memory_gb, share=0.25)
            _mark(stages, peaks, "score", t)

            t = time.perf_counter()
            scored_glob = _s(work / "scored_*.parquet")
            customers = int(scalar(con, f"SELECT count(*) FROM read_parquet({scored_glob})"))
            # The top customers are explained in the background while the whole base is done.
            wait_reasons = _start_reasons(
                con, runner, work, customers, reasons_limit, request.currency, as_of_date
            )
            described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({scored_glob})").fetchall()
            cols = _SLIM + [c for c in _OPTIONAL_SLIM if c in {r[0] for r in described}]
            slim_path, whole_path = work / "slim.parquet", work / "whole.parquet"
            # Out-of-core sort: one row per customer, in customer_id order like the in-memory
            # frame.
            con.sql(
                f"COPY (SELECT {', '.join(_q(c) for c in cols)} FROM read_parquet({scored_glob}) "
                f"ORDER BY customer_id) TO {_s(slim_path)} (FORMAT parquet)"
            )
            summary = decide(
                ParquetSource(slim_path),
                write_to=whole_path,
                **request.decision_options(fitted),
            ).summary
            run_summary(summary, fitted, as_of_date, quarantined)
            summary["partitions"] = n
            _mark(stages, peaks, "whole_base", t)

            t = time.perf_counter()
            reasons = wait_reasons()
            _mark(stages, peaks, "reasons", t)

        t = time.perf_counter()
        # Quarantine first: the list appearing is the sign that the whole run succeeded.
        qfile = write_quarantine_csv(con, work, target)
        write_list(con, slim_path, whole_path, reasons, note, target)
        head = read_head(con, target, top)
        _mark(stages, peaks, "write", t)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    if qfile is not None:
        log.warning("%d unusable rows set aside in %s", quarantined, qfile)
    result = ScoreResult(
        None, head, summary, customers, target, quarantined, qfile, mode="partitioned",
        partitions=n,
        details={"stages": stages, "peak_rss_gb": peaks, "partition_stats": stats,
                 "workers": n_workers},
    )  # fmt: skip
    if request.report is not None:
        # Imported only to draw: matplotlib alone takes ~0.7 s to import.
        from churnguard.report import report_from_list

        result.report = report_from_list(target, request.report, summary, currency=request.currency)
    result.seconds = time.perf_counter() - start
    return result
