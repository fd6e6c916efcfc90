"""The DuckDB scan gives exactly what the pandas cleaning gave, where no rule changed.

``_legacy_clean`` is a frozen copy of ``clean_transactions`` as it was before the
scan (pandas parsing, ``keep_default_na``...). On inputs that none of the new rules
touches (no NA-like text ids, no offsets, dates between 1970 and today, amounts
below 1e12), the new ``clean_transactions``/``load_transactions`` must return the
same frame (values, dtypes, order) and quarantine the same rows for the same
reasons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.data import ColumnMap, clean_transactions, load_cdnow, load_transactions
from churnguard.data.columns import resolve_columns

TODAY = "2024-06-30"


def _legacy_dates(raw: pd.Series, date_format: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw):
        out = raw
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        return out.astype("datetime64[ns]")
    text = raw.astype("string").str.strip()
    if date_format is not None:
        return pd.to_datetime(text, format=date_format, errors="coerce")
    try:
        return pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        return pd.to_datetime(text, errors="coerce")


def _legacy_clean(
    frame: pd.DataFrame, cmap: ColumnMap | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """clean_transactions before the scan (transactions, quarantine)."""
    cmap = cmap or ColumnMap()
    resolved = resolve_columns(list(frame.columns), cmap, "<frame>")
    raw = frame[list(resolved.values())].copy()
    raw.columns = list(resolved.keys())
    ids = raw["customer_id"]
    if not pd.api.types.is_string_dtype(ids) or ids.dtype == object:
        ids = ids.astype("string")
    ids = ids.str.strip()
    dates = _legacy_dates(raw["date"], cmap.date_format)
    amounts = pd.to_numeric(raw["amount"], errors="coerce").astype("float64")
    reasons = pd.Series("", index=raw.index, dtype=object)
    bad_id = ids.isna() | (ids == "")
    bad_date = dates.isna()
    bad_amount = amounts.isna() | ~np.isfinite(amounts.fillna(0.0))
    reasons = reasons.mask(bad_id, "missing customer id")
    reasons = reasons.mask(~bad_id & bad_date, "unparsable date")
    reasons = reasons.mask(~bad_id & ~bad_date & bad_amount, "non-numeric amount")
    bad = bad_id | bad_date | bad_amount
    out = pd.DataFrame({"customer_id": ids, "date": dates, "amount": amounts}, index=raw.index)
    for canon in resolved:
        if canon in ("margin", "cost", "quantity"):
            out[canon] = pd.to_numeric(raw[canon], errors="coerce").astype("float64")
        elif canon in ("product", "channel"):
            out[canon] = raw[canon].astype("string")
    quarantine = raw.loc[bad].astype("string")
    quarantine.insert(0, "source_row", raw.index[bad].to_numpy())
    quarantine["reason"] = reasons[bad].to_numpy()
    clean = out.loc[~bad].sort_values(["customer_id", "date"], kind="stable")
    clean = clean.reset_index(drop=True)
    clean["customer_id"] = clean["customer_id"].astype(object)
    return clean, quarantine.reset_index(drop=True)


def _same(frame: pd.DataFrame, cmap: ColumnMap | None = None) -> None:
    expected, expected_q = _legacy_clean(frame, cmap)
    got = clean_transactions(frame, cmap, today=TODAY)
    pd.testing.assert_frame_equal(got.transactions, expected)
    assert got.quarantine["source_row"].tolist() == expected_q["source_row"].tolist()
    assert got.quarantine["reason"].tolist() == expected_q["reason"].tolist()
    assert list(got.quarantine.columns) == list(expected_q.columns)


def _messy(seed: int, n: int = 2000) -> pd.DataFrame:
    """Random raw rows of every kind the old cleaning handled, unordered, with ties."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(["00042", " 7", "abc", "x-1", "0007 ", "\u00e9t\u00e9", "42"], n).astype(
        object
    )
    ids[rng.random(n) < 0.03] = None
    ids[rng.random(n) < 0.02] = "  "
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    dates = day.strftime("%Y-%m-%d").to_numpy(dtype=object)
    dates[rng.random(n) < 0.03] = "not a date"
    dates[rng.random(n) < 0.02] = None
    amounts = np.round(rng.normal(30, 20, n), 2).astype(object)
    amounts[rng.random(n) < 0.03] = "abc"
    amounts[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "customer_id": ids,
            "date": dates,
            "amount": amounts,
            "quantity": rng.integers(1, 4, n),
            "channel": rng.choice(["web", "shop", None], n),
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_messy_frames_clean_as_before(seed: int) -> None:
    _same(_messy(seed))


def test_existing_cases_clean_as_before() -> None:
    raw = pd.DataFrame(
        {
            "client": ["00042", "00042", "7", None, "00042"],
            "when": ["2024-01-01", "2024-01-05", "not a date", "2024-01-02", "2024-02-01"],
            "value": ["10.5", "abc", "3", "4", "0"],
        }
    )
    _same(raw, ColumnMap(customer="client", date="when", amount="value"))
    _same(pd.DataFrame({"customer_id": ["a"], "date": ["19970101"], "amount": [1]}),
          ColumnMap(date_format="%Y%m%d"))  # fmt: skip
    optional = pd.DataFrame(
        {
            "customer_id": ["a"],
            "date": ["2024-01-01"],
            "amount": [1],
            "quantity": [2],
            "sku": ["p1"],
        }
    )
    _same(optional, ColumnMap(optional={"product": "sku"}))


def test_presorted_and_shuffled_ties_clean_as_before() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["b", " a", "a", "b", "a", "c", "a"],
            "date": [
                "2024-01-02",
                "2024-01-05",
                "2024-01-01",
                "2024-01-01",
                "2024-01-05",
                "2024-01-03",
                "2024-01-03",
            ],  # fmt: skip
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    _same(raw)
    _same(raw.iloc[[2, 6, 1, 4, 3, 0, 5]])


def test_cdnow_cleans_as_before() -> None:
    _same(load_cdnow(sample=True))
    _same(load_cdnow())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_load_as_before(tmp_path: Path, fmt: str) -> None:
    frame = _messy(3).dropna(subset=["customer_id"])
    frame = frame[frame["customer_id"].str.strip() != ""]
    frame = frame.assign(amount=pd.to_numeric(frame["amount"], errors="coerce"))
    path = tmp_path / f"log.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
        legacy_input = pd.read_csv(path, dtype={"customer_id": "string"})
    else:
        frame = frame.assign(date=pd.to_datetime(frame["date"], errors="coerce"))
        frame.to_parquet(path, index=False)
        legacy_input = pd.read_parquet(path).assign(
            customer_id=lambda f: f["customer_id"].astype("string")
        )
    expected, expected_q = _legacy_clean(legacy_input)
    got = load_transactions(path, today=TODAY)
    pd.testing.assert_frame_equal(got.transactions, expected)
    assert got.quarantine["source_row"].tolist() == expected_q["source_row"].tolist()
    assert got.quarantine["reason"].tolist() == expected_q["reason"].tolist()
