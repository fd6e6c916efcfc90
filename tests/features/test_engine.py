"""The aggregation engine: packed integer sort keys give exactly what sorting by text gives."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churnguard.data import scan_transactions
from churnguard.exceptions import DataQualityWarning, ParameterError
from churnguard.features import FeatureBuilder, compute_features, engine
from churnguard.features.sortkeys import MAX_ID_BYTES


def _messy_log(rng: np.random.Generator, ids: list[str | None], n: int = 3_000) -> pd.DataFrame:
    """Same-day repeats, returns, zero, NaN and missing amounts, missing ids, margins."""
    amount = rng.gamma(2.0, 20.0, n).round(2)
    kind = rng.integers(0, 20, n)
    amount[kind == 0] = -amount[kind == 0]
    amount[kind == 1] = 0.0
    amount[kind == 2] = np.nan
    day = rng.integers(0, 500, n)
    day[kind == 3] = day[0]  # a busy day: many same-day occasions
    return pd.DataFrame(
        {
            "customer_id": pd.Series([ids[i] for i in rng.integers(0, len(ids), n)], dtype=object),
            "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(day, unit="D"),
            "amount": amount,
            "margin": np.where(kind == 4, np.nan, amount * 0.3),
            "quantity": rng.integers(1, 4, n).astype(float),
        }
    )


def _aggregate(log: pd.DataFrame, *, packed: bool, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    with monkeypatch.context() as patch:
        if not packed:
            patch.setattr(engine, "pack_keys", lambda ids, day: None)
        return engine.aggregate_customers(
            log, dt.date(2024, 3, 1), optional=["margin", "quantity"], windows=(30, 90, 365)
        )


@pytest.mark.parametrize(
    "ids",
    [
        [f"{i:05d}" for i in range(0, 600, 3)],
        ["", "a", "ab", "é", "ÿ", "Z9", "CUST-000000123", *[str(i) for i in range(150)]],
        [f"{'tenant-0042/customer/' * 2}{i:05d}" for i in range(0, 900, 7)],
        [None, "x", "y", *[f"c{i}" for i in range(100)]],
    ],
    ids=["zero-padded", "mixed-lengths", "long-prefixed", "missing-ids"],
)
def test_packed_keys_aggregate_as_the_text_sort(
    ids: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _messy_log(np.random.default_rng(11), ids)
    packed = _aggregate(log, packed=True, monkeypatch=monkeypatch)
    text = _aggregate(log, packed=False, monkeypatch=monkeypatch)
    assert len(packed) > 50
    pd.testing.assert_frame_equal(packed, text, check_exact=True)


@pytest.mark.parametrize("ids", [[f"{i:05d}" for i in range(0, 600, 3)], [None, "x", "y", "é"]])
def test_a_log_already_in_customer_and_day_order_skips_the_sort(
    ids: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _messy_log(np.random.default_rng(5), ids)
    shuffled = _aggregate(log, packed=True, monkeypatch=monkeypatch)
    # In order of customer (missing last) and day, ties within a day in a random order.
    ordered = log.sort_values(["customer_id", "date"], kind="stable", na_position="last")
    assert engine._in_key_order(
        engine.pack_keys(
            pa.chunked_array([pa.array(ordered["customer_id"], pa.string())]),
            ordered["date"].to_numpy().astype("datetime64[D]").astype(np.int64),
        ).keys
    )
    assert not engine._in_key_order(
        engine.pack_keys(
            pa.chunked_array([pa.array(log["customer_id"], pa.string())]),
            log["date"].to_numpy().astype("datetime64[D]").astype(np.int64),
        ).keys
    )
    got = _aggregate(ordered, packed=True, monkeypatch=monkeypatch)
    pd.testing.assert_frame_equal(got, shuffled, check_exact=True)


def test_packing_is_used_for_short_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    real = engine.pack_keys

    def spy(ids: pa.ChunkedArray, day: np.ndarray) -> object:
        out = real(ids, day)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(engine, "pack_keys", spy)
    log = _messy_log(np.random.default_rng(1), ["a", "b"])
    engine.aggregate_customers(log, dt.date(2024, 3, 1))
    assert calls == [True]


def test_long_ids_give_the_features_of_short_ones() -> None:
    rng = np.random.default_rng(5)
    short = _messy_log(rng, [f"{i:03d}" for i in range(80)]).drop(columns=["margin", "quantity"])
    prefix = "customer-with-a-long-id-" * 3  # past MAX_ID_BYTES: sorted as text
    long = short.assign(customer_id=prefix + short["customer_id"])
    a = FeatureBuilder().fit(short).transform(short, "2024-03-01")
    b = FeatureBuilder().fit(long).transform(long, "2024-03-01")
    assert b["customer_id"].str.len().min() > MAX_ID_BYTES
    assert (b["customer_id"] == prefix + a["customer_id"]).all()
    pd.testing.assert_frame_equal(a.drop(columns="customer_id"), b.drop(columns="customer_id"))


def test_a_log_of_missing_ids_is_one_missing_customer(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _messy_log(np.random.default_rng(2), [None])
    packed = _aggregate(log, packed=True, monkeypatch=monkeypatch)
    text = _aggregate(log, packed=False, monkeypatch=monkeypatch)
    assert packed["customer_id"].tolist() == [None]
    pd.testing.assert_frame_equal(packed, text, check_exact=True)


def test_nanoseconds_before_midnight_stay_on_their_day() -> None:
    """DuckDB's CAST rounds TIMESTAMP_NS to microseconds: 23:59:59.9999996 must not move."""
    ns = pd.to_datetime(
        [
            "2024-03-01 10:00:00.000000000",
            "2024-03-10 23:59:59.999999999",  # an "end of day" stamp
            "2024-03-05 12:00:00.000000000",
            "1969-12-31 23:59:59.999999900",  # before 1970: floored, not truncated
            "2024-02-20 23:59:59.999999600",
        ]
    )
    log = pd.DataFrame(
        {"customer_id": ["a", "a", "b", "c", "c"], "date": ns, "amount": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    by_day = log.assign(date=log["date"].dt.floor("D"))  # what each row's day is
    table = pa.Table.from_pandas(log, preserve_index=False)
    assert table.schema.field("date").type == pa.timestamp("ns")
    assert engine.last_date(table) == dt.date(2024, 3, 10)
    for cutoff in (dt.date(2024, 3, 10), dt.date(2024, 2, 20)):
        want = engine.aggregate_customers(by_day, cutoff)
        for source in (table, log):
            got = engine.aggregate_customers(source, cutoff)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
    start, end = dt.date(2024, 2, 20), dt.date(2024, 3, 10)
    for counts in (engine.count_purchase_days, engine.window_activity):
        got = counts(table, start, end).sort_values("customer_id", ignore_index=True)
        want = counts(by_day, start, end).sort_values("customer_id", ignore_index=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_the_earliest_nanosecond_day_does_not_overflow() -> None:
    """The floor arithmetic must hold at 1677-09-21, the first day a ns timestamp has."""
    log = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "date": pd.to_datetime(
                ["1677-09-21 12:00:00.000000001", "2024-01-01 00:00:00.000000000"]
            ),
            "amount": [1.0, 2.0],
        }
    )
    got = engine.aggregate_customers(log, dt.date(2024, 1, 1))
    days = np.array(["1677-09-21", "2024-01-01"], dtype="datetime64[us]")  # not ns-safe
    want = engine.aggregate_customers(log.assign(date=days), dt.date(2024, 1, 1))
    pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize("optional", [["margin", "quantity"], ["cost", "product", "channel"]])
@pytest.mark.parametrize("cutoff", [None, "2024-01-15"])
def test_a_scanned_log_is_aggregated_as_it_is_sorted(
    optional: list[str], cutoff: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's sorted rows and customer starts give exactly the engine's own result."""
    rng = np.random.default_rng(8)
    log = _messy_log(rng, [f"c{i:03d}" for i in range(150)], n=4_000).dropna(subset=["amount"])
    log = log.assign(
        cost=np.where(rng.random(len(log)) < 0.05, np.nan, log["amount"] * 0.6),
        product=rng.choice(["p1", "p2", "p3", None], len(log)),
        channel=rng.choice(["web", "shop"], len(log)),
    ).drop(columns=[c for c in ("margin", "cost") if c not in optional])
    # Same-day rows in the source in an order unrelated to their amounts.
    log["date"] = log["date"] + pd.to_timedelta(rng.integers(0, 86_400, len(log)), unit="s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # returns-only customers
        scanned = scan_transactions(log, today=dt.date(2030, 1, 1))
    table, starts = scanned.transactions, scanned.customer_starts
    assert starts is not None and len(starts) == scanned.customers
    day = dt.date.fromisoformat(cutoff) if cutoff else scanned.last_date
    want = compute_features(table, day)
    monkeypatch.setattr(engine, "_sorted_rows", None)  # the fast path must not need it
    got = compute_features(table, day, customer_starts=starts)
    assert {"margin_total", "n_products" if "product" in optional else "quantity_total"} <= set(
        got.columns
    )
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_customer_starts_that_cannot_be_a_scans_are_refused() -> None:
    table = pa.table(
        {
            "customer_id": ["a", "a", "b"],
            "date": pa.array([0, 86_400 * 10**9, 0], pa.timestamp("ns")),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    with pytest.raises(ParameterError, match="customer_starts must be"):
        compute_features(table, dt.date(1970, 1, 5), customer_starts=np.array([1, 2]))
    got = compute_features(table, dt.date(1970, 1, 5), customer_starts=np.array([0, 2]))
    assert got["n_purchases"].tolist() == [2, 1]
    # the same rows with a's two days swapped: its gap and recency would be wrong silently
    swapped = table.take([1, 0, 2])
    with pytest.raises(ParameterError, match="not in day order within each customer"):
        compute_features(swapped, dt.date(1970, 1, 5), customer_starts=np.array([0, 2]))
    got = compute_features(swapped, dt.date(1970, 1, 5))  # sorted by the engine itself
    assert got["n_purchases"].tolist() == [2, 1]
