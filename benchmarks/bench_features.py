"""Benchmark the feature build against lifetimes and a bare DuckDB RFM aggregate.

One run generates (once, cached) a seeded synthetic log as Parquet, then times each
stage in its own subprocess so that the peak RSS of every stage is measured on its
own, with ``/usr/bin/time -v`` (Debian package ``time``) or, when that is missing,
with ``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper process:

* ``duckdb_rfm``: a bare DuckDB group-by computing RFM only (frequency = distinct
  days - 1, recency, T, monetary) from the Parquet file, the floor to compare with;
* ``churnguard_parquet``: ``FeatureBuilder().fit(src).transform(src, cutoff)`` with
  ``src`` the Parquet path;
* ``churnguard_pandas``: the same with ``src`` a pandas frame read from that file
  (the read itself is reported apart, as ``load s``; the peak RSS includes the frame);
* ``lifetimes``: ``lifetimes.utils.summary_data_from_transaction_data`` on the frame.
  If one run on a customer-sampled subset of about 1M transactions shows that the full
  log would take longer than ``--lifetimes-budget`` seconds, lifetimes runs on that
  subset only and its time is extrapolated linearly (marked ``extrapolated``).

The ids are zero-padded numbers (``0004217``); ``--ids uuid`` replaces each with a
random-looking UUID (``md5`` of the id), which the builder cannot pack into integer
sort keys and sorts as text: the slow path, measured apart.

Wall and CPU seconds cover the work only (imports and the pandas read excluded).
With ``--repeat N`` the stages run in N interleaved rounds and the fastest run of each
is reported, so that a burst of load on a shared machine does not hit one stage alone;
the 1-minute load average at the start of each run is printed with it.

Usage::

    python benchmarks/bench_features.py                 # 1M customers, 10M transactions
    python benchmarks/bench_features.py --quick         # 100k customers, 1M transactions
    python benchmarks/bench_features.py --repeat 3 --json /tmp/bench.json
    python benchmarks/bench_features.py --repeat 3 --ids uuid --stages duckdb_rfm,churnguard_parquet
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StageResult", "measure_stage", "run_benchmark", "run_stage"]

TIME_BIN = "/usr/bin/time"
STAGES = ("duckdb_rfm", "churnguard_parquet", "churnguard_pandas", "lifetimes")
#: Transactions in the subset lifetimes runs on before deciding whether the full log fits.
LIFETIMES_SUBSET = 1_000_000
_RESULT_TAG = "BENCH_RESULT "
# Runs a stage as its only child, then reports that child's peak RSS (KiB on Linux).
_RUSAGE_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print('RUSAGE_MAXRSS_KB', peak, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


@dataclass
class StageResult:
    """What one stage measured.

    Attributes
    ----------
    stage : str
        Stage name (one of :data:`STAGES`).
    rows_in, rows_out : int
        Transactions read and rows (customers) produced.
    wall_s : float
        Wall seconds of the timed work (the pandas read is excluded, see ``load_s``).
    cpu_s : float
        User + system CPU seconds of the timed work, all threads.
    peak_rss_mb : float
        Peak resident set size of the whole stage process, in MiB.
    load_s : float
        Seconds spent reading the Parquet file into pandas (0 when not applicable).
    note : str
        ``extrapolated`` and how, or empty.
    load : float
        1-minute load average when the stage started (the machine may be shared).
    runs : list of float
        Wall seconds of every run (the best is reported).
    """

    stage: str
    rows_in: int
    rows_out: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float = math.nan
    load_s: float = 0.0
    note: str = ""
    load: float = math.nan
    runs: list[float] = field(default_factory=list)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parquet_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def run_stage(stage: str, parquet: str, cutoff: str) -> dict[str, Any]:
    """Run one stage in this process and return its measurements (no peak RSS).

    Parameters
    ----------
    stage : str
        One of :data:`STAGES`.
    parquet : str
        Path of the transaction log.
    cutoff : str
        ISO date of the last day counted as the past.

    Returns
    -------
    dict
        ``rows_in``, ``rows_out``, ``wall_s``, ``cpu_s`` and ``load_s``.
    """
    import pandas as pd

    load_s = 0.0
    frame: pd.DataFrame | None = None
    if stage in ("churnguard_pandas", "lifetimes"):
        t0 = time.perf_counter()
        frame = pd.read_parquet(parquet)
        load_s = time.perf_counter() - t0
    rows_in = len(frame) if frame is not None else _parquet_rows(parquet)
    # Imports stay outside the timed section: they are paid once per process.
    import duckdb  # noqa: F401
    from lifetimes.utils import summary_data_from_transaction_data

    from churnguard.features import FeatureBuilder

    wall0, cpu0 = time.perf_counter(), _cpu_seconds()
    if stage == "duckdb_rfm":
        out = _bare_rfm(parquet, cutoff)
    elif stage == "churnguard_parquet":
        out = FeatureBuilder().fit(parquet).transform(parquet, cutoff)
    elif stage == "churnguard_pandas":
        out = FeatureBuilder().fit(frame).transform(frame, cutoff)
    elif stage == "lifetimes":
        out = summary_data_from_transaction_data(
            frame,
            "customer_id",
            "date",
            monetary_value_col="amount",
            observation_period_end=cutoff,
            freq="D",
        )
    else:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}.")
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    return {
        "rows_in": rows_in,
        "rows_out": len(out),
        "wall_s": wall,
        "cpu_s": cpu,
        "load_s": load_s,
    }


def _bare_rfm(parquet: str, cutoff: str) -> Any:
    """RFM only, in one DuckDB group-by: the floor any feature build is compared with."""
    import duckdb

    day = 'CAST("date" AS DATE)'
    query = f"""
    SELECT customer_id,
        COUNT(DISTINCT {day}) - 1 AS frequency,
        MAX({day}) - MIN({day}) AS recency,
        DATE '{cutoff}' - MIN({day}) AS T,
        SUM(amount) / COUNT(DISTINCT {day}) AS monetary_value
    FROM read_parquet('{parquet}')
    WHERE {day} <= DATE '{cutoff}'
    GROUP BY customer_id
    """
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        return con.execute(query).df()
    finally:
        con.close()


def _parse_peak_kb(stderr: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", stderr)
    if match is None:
        match = re.search(r"RUSAGE_MAXRSS_KB (\d+)", stderr)
    return float(match.group(1)) if match else math.nan


def measure_stage(stage: str, parquet: str, cutoff: str) -> StageResult:
    """Run ``stage`` in a fresh subprocess and measure its peak RSS.

    Uses ``/usr/bin/time -v`` when present, otherwise a wrapper process that reads
    ``getrusage(RUSAGE_CHILDREN)`` after its only child (the stage) exits.

    Raises
    ------
    RuntimeError
        If the stage process fails; the message carries its standard error.
    """
    inner = [sys.executable, str(Path(__file__).resolve()), "--stage", stage]
    inner += ["--parquet", parquet, "--cutoff", cutoff]
    if os.path.exists(TIME_BIN):
        cmd = [TIME_BIN, "-v", *inner]
    else:
        cmd = [sys.executable, "-c", _RUSAGE_WRAPPER, *inner]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"stage {stage!r} failed with exit code {proc.returncode}; expected a "
            f"{_RESULT_TAG.strip()} line. Its stderr ends with:\n{proc.stderr[-3000:]}"
        )
    data = json.loads(lines[-1][len(_RESULT_TAG) :])
    peak_mb = _parse_peak_kb(proc.stderr) / 1024.0
    return StageResult(stage=stage, peak_rss_mb=peak_mb, load=load, **data)


def _best(runs: list[StageResult]) -> StageResult:
    """The fastest run, with every run's wall time and the highest peak RSS of all."""
    best = min(runs, key=lambda r: r.wall_s)
    best.runs = [round(r.wall_s, 2) for r in runs]
    best.peak_rss_mb = max(r.peak_rss_mb for r in runs)
    return best


def _with_uuid_ids(parquet: Path) -> Path:
    """The same log with each id replaced by a UUID made from its md5 (cached)."""
    import duckdb

    out = parquet.with_name(f"{parquet.stem}_uuid.parquet")
    if not out.exists():
        tmp = out.with_suffix(".tmp.parquet")
        con = duckdb.connect()
        try:
            uuid = "CAST(CAST(md5(customer_id) AS UUID) AS VARCHAR)"
            con.execute(
                f"COPY (SELECT {uuid} AS customer_id, * EXCLUDE (customer_id) "
                f"FROM read_parquet('{parquet}')) TO '{tmp}' (FORMAT parquet)"
            )
        finally:
            con.close()
        tmp.replace(out)
    return out


def _subset(parquet: Path, n_rows: int, target: int) -> tuple[Path, int]:
    """Customer-sampled subset of about ``target`` rows (whole histories, cached)."""
    import duckdb

    k = max(math.ceil(n_rows / target), 1)
    out = parquet.with_name(f"{parquet.stem}_subset{k}.parquet")
    if not out.exists():
        tmp = out.with_suffix(".tmp.parquet")
        con = duckdb.connect()
        try:
            con.execute(
                f"COPY (SELECT * FROM read_parquet('{parquet}') WHERE hash(customer_id) % {k} = 0) "
                f"TO '{tmp}' (FORMAT parquet)"
            )
        finally:
            con.close()
        tmp.replace(out)
    return out, _parquet_rows(str(out))


def _lifetimes_plan(parquet: Path, n_rows: int, cutoff: str, budget: float) -> tuple[Path, float]:
    """Which log lifetimes runs on, and the factor its time is scaled by (1: the full log).

    Decided once, from one run on a customer-sampled subset of about
    :data:`LIFETIMES_SUBSET` rows: the full log is used when the linear estimate fits
    ``budget`` seconds.
    """
    if n_rows <= LIFETIMES_SUBSET * 1.5:
        return parquet, 1.0
    sub_path, sub_rows = _subset(parquet, n_rows, LIFETIMES_SUBSET)
    probe = measure_stage("lifetimes", str(sub_path), cutoff)
    factor = n_rows / sub_rows
    print(f"  lifetimes probe: {probe.wall_s:.1f} s on {sub_rows:,} tx", flush=True)
    return (parquet, 1.0) if probe.wall_s * factor <= budget else (sub_path, factor)


def _extrapolate(res: StageResult, factor: float, n_rows: int) -> StageResult:
    res.note = (
        f"extrapolated x{factor:.2f} from {res.rows_in:,} tx ({res.wall_s:.1f} s); "
        "peak RSS is the subset's"
    )
    res.wall_s, res.cpu_s, res.rows_in = res.wall_s * factor, res.cpu_s * factor, n_rows
    res.runs = [round(w * factor, 2) for w in res.runs]
    return res


def _last_day(parquet: Path) -> str:
    import duckdb

    con = duckdb.connect()
    try:
        row = con.execute(
            f"SELECT MAX(CAST(\"date\" AS DATE)) FROM read_parquet('{parquet}')"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def _times(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.1f}x"


def _table(results: list[StageResult]) -> str:
    by = {r.stage: r for r in results}
    bare = by["duckdb_rfm"].wall_s
    life = by["lifetimes"].wall_s if "lifetimes" in by else math.nan
    head = (
        f"{'stage':<20} {'rows in':>11} {'customers':>10} {'wall s':>8} {'cpu s':>8} "
        f"{'load s':>7} {'peak MB':>8} {'x bare':>7} {'vs lifetimes':>13} {'loadavg':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        star = "*" if r.note else ""
        lines.append(
            f"{r.stage:<20} {r.rows_in:>11,} {r.rows_out:>10,} {r.wall_s:>7.2f}{star:1} "
            f"{r.cpu_s:>8.2f} {r.load_s:>7.2f} {r.peak_rss_mb:>8.0f} {r.wall_s / bare:>6.2f}x "
            f"{_times(life / r.wall_s):>13} {r.load:>8.1f}"
        )
    for r in results:
        if r.note:
            lines.append(f"* {r.stage}: {r.note}")
    return "\n".join(lines)


def _verdicts(results: list[StageResult]) -> list[str]:
    by = {r.stage: r for r in results}
    bare, life = by["duckdb_rfm"].wall_s, by["lifetimes"].wall_s
    out = []
    for name in ("churnguard_parquet", "churnguard_pandas"):
        r = by[name]
        checks = [
            (r.wall_s <= 2.0 * bare, f"{r.wall_s / bare:.2f}x bare (target <= 2x)"),
            (
                life / r.wall_s >= 8.0,
                f"{life / r.wall_s:.1f}x faster than lifetimes (target >= 8x)",
            ),
            (r.peak_rss_mb < 3072, f"{r.peak_rss_mb:.0f} MB peak (target < 3072 MB)"),
        ]
        marks = "; ".join(("ok " if ok else "MISS ") + text for ok, text in checks)
        out.append(f"{name}: {marks}")
    return out


def run_benchmark(
    customers: int,
    transactions: int,
    data_dir: Path,
    *,
    seed: int = 0,
    cutoff: str | None = None,
    repeat: int = 1,
    lifetimes_budget: float = 600.0,
    stages: tuple[str, ...] = STAGES,
    ids: str = "padded",
) -> list[StageResult]:
    """Generate (or reuse) the log, then time every stage in its own subprocess.

    Returns
    -------
    list of StageResult
        In the order of ``stages``.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import write_transactions

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"tx_{customers}c_{transactions}t_s{seed}.parquet"
    t0 = time.perf_counter()
    existed = path.exists()
    write_transactions(path, customers, transactions, seed)
    if ids == "uuid":
        path = _with_uuid_ids(path)
    n_rows = _parquet_rows(str(path))
    verb = "reused" if existed else f"generated in {time.perf_counter() - t0:.1f} s"
    print(f"log: {path} ({n_rows:,} transactions, {customers:,} customers; {verb})", flush=True)
    cut = cutoff or _last_day(path)
    rss_tool = TIME_BIN + " -v" if os.path.exists(TIME_BIN) else "getrusage(RUSAGE_CHILDREN)"
    if not os.path.exists(TIME_BIN):
        print(
            "note: /usr/bin/time missing (apt-get install time): using getrusage(RUSAGE_CHILDREN)"
        )
    print(f"cutoff {cut}; peak RSS via {rss_tool}; cores {os.cpu_count()}", flush=True)
    life_path, factor = path, 1.0
    if "lifetimes" in stages:
        life_path, factor = _lifetimes_plan(path, n_rows, cut, lifetimes_budget)
    # Rounds go through every stage in turn, so that on a shared machine a burst of
    # load hits all stages alike rather than one stage's every run.
    runs: dict[str, list[StageResult]] = {stage: [] for stage in stages}
    for round_no in range(max(repeat, 1)):
        for stage in stages:
            src = life_path if stage == "lifetimes" else path
            res = measure_stage(stage, str(src), cut)
            runs[stage].append(res)
            print(
                f"  round {round_no + 1} {stage}: {res.wall_s:.2f} s wall, {res.cpu_s:.2f} s cpu, "
                f"{res.peak_rss_mb:.0f} MB, load {res.load:.1f}",
                flush=True,
            )
    results = [_best(runs[stage]) for stage in stages]
    if factor != 1.0:
        results = [
            _extrapolate(r, factor, n_rows) if r.stage == "lifetimes" else r for r in results
        ]
    return results


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="100k customers, 1M transactions")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/churnguard-bench"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cutoff", default=None, help="ISO date; default: last day in the log")
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the fastest is kept")
    parser.add_argument(
        "--lifetimes-budget", type=float, default=600.0, help="seconds (see docstring)"
    )
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated subset of stages"
    )
    parser.add_argument(
        "--ids", choices=("padded", "uuid"), default="padded", help="customer id format"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--parquet", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.stage:  # child process: run one stage and report on stdout
        data = run_stage(args.stage, args.parquet, args.cutoff)
        print(_RESULT_TAG + json.dumps(data), flush=True)
        return
    if args.quick:
        args.customers, args.transactions = 100_000, 1_000_000
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown or "duckdb_rfm" not in stages:
        parser.error(f"--stages must include duckdb_rfm and only name {STAGES}; got {stages}.")
    results = run_benchmark(
        args.customers,
        args.transactions,
        args.data_dir,
        seed=args.seed,
        cutoff=args.cutoff,
        repeat=args.repeat,
        lifetimes_budget=args.lifetimes_budget,
        stages=stages,
        ids=args.ids,
    )
    print()
    print(_table(results))
    if {"lifetimes", "churnguard_parquet", "churnguard_pandas"} <= set(stages):
        print()
        print("\n".join(_verdicts(results)))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
