"""Seeded synthetic transaction logs for benchmarks (and large-scale smoke tests).

Customers follow a buy-till-you-die process (gamma-distributed purchase rates,
geometric dropout after each purchase, gamma spend), so the log has the skew of
real retail data: many one-time buyers, a heavy tail of loyal ones, Pareto-like
revenue concentration. Everything is vectorised and seeded.

Usage::

    python benchmarks/synthetic.py --customers 1000000 --transactions 10000000 \
        --out /tmp/tx_1m.parquet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["generate_transactions", "write_transactions"]


def generate_transactions(
    n_customers: int,
    n_transactions: int,
    *,
    years: float = 2.0,
    seed: int = 0,
    start: str = "2023-01-01",
) -> pd.DataFrame:
    """Generate about ``n_transactions`` transactions of ``n_customers`` customers.

    Returns
    -------
    DataFrame
        ``customer_id`` (zero-padded text), ``date`` (datetime64[ns]) and ``amount``,
        sorted by date. Every customer has at least one transaction.
    """
    rng = np.random.default_rng(seed)
    span = int(years * 365)
    # Acquisition spread over the first 80% of the span.
    birth = rng.integers(0, int(span * 0.8), n_customers)
    # Heterogeneous rates scaled so the expected total matches n_transactions.
    shape = 0.6
    rate = rng.gamma(shape, 1.0, n_customers)
    alive_days = np.minimum(rng.geometric(rng.beta(1.0, 4.0, n_customers).clip(1e-3)) * 45.0, span)
    exposure = np.minimum(span - birth, alive_days)
    extra_target = max(n_transactions - n_customers, 0)
    scale = extra_target / max(float((rate * exposure).sum()), 1.0)
    repeats = rng.poisson(rate * exposure * scale)
    counts = 1 + repeats
    owner = np.repeat(np.arange(n_customers), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    is_first = np.zeros(len(owner), dtype=bool)
    is_first[first] = True
    offset = rng.random(len(owner)) * exposure[owner]
    offset[is_first] = 0.0
    day = birth[owner] + offset.astype(np.int64)
    spend_level = rng.gamma(4.0, 10.0, n_customers)
    amount = np.round(rng.gamma(4.0, spend_level[owner] / 4.0), 2)
    width = max(7, len(str(n_customers)))
    ids = pd.Series(np.arange(n_customers)).astype(str).str.zfill(width).to_numpy()
    frame = pd.DataFrame(
        {
            "customer_id": ids[owner],
            "date": pd.Timestamp(start) + pd.to_timedelta(day, unit="D"),
            "amount": amount,
        }
    )
    return frame.sort_values("date", kind="stable").reset_index(drop=True)


def write_transactions(
    path: str | Path, n_customers: int, n_transactions: int, seed: int = 0
) -> Path:
    """Generate a log and write it as Parquet (cached: an existing file is reused)."""
    out = Path(path)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_transactions(n_customers, n_transactions, seed=seed)
    tmp = out.with_suffix(".tmp.parquet")
    frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    t0 = time.perf_counter()
    path = write_transactions(args.out, args.customers, args.transactions, args.seed)
    print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
