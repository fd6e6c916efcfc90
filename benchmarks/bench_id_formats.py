"""How the feature engine's sort copes with different customer id formats.

The engine packs short text ids into integer sort keys (``churnguard.features.sortkeys``)
and sorts other ids as text. This script takes the seeded synthetic log of
``bench_features.py`` (1M customers, 10M transactions; generated and cached if missing),
rewrites its ids in several formats, and times ``engine.aggregate_customers`` on an
in-memory Arrow table both ways, packed and as text (the packing switched off), in
interleaved rounds; the fastest round of each is printed.

Formats: zero-padded numbers (``0004217``), plain numbers (``4217``), 18-character
``cus_`` + 14 random letters and digits, a 42-character constant prefix + plain
number, and random UUIDs (too random to pack: both columns then sort as text).

Usage::

    python benchmarks/bench_id_formats.py --rounds 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnguard.features import engine

__all__ = ["id_formats", "main"]


def id_formats(n_customers: int, seed: int = 0) -> dict[str, list[str] | None]:
    """Ids of customer ``i`` in each format (None: the log's own zero-padded ids)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", np.uint8
    )
    tails = alphabet[rng.integers(0, len(alphabet), (n_customers, 14))]
    return {
        "zero-padded numbers": None,
        "plain numbers": [str(i) for i in range(n_customers)],
        "cus_ + 14 characters": ["cus_" + bytes(t).decode() for t in tails],
        "42-char prefix + number": [
            ("tenant-0042/customer/" * 2) + str(i) for i in range(n_customers)
        ],
        "random UUIDs": [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(n_customers)],
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/churnguard-bench"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synthetic import write_transactions

    path = write_transactions(
        args.data_dir / "tx_1000000c_10000000t_s0.parquet", 1_000_000, 10_000_000
    )
    log = pq.read_table(path)
    index = pc.cast(log.column("customer_id"), pa.int64())
    cutoff = dt.date.fromisoformat(str(pc.max(log.column("date")).as_py().date()))
    real_pack = engine.pack_keys
    print(f"{'ids':26s} {'packed s':>9s} {'text s':>9s} {'text/packed':>12s}")
    for name, ids in id_formats(int(pc.max(index).as_py()) + 1).items():
        table = log if ids is None else log.set_column(0, "customer_id", pa.array(ids).take(index))
        best = {"packed": float("inf"), "text": float("inf")}
        for _ in range(args.rounds):
            for mode in best:
                engine.pack_keys = real_pack if mode == "packed" else (lambda ids, day: None)
                t0 = time.perf_counter()
                engine.aggregate_customers(table, cutoff)
                best[mode] = min(best[mode], time.perf_counter() - t0)
        engine.pack_keys = real_pack
        ratio = best["text"] / best["packed"]
        print(f"{name:26s} {best['packed']:9.2f} {best['text']:9.2f} {ratio:11.2f}x", flush=True)


if __name__ == "__main__":
    main()
