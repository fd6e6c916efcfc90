"""The commands a user runs, timed as the user runs them, beside a bare DuckDB aggregate.

Each command is a subprocess under ``/usr/bin/time -v`` (wall time and the peak RSS of
the process and its children, as the kernel reports them), on the seeded logs of
``benchmarks/synthetic.py``:

* ``duckdb-rfm``: the reference, a bare DuckDB ``GROUP BY`` computing frequency,
  recency, T and total spend per customer from the same Parquet file, written to
  Parquet (what any feature build must at least do);
* ``features``: ``churnguard features -t LOG --out F``;
* ``score``: ``churnguard score -t LOG -m MODEL --out LIST`` with no other flag (the
  command picks in-memory or partitioned execution itself);
* ``train``: ``churnguard train -t LOG --model-dir M --no-mlflow`` on the whole log.

The reference runs right before the commands of each repeat, so that every ratio
compares two runs on the same machine in the same minute. Usage::

    python benchmarks/bench_commands.py --data-dir /tmp/cg-bench            # 1M customers
    python benchmarks/bench_commands.py --data-dir /tmp/cg-bench --big      # and 5M
    python benchmarks/bench_commands.py --commands features score --repeats 3

A table (median and range over the repeats) is printed and ``results.json`` is written
to ``--data-dir``. Logs and the model are cached there between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

COMMANDS = ("features", "score", "train")
_TIME = "/usr/bin/time"

_REFERENCE = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false").fetchall()
log, out = sys.argv[1], sys.argv[2]
end = con.sql(f"SELECT max(date) FROM read_parquet('{log}')").fetchall()[0][0]
con.sql(f'''
COPY (
  SELECT customer_id,
         count(DISTINCT CAST(date AS DATE)) - 1 AS frequency,
         date_diff('day', min(date), max(date)) AS recency,
         date_diff('day', min(date), TIMESTAMP '{end}') AS T,
         sum(amount) AS total_spend
  FROM read_parquet('{log}') GROUP BY customer_id
) TO '{out}' (FORMAT parquet)''')
"""


def _log(data_dir: Path, customers: int) -> Path:
    from synthetic import write_transactions

    path = data_dir / f"tx_{customers}.parquet"
    if not path.exists():
        write_transactions(path, customers, customers * 10, seed=0)
    return path


def _timed(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``args`` under /usr/bin/time -v; wall seconds and peak RSS (GB)."""
    if not Path(_TIME).exists():
        raise SystemExit(f"{_TIME} is needed (apt-get install -y time)")
    proc = subprocess.run(
        [_TIME, "-v", *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if wall is None or rss is None:
        raise SystemExit(f"cannot read /usr/bin/time output:\n{proc.stderr[-2000:]}")
    hours, minutes, seconds = wall.groups()
    total = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    return {"seconds": total, "peak_gb": int(rss.group(1)) * 1024 / 1e9}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "churnguard.cli", *args]


def _run_once(
    name: str, log: Path, work: Path, model: Path, env: dict[str, str]
) -> dict[str, float]:
    if name == "duckdb-rfm":
        return _timed([sys.executable, "-c", _REFERENCE, str(log), str(work / "ref.parquet")])
    if name == "features":
        return _timed(_cli("features", "-t", str(log), "--out", str(work / "f.parquet")), env)
    if name == "score":
        out = work / "list.parquet"
        return _timed(_cli("score", "-t", str(log), "-m", str(model), "--out", str(out)), env)
    if name == "train":
        target = work / "model"
        shutil.rmtree(target, ignore_errors=True)
        return _timed(_cli("train", "-t", str(log), "--model-dir", str(target), "--no-mlflow"), env)
    raise ValueError(name)


def _summary(runs: list[dict[str, float]], customers: int) -> dict[str, Any]:
    secs = [r["seconds"] for r in runs]
    peaks = [r["peak_gb"] for r in runs]
    return {
        "seconds": secs,
        "peak_gb": peaks,
        "median_seconds": statistics.median(secs),
        "customers_per_second": customers / statistics.median(secs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/churnguard-bench"))
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=None, help="default: --repeats")
    parser.add_argument("--big", action="store_true", help="also the 5M-customer log")
    parser.add_argument("--model", type=Path, help="model for score (default: train one)")
    opts = parser.parse_args(argv)
    data = opts.data_dir
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{data / 'mlflow.db'}")
    sizes = [1_000_000] + ([5_000_000] if opts.big else [])
    results: dict[str, Any] = {}
    model = opts.model
    for customers in sizes:
        log = _log(data, customers)
        work = data / f"work_{customers}"
        work.mkdir(exist_ok=True)
        wanted = [c for c in opts.commands if not (c == "train" and customers > 1_000_000)]
        if "score" in wanted and model is None:
            model = data / "model_1000000"
            if not (model / "metadata.json").exists():
                print("training the model used by score (not timed)...", flush=True)
                _timed(_cli("train", "-t", str(_log(data, 1_000_000)), "--model-dir",
                            str(model), "--no-mlflow"), env)  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {"duckdb-rfm": []}
        for i in range(opts.repeats):
            for name in ["duckdb-rfm", *wanted]:
                repeats = opts.train_repeats if name == "train" else None
                if repeats is not None and i >= repeats:
                    continue
                assert model is not None or name != "score"
                r = _run_once(name, log, work, model or work, env)
                runs.setdefault(name, []).append(r)
                print(f"{customers:>9,} {name:<11} run {i + 1}: {r['seconds']:7.1f} s "
                      f"{r['peak_gb']:5.2f} GB", flush=True)  # fmt: skip
        ref = statistics.median(r["seconds"] for r in runs["duckdb-rfm"])
        results[str(customers)] = {
            name: _summary(rs, customers) | {"ratio_to_duckdb": statistics.median(
                r["seconds"] for r in rs) / ref}
            for name, rs in runs.items()
        }  # fmt: skip
    print()
    print("| customers | command | wall s (median, range) | peak GB (range) | customers/s "
          "| x DuckDB RFM |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for customers, table in results.items():
        for name, s in table.items():
            secs, peaks = s["seconds"], s["peak_gb"]
            print(
                f"| {int(customers):,} | {name} | {s['median_seconds']:.1f} "
                f"({min(secs):.1f}-{max(secs):.1f}) | {min(peaks):.2f}-{max(peaks):.2f} "
                f"| {s['customers_per_second']:,.0f} | {s['ratio_to_duckdb']:.2f} |"
            )
    (data / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
