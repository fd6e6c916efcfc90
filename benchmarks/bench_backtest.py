"""Out-of-time quality of churnguard: the ``backtest`` command on CDNOW and simulated worlds.

Every run is what a user runs: ``churnguard backtest`` as a subprocess under
``/usr/bin/time -v``, on a log written to disk. Each simulated world stresses one thing
(see :mod:`churnguard.data.simulate`); for the BG/NBD world, whose truth is known, the
Bayes-optimal scores (the closed forms with the true parameters) are computed on the
same customers and reported beside the model.

Usage::

    python benchmarks/bench_backtest.py --data-dir /tmp/churnguard-backtest
    python benchmarks/bench_backtest.py --only cdnow:182 bgnbd_world --latest 1

Prints one table per run (model and every baseline) and a check of the targets of
``benchmarks/README.md``; writes ``results.csv`` and ``targets.csv`` to ``--data-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: CDNOW runs of the churn issue: (as-of dates, horizon in days). The 182-day run starts
#: at 1997-09-30 because training needs a log longer than the horizon (CDNOW's cohort
#: begins on 1997-01-01) and ends at 1997-12-30, the last as-of whose window is observed.
CDNOW_RUNS = [
    (["1997-09-30", "1997-12-31", "1998-03-31"], 91),
    (["1997-09-30", "1997-12-30"], 182),
]


def _time_v(cmd: list[str], log: Path) -> dict[str, float]:
    """Run ``cmd`` under /usr/bin/time -v; return wall seconds and peak RSS (GB)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    text = log.read_text()
    if proc.returncode != 0:
        sys.stderr.write(text[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": wall, "peak_rss_gb": int(rss.group(1)) / 1024**2 if rss else float("nan")}


def _backtest(log_path: Path, dates: list[str], horizons: list[int], out: Path) -> pd.DataFrame:
    cmd = [
        "churnguard", "backtest", "--transactions", str(log_path), "--as-of", ",".join(dates),
        "--horizon-days", ",".join(map(str, horizons)), "--out-dir", str(out), "--no-mlflow",
    ]  # fmt: skip
    figures = _time_v(cmd, out.with_suffix(".log"))
    table = pd.read_csv(out / "backtest.csv")
    print(f"  {log_path.name}: {figures['wall_s']:.0f} s, peak RSS {figures['peak_rss_gb']:.2f} GB")
    return table.assign(**figures)


def _bayes_optimal(world: object, dates: list[str], horizons: list[int]) -> pd.DataFrame:
    """Metrics of the true-parameter closed forms on the same customers as the backtest."""
    from churnguard.churn.metrics import compare_scores
    from churnguard.clv import PurchaseModel, SpendModel
    from churnguard.clv.metrics import compare_values
    from churnguard.evaluation import observe_outcomes
    from churnguard.features import rfm_summary

    truth = world.truth  # type: ignore[attr-defined]
    tx = world.transactions  # type: ignore[attr-defined]
    pm = PurchaseModel.from_params(truth["params"], truth["model"])
    sm = SpendModel.from_params(truth["spend_params"])
    rows = []
    for d in dates:
        hist = tx[tx["date"] <= d]
        rfm = rfm_summary(hist, d, time_unit="D")
        x, r, t = (rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        spend = sm.expected_spend_arrays(x, rfm["monetary_value"].to_numpy(dtype=float))
        for h in horizons:
            out = observe_outcomes(tx, rfm["customer_id"], d, h)
            p0 = pm.p_no_purchase_arrays(float(h), x, r, t)
            churn = compare_scores(
                out["churned"], {"bayes_optimal": p0}, probabilities=("bayes_optimal",)
            )
            value = compare_values(
                out["future_spend"].to_numpy(),
                {"bayes_optimal": pm.expected_purchases_arrays(float(h), x, r, t) * spend},
            ).reset_index()
            for kind, table in (("churn", churn), ("value", value)):
                rows.append(table.assign(kind=kind, as_of=d, horizon_days=h))
    return pd.concat(rows, ignore_index=True)


def _worlds(
    names: list[str], data: Path, latest: int | None = None
) -> list[tuple[str, Path, list[str], list[int], object]]:
    from churnguard.data import WORLDS, write_cdnow, write_world

    out = []
    for name in names:
        if name.split(":")[0] == "cdnow":  # "cdnow" for both runs, "cdnow:182" for one
            path = data / "cdnow.csv"
            if not path.exists():
                write_cdnow(path)
            for dates, h in CDNOW_RUNS:
                if name in ("cdnow", f"cdnow:{h}"):
                    out.append(("cdnow", path, dates, [h], None))
            continue
        world = WORLDS[name](seed=0)
        path = data / f"{name}.csv"
        if not path.exists():
            write_world(world, path)
        dates = [pd.Timestamp(d).date().isoformat() for d in world.suggested_as_of]
        dates = dates[-latest:] if latest else dates
        out.append((name, path, dates, list(world.suggested_horizons_days), world))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/churnguard-backtest"))
    parser.add_argument(
        "--only",
        nargs="*",
        default=["cdnow", "aging_cohort", "continuous_acquisition", "no_churn",
                 "shifting_churn", "bgnbd_world"],
    )  # fmt: skip
    parser.add_argument(
        "--latest", type=int, default=None,
        help="Only the latest N suggested as-of dates of each simulated world (a quicker run).",
    )  # fmt: skip
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tables = []
    for name, path, dates, horizons, world in _worlds(args.only, args.data_dir, args.latest):
        print(f"{name}: as of {', '.join(dates)}, horizons {horizons}")
        out = args.data_dir / f"{name}-{'-'.join(map(str, horizons))}-{stamp}"
        table = _backtest(path, dates, horizons, out).assign(dataset=name)
        if world is not None and world.truth.get("model") == "bgnbd":  # type: ignore[attr-defined]
            table = pd.concat([table, _bayes_optimal(world, dates, horizons).assign(dataset=name)])
        tables.append(table)
    results = pd.concat(tables, ignore_index=True)
    results.to_csv(args.data_dir / "results.csv", index=False)
    pd.set_option("display.width", 220)
    churn = results[results["kind"] == "churn"]
    cols = ["dataset", "as_of", "horizon_days", "score", "roc_auc", "ece", "top_decile_lift",
            "log_loss", "brier"]  # fmt: skip
    print(churn[cols].round(4).to_string(index=False))
    value = results[results["kind"] == "value"]
    vcols = ["dataset", "as_of", "horizon_days", "score", "gini", "spearman",
             "top_decile_share", "decile_mape", "aggregate_error"]  # fmt: skip
    print(value[vcols].round(4).to_string(index=False))
    targets = check_targets(results)
    targets.to_csv(args.data_dir / "targets.csv", index=False)
    print(targets.to_string(index=False))


def check_targets(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the model's margins over the best baseline, and the target checks."""
    rows = []
    keys = ["dataset", "as_of", "horizon_days"]
    churn = results[results["kind"] == "churn"]
    for key, run in churn.groupby(keys, sort=False):
        run = run.set_index("score")
        model = run.loc["churnguard"]
        base = run.drop(index=["churnguard", "bayes_optimal"], errors="ignore")
        row = dict(zip(keys, key, strict=True))
        row |= {
            "churn_model": model.get("churn_model"),
            "auc": model["roc_auc"],
            "auc_margin": model["roc_auc"] - base["roc_auc"].max(),
            "ece": model["ece"],
            "lift_gap": model["top_decile_lift"] - base["top_decile_lift"].max(),
        }
        if "bayes_optimal" in run.index:
            row["auc_vs_bayes"] = model["roc_auc"] - run.loc["bayes_optimal", "roc_auc"]
            row["ece_bayes"] = run.loc["bayes_optimal", "ece"]
        rows.append(row)
    table = pd.DataFrame(rows)
    value = results[results["kind"] == "value"]
    vrows = []
    for key, run in value.groupby(keys, sort=False):
        run = run.set_index("score")
        model = run.loc["churnguard"]
        base = run.drop(index=["churnguard", "bayes_optimal"], errors="ignore")
        vrow = dict(zip(keys, key, strict=True))
        vrow |= {
            "value_model": model.get("value_model"),
            "gini": model["gini"],
            "gini_margin": model["gini"] - base["gini"].max(),
            "top10_gap": model["top_decile_share"] - base["top_decile_share"].max(),
            "aggregate_error": model["aggregate_error"],
            "decile_mape": model["decile_mape"],
        }
        if "bayes_optimal" in run.index:
            vrow["gini_vs_bayes"] = model["gini"] - run.loc["bayes_optimal", "gini"]
        vrows.append(vrow)
    merged = table.merge(pd.DataFrame(vrows), on=keys, how="outer")
    return merged.round(4).replace({np.nan: None})


if __name__ == "__main__":
    main()
