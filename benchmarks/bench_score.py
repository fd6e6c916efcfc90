"""Benchmark of batch scoring: 1M customers / 10M transactions on one machine.

Stages, each run as its own subprocess (under ``/usr/bin/time -v`` when it
exists, so peak RSS is the stage's own):

* ``train``: fit on a 100k-customer sample of the log (``--train-customers``);
* ``score-memory``: :func:`churnguard.pipeline.score_transactions` on all customers;
* ``score-partitioned``: :func:`churnguard.execution.partitioned.score_parquet_partitioned`;
* ``score-partitioned-big`` (``--big``): the same at 5M customers / 50M transactions,
  to show that peak RSS stays roughly flat;
* ``spark`` (``--spark``): :func:`churnguard.execution.spark.score_spark` on ``local[2]``.

Usage::

    python benchmarks/bench_score.py --data-dir /tmp/churnguard-bench [--big] [--spark]
    python benchmarks/bench_score.py --stages score-partitioned --max-memory-gb 2

The synthetic logs (``benchmarks/synthetic.py``, seeded) and the model are cached
in ``--data-dir``; a table of wall time, peak RSS and customers per second is
printed at the end and written to ``<data-dir>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STAGES = ("train", "score-memory", "score-partitioned", "score-partitioned-big", "spark")


def _log_path(data_dir: Path, customers: int) -> Path:
    from synthetic import write_transactions

    return write_transactions(
        data_dir / f"tx_{customers}.parquet", customers, customers * 10, seed=0
    )


def _sample(path: Path, n_customers: int, out: Path) -> Path:
    """Every transaction of about ``n_customers`` customers, chosen by a stable hash."""
    import duckdb

    if out.exists():
        return out
    con = duckdb.connect()
    total = con.execute(
        f"SELECT count(DISTINCT customer_id) FROM read_parquet('{path}')"
    ).fetchone()[0]  # type: ignore[index]
    keep = max(1, round(total / n_customers))
    tmp = out.with_suffix(".tmp.parquet")
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{path}') WHERE hash(customer_id) % {keep} = 0) "
        f"TO '{tmp}' (FORMAT parquet)"
    )
    tmp.replace(out)
    return out


def run_stage(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one stage in this process and return its figures (called in the subprocess)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("lifetimes", "mlflow", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = Path(args.data_dir)
    model_dir = data_dir / "model"
    start = time.perf_counter()
    if stage == "train":
        from churnguard.pipeline import train_model

        sample = _sample(
            _log_path(data_dir, args.customers),
            args.train_customers,
            data_dir / "train_sample.parquet",
        )
        result = train_model(str(sample), model_dir, track=False, value_model=args.value_model)
        return {
            "customers": result.model.n_customers_,
            "roc_auc": result.metrics.get("roc_auc"),
            "seconds_inner": time.perf_counter() - start,
        }
    if stage == "score-memory":
        from churnguard.pipeline import score_transactions

        mem = score_transactions(
            str(_log_path(data_dir, args.customers)),
            model_dir,
            out=data_dir / "list_memory.parquet",
        )
        return {"customers": len(mem.retention), "seconds_inner": time.perf_counter() - start}
    if stage in ("score-partitioned", "score-partitioned-big"):
        from churnguard.execution.partitioned import score_parquet_partitioned

        n = args.big_customers if stage.endswith("big") else args.customers
        path = _log_path(data_dir, n)
        t0 = time.perf_counter()
        res = score_parquet_partitioned(
            path,
            model_dir,
            data_dir / f"list_partitioned_{n}.parquet",
            partitions=args.partitions,
            max_memory_gb=args.max_memory_gb,
            workers=args.workers,
        )
        return {
            "customers": res.customers,
            "partitions": res.partitions,
            "workers": res.workers,
            "seconds_inner": time.perf_counter() - t0,
            "stages": res.stages,
            "peak_rss_by_stage": res.peak_rss_gb,
        }
    if stage == "spark":
        from pyspark.sql import SparkSession

        from churnguard.data import write_table
        from churnguard.execution.spark import retention_list_spark, score_spark
        from churnguard.pipeline import resolve_model

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        path = _log_path(data_dir, args.customers)
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("churnguard-bench")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "4g")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "16")
            .getOrCreate()
        )
        # Spark reads no nanosecond Parquet timestamps: a microsecond copy (cached) is its input.
        spark_path = data_dir / f"tx_{args.customers}_spark.parquet"
        if not spark_path.exists():
            import duckdb

            duckdb.connect().sql(
                f"COPY (SELECT customer_id, CAST(date AS TIMESTAMP) AS date, amount "
                f"FROM read_parquet('{path}')) TO '{spark_path}' (FORMAT parquet)"
            )
        as_of = args.as_of or _last_date(path)
        model = resolve_model(model_dir)
        t0 = time.perf_counter()
        scores = score_spark(spark.read.parquet(str(spark_path)), model, as_of=as_of)
        retention = retention_list_spark(scores)
        write_table(retention, data_dir / "list_spark.parquet")
        spark.stop()
        return {"customers": len(retention), "seconds_inner": time.perf_counter() - t0}
    raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}.")


def _last_date(path: Path) -> str:
    import duckdb

    return str(
        duckdb.connect()
        .execute(f"SELECT CAST(max(date) AS DATE) FROM read_parquet('{path}')")
        .fetchone()[0]  # type: ignore[index]
    )


def _parse_time_v(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["peak_rss_gb"] = int(m.group(1)) / 1024**2
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(p) for p in m.group(1).split(":")]
        out["wall_s"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return out


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and all its descendants (Linux /proc; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def _watch_tree(proc: subprocess.Popen[bytes]) -> float:
    """Wait for ``proc``; return the peak summed RSS of its process tree in GB.

    ``/usr/bin/time -v`` reports the largest *single* process; with worker processes
    (or Spark's JVM and Python workers) what the machine must hold is their sum. Sampled
    every 0.2 s, so a spike shorter than that can be missed; shared pages are counted
    once per process, so the sum errs on the high side.
    """
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.2)
    return peak / 1024**2


def measure(stage: str, argv: list[str], data_dir: Path) -> dict[str, Any]:
    """Run ``stage`` as a subprocess and return wall time, peak RSS and its own figures."""
    result_file = data_dir / f"stage_{stage}.json"
    result_file.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-stage",
        stage,
        "--result",
        str(result_file),
        *argv,
    ]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    stderr_file = data_dir / f"stage_{stage}.log"
    start = time.perf_counter()
    with open(stderr_file, "w") as err:
        proc = subprocess.Popen([timer, "-v", *cmd] if timer else cmd, stderr=err)
        tree_peak = _watch_tree(proc)
    wall = time.perf_counter() - start
    text = stderr_file.read_text()
    figures: dict[str, Any] = {"stage": stage, "wall_s": wall, "exit": proc.returncode}
    figures["peak_tree_rss_gb"] = tree_peak
    if timer:
        figures.update({k: v for k, v in _parse_time_v(text).items() if k == "peak_rss_gb"})
    else:
        figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    if result_file.exists():
        figures.update(json.loads(result_file.read_text()))
    else:
        figures["error"] = text.strip().splitlines()[-1] if text.strip() else "no output"
    if figures.get("customers") and figures.get("seconds_inner"):
        figures["customers_per_s"] = figures["customers"] / figures["seconds_inner"]
    return figures


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'stage':<24}{'customers':>11}{'wall s':>9}{'inner s':>9}{'peak RSS GB':>13}"
        f"{'tree RSS GB':>13}{'cust/s':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['stage']:<24}{r.get('customers', 0):>11,}{r['wall_s']:>9.1f}"
            f"{r.get('seconds_inner', float('nan')):>9.1f}"
            f"{r.get('peak_rss_gb', float('nan')):>13.2f}"
            f"{r.get('peak_tree_rss_gb', float('nan')):>13.2f}"
            f"{r.get('customers_per_s', float('nan')):>10,.0f}"
            + (f"  ERROR: {r['error']}" if "error" in r else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/churnguard-bench"))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--big-customers", type=int, default=5_000_000)
    parser.add_argument("--train-customers", type=int, default=100_000)
    parser.add_argument("--value-model", default="bgnbd")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--max-memory-gb", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--as-of", default=None)
    parser.add_argument("--big", action="store_true", help="Also score 5M customers (partitioned).")
    parser.add_argument("--spark", action="store_true", help="Also score with Spark local[2].")
    parser.add_argument("--stages", nargs="*", default=None, help=f"Subset of {STAGES}.")
    parser.add_argument("--run-stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_stage:
        figures = run_stage(args.run_stage, args)
        args.result.write_text(json.dumps(figures, default=str))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stages = args.stages or [
        s
        for s in STAGES
        if (s != "score-partitioned-big" or args.big) and (s != "spark" or args.spark)
    ]
    passthrough = [a for a in sys.argv[1:] if a not in ("--big", "--spark")]
    if "--stages" in passthrough:
        passthrough = passthrough[: passthrough.index("--stages")]
    t = time.perf_counter()
    _log_path(args.data_dir, args.customers)
    if "score-partitioned-big" in stages:
        _log_path(args.data_dir, args.big_customers)
    print(f"data ready in {time.perf_counter() - t:.0f} s ({args.data_dir})", flush=True)
    if "train" not in stages and not (args.data_dir / "model").exists():
        stages = ["train", *stages]
    rows = []
    for stage in stages:
        rows.append(measure(stage, passthrough, args.data_dir))
        print(_table(rows[-1:]).splitlines()[-1], flush=True)
    results = args.data_dir / "results.json"
    previous = json.loads(results.read_text()) if results.exists() else {}
    previous.update({r["stage"]: r for r in rows})
    results.write_text(json.dumps(previous, indent=2, default=str))
    print()
    print(_table(list(previous.values())))
    print(f"\ncpus: {os.cpu_count()}; results in {results}")


if __name__ == "__main__":
    main()
