"""Point-in-time features: hand-computed values, leakage, edge cases, lifetimes parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.exceptions import InputDataError
from churnguard.features import FeatureBuilder, rfm_summary


def _tx(rows: list[tuple[str, str, float]], **extra: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["date"] = pd.to_datetime(frame["date"], format="ISO8601")
    for k, v in extra.items():
        frame[k] = v
    return frame


LOG = _tx(
    [
        ("a", "2024-01-01", 10.0),
        ("a", "2024-01-01", 5.0),  # same day: one occasion worth 15
        ("a", "2024-01-11", 20.0),
        ("a", "2024-01-31", 40.0),  # on the cutoff day: counts as the past
        ("b", "2024-01-21", 7.0),
        ("c", "2024-02-15", 9.0),  # after the cutoff only: no row
    ]
)
CUTOFF = "2024-01-31"


def _features(log: pd.DataFrame = LOG, cutoff: str = CUTOFF, **kw: object) -> pd.DataFrame:
    return FeatureBuilder(**kw).fit(log).transform(log, cutoff).set_index("customer_id")  # type: ignore[arg-type]


def test_rfm_by_hand() -> None:
    f = _features()
    assert list(f.index) == ["a", "b"]
    a, b = f.loc["a"], f.loc["b"]
    assert (a.frequency, a.recency, a["T"], a.monetary_value) == (2, 30.0, 30.0, 30.0)
    assert (b.frequency, b.recency, b["T"], b.monetary_value) == (0, 0.0, 10.0, 0.0)
    assert a.n_purchases == 3 and a.n_transactions == 4 and a.total_spend == 75.0
    assert a.days_since_last == 0 and b.days_since_last == 10
    assert a.mean_gap_days == 15.0 and a.gap_std_days == 5.0 and a.max_gap_days == 20
    assert a.overdue_ratio == 0.0
    assert np.isnan(b.mean_gap_days) and np.isnan(b.overdue_ratio) and np.isnan(b.gap_std_days)


def test_weeks_time_unit() -> None:
    f = _features(time_unit="W")
    assert f.loc["a", "recency"] == pytest.approx(30 / 7)
    assert f.loc["a", "T"] == pytest.approx(30 / 7)
    assert f.loc["a", "days_since_first"] == 30


def test_windows_and_trend_by_hand() -> None:
    log = _tx(
        [
            ("a", "2024-01-01", 100.0),
            ("a", "2024-02-01", 100.0),
            ("a", "2024-05-01", 40.0),  # last 90 days before 2024-06-29
        ]
    )
    f = _features(log, "2024-06-29")
    row = f.loc["a"]
    assert row.purchases_90d == 1 and row.spend_90d == 40.0
    assert row.purchases_prev_90d == 1 and row.spend_prev_90d == 100.0  # 2024-02-01 in (-180, -90]
    assert row.spend_ratio_90d == pytest.approx(0.4)
    assert row.purchases_365d == 3 and row.spend_30d == 0.0


def test_transactions_after_cutoff_change_nothing() -> None:
    rng = np.random.default_rng(7)
    future = _tx(
        [
            (str(c), str(pd.Timestamp(CUTOFF) + pd.Timedelta(days=int(d))), float(v))
            for c, d, v in zip(
                rng.choice(["a", "b", "z"], 50),
                rng.integers(1, 400, 50),
                rng.gamma(2, 10, 50),
                strict=True,
            )
        ]
    )
    with_future = pd.concat([LOG, future], ignore_index=True)
    pd.testing.assert_frame_equal(_features(), _features(with_future))


def test_cutoff_day_counts_as_past_even_late_in_the_day() -> None:
    log = _tx([("a", "2024-01-01", 1.0), ("a", "2024-01-31 23:59:00", 2.0)])
    assert _features(log).loc["a", "frequency"] == 1


def test_returns_and_zero_amounts() -> None:
    log = _tx(
        [
            ("a", "2024-01-01", 50.0),
            ("a", "2024-01-05", -20.0),  # a return: not a purchase occasion
            ("a", "2024-01-10", 0.0),  # a zero-amount purchase is an occasion (as in CDNOW)
            ("r", "2024-01-03", -5.0),  # only returns: no row
        ]
    )
    f = _features(log, "2024-01-31")
    a = f.loc["a"]
    assert list(f.index) == ["a"]
    assert a.frequency == 1 and a.monetary_value == 0.0
    assert a.total_spend == 30.0 and a.returned_amount == 20.0 and a.n_returns == 1
    assert a.return_rate == pytest.approx(1 / 3)


def test_optional_columns_make_features() -> None:
    log = _tx(
        [("a", "2024-01-01", 10.0), ("a", "2024-01-20", 30.0)],
        cost=[4.0, 10.0],
        quantity=[1, 3],
        product=["x", "y"],
        channel=["web", "web"],
    )
    f = _features(log)
    a = f.loc["a"]
    assert a.margin_total == 26.0 and a.margin_rate == pytest.approx(26 / 40)
    assert a.quantity_total == 4 and a.n_products == 2 and a.n_channels == 1


def test_scoring_log_without_a_training_column_warns(caplog: pytest.LogCaptureFixture) -> None:
    log = _tx([("a", "2024-01-01", 10.0)], quantity=[1])
    builder = FeatureBuilder().fit(log)
    with caplog.at_level("WARNING", logger="churnguard.features.builder"):
        out = builder.transform(LOG, CUTOFF)
    assert "quantity" in caplog.text
    assert out["quantity_total"].isna().all()


def test_bad_params_fail_in_fit() -> None:
    with pytest.raises(ValueError, match="time_unit"):
        FeatureBuilder(time_unit="M").fit(LOG)
    with pytest.raises(InputDataError, match="canonical columns"):
        FeatureBuilder().fit(LOG.rename(columns={"amount": "value"}))


def test_input_frame_not_mutated() -> None:
    before = LOG.copy()
    _features()
    pd.testing.assert_frame_equal(LOG, before)


@pytest.mark.parametrize(("unit", "multiplier"), [("D", 1), ("W", 7)])
def test_identical_to_lifetimes_summary_on_cdnow(
    cdnow_tx: pd.DataFrame, unit: str, multiplier: int
) -> None:
    from lifetimes.utils import summary_data_from_transaction_data

    ours = rfm_summary(cdnow_tx, "1997-09-30", time_unit=unit).set_index("customer_id")
    theirs = summary_data_from_transaction_data(
        cdnow_tx,
        "customer_id",
        "date",
        "amount",
        observation_period_end="1997-09-30",
        freq="D",
        freq_multiplier=multiplier,
    ).loc[ours.index]
    assert len(ours) == len(theirs) == cdnow_tx["customer_id"].nunique()
    for col in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(ours[col].to_numpy(), theirs[col].to_numpy(), rtol=0, atol=1e-9)


def test_optional_columns_missing_at_scoring_leave_their_features_missing() -> None:
    """Optional means optional: a log without the quantity seen at training still scores."""
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-15"]),
            "amount": [10.0, 20.0, 5.0],
            "quantity": [1.0, 2.0, 1.0],
        }
    )
    builder = FeatureBuilder().fit(tx)
    assert "quantity_total" in builder.feature_names_
    out = builder.transform(tx.drop(columns="quantity"), "2024-03-01")
    assert list(out.columns) == ["customer_id", *builder.feature_names_]
    assert out["quantity_total"].isna().all() and out["frequency"].tolist() == [1, 0]


def test_features_at_many_cutoffs_equal_one_transform_each() -> None:
    """The rolling snapshots sort once; each cutoff gives the frame of transform()."""
    rng = np.random.default_rng(7)
    n = 3000
    tx = pd.DataFrame(
        {
            "customer_id": rng.choice([f"c{i:03d}" for i in range(300)], n),
            # A third of the rows on one busy day: many same-day rows to put in order.
            "date": pd.Timestamp("2023-01-01")
            + pd.to_timedelta(np.where(rng.random(n) < 0.3, 100, rng.integers(0, 500, n)), "D"),
            "amount": np.round(rng.gamma(2.0, 20.0, n) * np.where(rng.random(n) < 0.05, -1, 1), 2),
            "quantity": rng.integers(1, 4, n).astype(float),
        }
    )
    builder = FeatureBuilder().fit(tx)
    cutoffs = ["2023-03-01", "2023-08-15", "2024-01-31", "2024-05-10"]
    many = dict(builder.transform_many(tx, cutoffs))
    for c in cutoffs:
        pd.testing.assert_frame_equal(
            many[pd.Timestamp(c).date()], builder.transform(tx, c), check_exact=True
        )
