"""Bounded-memory scoring of a large Parquet transaction log on one machine.

:func:`score_parquet_partitioned` produces the same retention list as the in-memory
executor (:func:`churnguard.execution.local.score_in_memory`) without ever holding the
whole log, or every scored column of every customer, in memory:

1. **Split.** One DuckDB pass reads only the mapped columns (customer id cast to
   text, as the in-memory reader does) plus each row's position in the file, and
   writes them to ``partitions`` Parquet files by ``hash(customer_id) % partitions``:
   every customer's transactions land in exactly one partition.
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
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from churnguard._dates import to_date
from churnguard._duckdb import connect, fetch_frame
from churnguard._duckdb import quote_identifier as _q
from churnguard._duckdb import quote_literal as _s
from churnguard.data import DEFAULT_DATE_FLOOR, DEFAULT_MAX_AMOUNT, ColumnMap, resolve_columns
from churnguard.data.io import (
    atomic_path,
    escape_formulas_sql,
    read_columns,
    table_format,
    temporary_folder,
)
from churnguard.decision.retention import (
    CONTRACT_COLUMNS,
    DECIMAL_COLUMNS,
    DECISION_INPUTS,
    MONEY_COLUMNS,
    PROBABILITY_COLUMNS,
    SUPPORTING_COLUMNS,
    ParquetSource,
    decide,
)
from churnguard.exceptions import InputDataError, ParameterError
from churnguard.execution._partition import PartitionRunner, PartitionStats, default_workers
from churnguard.execution.local import ScoreResult, run_summary
from churnguard.execution.outputs import quarantine_path
from churnguard.execution.request import ScoringRequest
from churnguard.model.estimator import ChurnGuardModel
from churnguard.report import report_from_list

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
    "score_parquet_partitioned",
]

log = logging.getLogger(__name__)

#: Peak bytes per transaction row while one partition is cleaned and scored (measured).
BYTES_PER_ROW = 1_000
#: Memory budget used to choose the partition count when none is given.
DEFAULT_MAX_MEMORY_GB = 2.0
#: Logs from this many rows on are scored several partitions at a time by default.
PARALLEL_FROM_ROWS = 1_000_000
#: Peak bytes per transaction row of an in-memory scoring run (measured: ~3.5 GB for the
#: 10M-row log of benchmarks/synthetic.py).
IN_MEMORY_BYTES_PER_ROW = 350
#: An in-memory run may use at most this much (GB), and at most this share of the memory
#: available now; a larger Parquet log is scored partitioned without being asked.
IN_MEMORY_LIMIT_GB = 1.0
IN_MEMORY_SHARE = 0.25

# Columns of the scored frame that the decision steps need or the list copies;
# everything else (features, reasons) stays on disk.
_SLIM = DECISION_INPUTS
_OPTIONAL_SLIM = ["margin_total"]
# Columns of the list (build_retention_list's extras) copied from the slim frame.
_LIST_FROM_SLIM = {"historical_revenue", "expected_spend", "frequency", "days_since_last"}
# Python's str.strip() whitespace (ASCII part): ids are stripped before they are hashed.
_WS = " \t\n\r\x0b\x0c"
_TEMPORAL = ("DATE", "TIMESTAMP")
_DATE_FLOOR = DEFAULT_DATE_FLOOR
_MAX_AMOUNT = float(DEFAULT_MAX_AMOUNT)


def choose_partitions(rows: int, max_memory_gb: float | None = None, workers: int = 1) -> int:
    """Number of partitions that keeps ``workers`` partitions within half of ``max_memory_gb``.

    Parameters
    ----------
    rows : int
        Transaction rows in the log.
    max_memory_gb : float, optional
        Memory budget of the whole run; default :data:`DEFAULT_MAX_MEMORY_GB`.
    workers : int
        Partitions in memory at once (one per worker process); at least that many
        partitions are made so that every worker has one.
    """
    budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else float(max_memory_gb)
    if not budget > 0:
        raise ParameterError(
            f"max_memory_gb must be a positive number of GB; got {max_memory_gb!r}."
        )
    per_partition = max(budget * 1e9 / 2 / max(int(workers), 1) / BYTES_PER_ROW, 10_000)
    return max(1, int(workers), math.ceil(int(rows) / per_partition))


def available_memory_gb() -> float | None:
    """Memory the system could give this process now (GB), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def needs_partitions(rows: int, available_gb: float | None = None) -> bool:
    """Whether a log of ``rows`` rows is too large to score comfortably in memory.

    An in-memory run peaks at about :data:`IN_MEMORY_BYTES_PER_ROW` bytes per row; it
    is kept when that is within :data:`IN_MEMORY_LIMIT_GB` and within
    :data:`IN_MEMORY_SHARE` of ``available_gb`` (default: :func:`available_memory_gb`).
    """
    need = int(rows) * IN_MEMORY_BYTES_PER_ROW / 1e9
    if available_gb is None:
        available_gb = available_memory_gb()
    limit = IN_MEMORY_LIMIT_GB
    if available_gb is not None:
        limit = min(limit, available_gb * IN_MEMORY_SHARE)
    return need > limit


def choose_workers(rows: int, workers: int | None = None) -> int:
    """Partitions scored at once for a log of ``rows`` rows.

    ``workers`` when given; otherwise :func:`default_workers` from
    :data:`PARALLEL_FROM_ROWS` rows on and 1 below (small logs gain nothing
    from being cut into more partitions).
    """
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError(f"workers must be a whole number >= 1; got {workers!r}.")
        return workers
    return default_workers() if int(rows) >= PARALLEL_FROM_ROWS else 1


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


def _scalar(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    rows = con.sql(query).fetchall()
    return rows[0][0] if rows else None


def _limit_duckdb(
    con: duckdb.DuckDBPyConnection, max_memory_gb: float | None, *, share: float
) -> None:
    budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else float(max_memory_gb)
    con.sql(f"SET memory_limit = '{max(budget * share, 0.25):.2f}GB'")


def _open_duckdb(workdir: Path, max_memory_gb: float | None) -> duckdb.DuckDBPyConnection:
    con = connect()
    _limit_duckdb(con, max_memory_gb, share=0.5)
    con.sql(f"SET temp_directory = {_s(workdir / 'spill')}")
    return con


def _split(
    con: duckdb.DuckDBPyConnection, path: Path, resolved: dict[str, str], n: int, dest: Path
) -> None:
    """Write the mapped columns to ``dest/part=<i>/`` by a stable hash of the stripped id."""
    cid = f"CAST({_q(resolved['customer_id'])} AS VARCHAR)"
    select = [f"{cid} AS customer_id"]
    select += [
        f"{_q(src)} AS {_q(canon)}" for canon, src in resolved.items() if canon != "customer_id"
    ]
    select.append("file_row_number AS source_row")
    # Trimming every id costs more than the rest of the split; only ids that start or
    # end with a control/space character (ord <= 32) need it.
    x = f"COALESCE({cid}, '')"
    key = (
        f"CASE WHEN ord({x}[1]) <= 32 OR ord({x}[-1]) <= 32 THEN trim({x}, {_s(_WS)}) ELSE {x} END"
    )
    select.append(f"CAST(hash({key}) % {int(n)} AS BIGINT) AS part")
    con.sql(
        f"COPY (SELECT {', '.join(select)} FROM read_parquet({_s(path)}, file_row_number = true)) "
        f"TO {_s(dest)} (FORMAT parquet, PARTITION_BY (part))"
    )


def _default_as_of(
    con: duckdb.DuckDBPyConnection, split: Path, cmap: ColumnMap
) -> tuple[Any, bool]:
    """Last usable date of the log, and whether it was parsed from text (then only an estimate)."""
    glob = _s(split / "*" / "*.parquet")
    types = {
        r[0]: r[1]
        for r in con.sql(f"DESCRIBE SELECT date, amount FROM read_parquet({glob})").fetchall()
    }
    date_type = str(types["date"]).upper()
    ok_id = f"customer_id IS NOT NULL AND trim(customer_id, {_s(_WS)}) <> ''"
    amount = (
        "amount"
        if str(types["amount"]).upper() in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER")
        else "TRY_CAST(amount AS DOUBLE)"
    )
    # The rows the partitions keep: a known id, a finite amount within the scan's limit,
    # a date between the floor and today (churnguard.data.scan quarantines the others,
    # and a future-dated typo must not move the as-of date).
    ok_amount = (
        f"{amount} IS NOT NULL AND isfinite(CAST({amount} AS DOUBLE)) "
        f"AND abs(CAST({amount} AS DOUBLE)) <= {_MAX_AMOUNT!r}"
    )
    if date_type.startswith(_TEMPORAL):
        day, estimated = "CAST(date AS TIMESTAMP)", False
    elif cmap.date_format:
        day, estimated = f"try_strptime(CAST(date AS VARCHAR), {_s(cmap.date_format)})", True
    else:
        day, estimated = "TRY_CAST(trim(CAST(date AS VARCHAR)) AS TIMESTAMP)", True
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    ok_amount += (
        f" AND {day} >= TIMESTAMP '{_DATE_FLOOR}' AND {day} < TIMESTAMP '{tomorrow.isoformat()}'"
    )
    last = None
    if not estimated:
        # Fast path: the latest date usually has a usable row; check only those rows.
        latest = _scalar(con, f"SELECT max({day}) FROM read_parquet({glob})")
        if latest is not None:
            since = f"TIMESTAMP '{to_date(latest).isoformat()}'"
            last = _scalar(
                con,
                f"SELECT max({day}) FROM read_parquet({glob}) "
                f"WHERE {day} >= {since} AND {ok_id} AND {ok_amount}",
            )

    if last is None:
        where = f"WHERE {ok_id} AND {ok_amount}"
        last = _scalar(con, f"SELECT max({day}) FROM read_parquet({glob}) {where}")
    if last is None:
        raise InputDataError(
            "no usable transaction date found in the log; pass as_of (--as-of YYYY-MM-DD) and "
            "check --date-col / --date-format."
        )
    return to_date(last), estimated


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
) -> Callable[[], Path | None]:
    """Start the reasons of the whole base's top ``reasons_limit`` by value at risk.

    Returns a function that waits for them and gives their folder (None: no reasons).
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
    wait = runner.explain([(part, top_ids, out / part.name, currency) for part in parts])
    return lambda: out if any(wait()) else None


def _write_list(
    con: duckdb.DuckDBPyConnection,
    slim: Path,
    whole: Path,
    reasons: Path | None,
    note: str,
    out: Path,
) -> None:
    """Join the slim columns, the whole-base columns and the reasons; write by priority."""
    fmt = table_format(out, role="output")
    has = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet({_s(whole)})").fetchall()}
    source = {"historical_revenue": "total_spend"}
    select = []
    for col in CONTRACT_COLUMNS + [
        c for c in SUPPORTING_COLUMNS if c in has or c in _LIST_FROM_SLIM
    ]:
        if col == "reasons":
            expr = f"COALESCE(r.reasons, {_s(note)})" if reasons is not None else _s(note)
        elif fmt == "csv" and col in ("growth_candidate", "contact"):
            # pandas writes booleans as True/False; keep the CSV identical to the in-memory one.
            expr = f"CASE WHEN t.{col} THEN 'True' ELSE 'False' END"
        elif col in ("r_score", "f_score", "m_score"):
            expr = f"CAST(t.{col} AS BIGINT)"
        elif fmt == "csv" and col in MONEY_COLUMNS:
            expr = f"ROUND(t.{_q(source.get(col, col))}, 2)"
        elif fmt == "csv" and col in (*PROBABILITY_COLUMNS, *DECIMAL_COLUMNS):
            expr = f"ROUND(t.{_q(col)}, 4)"
        else:
            expr = f"t.{_q(source.get(col, col))}"
        select.append(f"{expr} AS {_q(col)}")
    join = ""
    if reasons is not None:
        join = f"LEFT JOIN read_parquet({_s(reasons / '*.parquet')}) r USING (customer_id)"
    # Join, then sort, in two statements: in one, DuckDB 2.0 cannot spill the join
    # under the sort and runs out of memory at ~5M customers with a 1 GB limit.
    joined = slim.with_name("joined.parquet")
    con.sql(
        f"COPY (SELECT {', '.join(select)} FROM (SELECT * FROM read_parquet({_s(slim)}) "
        f"POSITIONAL JOIN read_parquet({_s(whole)})) t {join}) TO {_s(joined)} (FORMAT parquet)"
    )
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    columns = _csv_safe_columns(con, f"read_parquet({_s(joined)})") if fmt == "csv" else "*"
    with atomic_path(out) as tmp:
        con.sql(
            f"COPY (SELECT {columns} FROM read_parquet({_s(joined)}) ORDER BY priority) "
            f"TO {_s(tmp)} ({options})"
        )


def _csv_safe_columns(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """Select list of ``relation`` with text cells made inert for spreadsheets.

    The same rule as :func:`churnguard.data.io.write_table` applies to in-memory CSVs:
    a customer id or a reason starting with ``=`` must not run when the list is opened.
    """
    described = con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    parts = []
    for name, dtype, *_ in described:
        if str(dtype).upper() == "VARCHAR":
            parts.append(f"{escape_formulas_sql(_q(name))} AS {_q(name)}")
        else:
            parts.append(_q(name))
    return ", ".join(parts)


def _write_quarantine(con: duckdb.DuckDBPyConnection, work: Path, out: Path) -> Path | None:
    path = quarantine_path(out)
    if not any(work.glob("quarantine_*.parquet")):
        path.unlink(missing_ok=True)  # a stale one from an earlier run
        return None
    rejects = f"read_parquet({_s(work / 'quarantine_*.parquet')}, union_by_name = true)"
    with atomic_path(path) as tmp:
        con.sql(
            f"COPY (SELECT {_csv_safe_columns(con, rejects)} FROM {rejects} ORDER BY source_row) "
            f"TO {_s(tmp)} (FORMAT csv, HEADER true)"
        )
    return path


def _head(con: duckdb.DuckDBPyConnection, path: Path, n: int) -> pd.DataFrame:
    if table_format(path) == "csv":
        return pd.read_csv(path, nrows=max(int(n), 1), dtype={"customer_id": str}).head(int(n))
    return fetch_frame(con, f"SELECT * FROM read_parquet({_s(path)}) LIMIT {int(n)}")


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
    con = _open_duckdb(work, max_memory_gb)
    try:
        t = time.perf_counter()
        rows = int(_scalar(con, f"SELECT count(*) FROM read_parquet({_s(src)})") or 0)
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
            split = work / "split"
            _split(con, src, resolved, n, split)
            estimated = False
            if as_of is None:
                as_of_date, estimated = _default_as_of(con, split, cmap)
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
            if not any(work.glob("scored_*.parquet")):
                raise InputDataError(
                    f"no customer has a purchase on or before {as_of_date}; choose a later --as-of."
                )
            _release_memory()
            # From here DuckDB's sorts share the process with the whole-base columns
            # and the reasons: a quarter of the budget, so the peak does not grow with
            # the base (DuckDB spills to disk instead).
            _limit_duckdb(con, max_memory_gb, share=0.25)
            _mark(stages, peaks, "score", t)

            t = time.perf_counter()
            scored_glob = _s(work / "scored_*.parquet")
            customers = int(_scalar(con, f"SELECT count(*) FROM read_parquet({scored_glob})"))
            # The top customers are explained in the background while the whole base is done.
            wait_reasons = _start_reasons(
                con, runner, work, customers, reasons_limit, request.currency
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
        qfile = _write_quarantine(con, work, target)
        _write_list(con, slim_path, whole_path, reasons, note, target)
        head = _head(con, target, top)
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
        result.report = report_from_list(target, request.report, summary, currency=request.currency)
    result.seconds = time.perf_counter() - start
    return result
