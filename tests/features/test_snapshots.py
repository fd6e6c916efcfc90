"""Rolling snapshots: fully observed cutoffs, labels by hand, lead-time gap."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from churnguard.exceptions import InsufficientHistoryError
from churnguard.features import label_window, make_labels, make_snapshots, snapshot_cutoffs

LOG = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "b", "b"],
        "date": pd.to_datetime(
            ["2024-01-01", "2024-03-01", "2024-03-20", "2024-01-10", "2024-01-15"]
        ),
        "amount": [10.0, 20.0, -5.0, 5.0, 5.0],
    }
)


def test_cutoffs_have_fully_observed_label_windows() -> None:
    cs = snapshot_cutoffs(
        "2024-01-01", "2024-12-31", horizon_days=90, step_days=30, min_history_days=28
    )
    assert cs[-1] == dt.date(2024, 12, 31) - dt.timedelta(days=90)
    assert all(b - a == dt.timedelta(days=30) for a, b in zip(cs, cs[1:], strict=False))
    assert cs[0] >= dt.date(2024, 1, 29)
    assert (
        snapshot_cutoffs("2024-01-01", "2024-12-31", horizon_days=90, n_snapshots=2)[-1] == cs[-1]
    )


def test_too_short_history_is_explained() -> None:
    with pytest.raises(InsufficientHistoryError, match="horizon"):
        snapshot_cutoffs("2024-01-01", "2024-03-01", horizon_days=90)


def test_label_window_and_gap() -> None:
    assert label_window("2024-01-31", 30, 7) == (dt.date(2024, 2, 7), dt.date(2024, 3, 8))


def test_labels_by_hand() -> None:
    labels = make_labels(LOG, pd.Series(["a", "b"]), "2024-01-31", horizon_days=30)
    # a buys on 2024-03-01, day 30 after the cutoff: inside (c, c + 30]; the 03-20 row is a return
    assert labels.set_index("customer_id")["churned"].to_dict() == {"a": 0, "b": 1}
    later = make_labels(LOG, pd.Series(["a"]), "2024-01-31", horizon_days=29)
    assert later["churned"].tolist() == [1]
    gapped = make_labels(LOG, pd.Series(["a"]), "2024-01-31", horizon_days=30, gap_days=5)
    assert gapped["future_purchases"].tolist() == [1]


def test_snapshots_stack_features_and_labels() -> None:
    snaps = make_snapshots(LOG, ["2024-01-12", "2024-01-31"], horizon_days=30)
    assert snaps.groupby("cutoff")["customer_id"].apply(list).to_dict() == {
        pd.Timestamp("2024-01-12"): ["a", "b"],
        pd.Timestamp("2024-01-31"): ["a", "b"],
    }
    first = snaps[snaps["cutoff"] == "2024-01-12"].set_index("customer_id")
    assert first.loc["b", "churned"] == 0  # b buys again on 01-15
    assert first.loc["b", "frequency"] == 0  # ... which the features do not see


def test_unobserved_label_window_is_refused() -> None:
    with pytest.raises(InsufficientHistoryError, match="after the last transaction"):
        make_snapshots(LOG, ["2024-03-01"], horizon_days=90)
