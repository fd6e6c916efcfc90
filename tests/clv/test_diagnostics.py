"""Tests of churnguard.clv.diagnostics: the numbers behind each plot, and the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from churnguard.clv.diagnostics import (
    calibration_holdout_table,
    cumulative_tracking_table,
    p_alive_matrix,
    plot_calibration_holdout,
    plot_cumulative_tracking,
    plot_p_alive_matrix,
)
from churnguard.clv.purchase import PurchaseModel
from churnguard.exceptions import InputDataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bgnbd(cdnow_rfm: pd.DataFrame) -> PurchaseModel:
    return PurchaseModel("bgnbd").fit(cdnow_rfm)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_calibration_holdout_table_buckets(
    cdnow_rfm: pd.DataFrame, cdnow_cal_holdout: pd.DataFrame, bgnbd: PurchaseModel
) -> None:
    holdout = cdnow_cal_holdout["frequency_holdout"]
    table = calibration_holdout_table(cdnow_rfm, holdout, bgnbd, 39.0)
    assert table.index.tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert table["n_customers"].sum() == len(cdnow_rfm)
    top = cdnow_rfm["frequency"].to_numpy() >= 7
    assert table.loc["7+", "actual"] == pytest.approx(holdout[top].mean())
    zero = cdnow_rfm["frequency"].to_numpy() == 0
    assert table.loc["0", "predicted"] == pytest.approx(
        bgnbd.expected_purchases(cdnow_rfm[zero], 39.0).mean()
    )


def test_plot_calibration_holdout_reads_duration_column(
    cdnow_rfm: pd.DataFrame, cdnow_cal_holdout: pd.DataFrame, bgnbd: PurchaseModel, tmp_path: Path
) -> None:
    rfm = cdnow_rfm.assign(duration_holdout=cdnow_cal_holdout["duration_holdout"])
    out = plot_calibration_holdout(
        rfm, cdnow_cal_holdout["frequency_holdout"], bgnbd, tmp_path / "sub" / "cal.png"
    )
    assert out == tmp_path / "sub" / "cal.png"
    assert _is_png(out)
    with pytest.raises(InputDataError, match="holdout_length"):
        plot_calibration_holdout(
            cdnow_rfm, cdnow_cal_holdout["frequency_holdout"], bgnbd, tmp_path / "x.png"
        )


@pytest.mark.parametrize("day", ["1997-09-30", "1998-06-30"])
def test_tracking_table_agrees_with_rfm_summaries(
    cdnow_transactions: pd.DataFrame, bgnbd: PurchaseModel, day: str
) -> None:
    table = cumulative_tracking_table(cdnow_transactions, bgnbd, calibration_end="1997-09-30")
    summary = summary_data_from_transaction_data(
        cdnow_transactions,
        "customer_id",
        "date",
        observation_period_end=day,
        freq="D",
        freq_multiplier=7,
    )
    row = table.loc[pd.Timestamp(day)]
    assert row["actual"] == summary["frequency"].sum()
    assert row["expected"] == pytest.approx(bgnbd.expected_purchases_new(summary["T"]).sum())
    assert table["actual"].is_monotonic_increasing
    assert table["expected"].is_monotonic_increasing


def test_tracking_cohort_excludes_later_customers(bgnbd: PurchaseModel) -> None:
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                ["2020-01-01", "2020-01-01", "2020-01-08", "2020-01-10", "2020-01-12"]
            ),
        }
    )
    cohort = cumulative_tracking_table(tx, bgnbd, calibration_end="2020-01-05", time_unit="D")
    everyone = cumulative_tracking_table(tx, bgnbd, time_unit="D")
    # two transactions on one day are one occasion; b is born after the calibration end
    assert cohort["actual"].iloc[-1] == 1
    assert everyone["actual"].iloc[-1] == 2
    assert cohort["expected"].iloc[-1] == pytest.approx(float(bgnbd.expected_purchases_new(7.0)))


def test_plot_cumulative_tracking_writes_png(
    cdnow_transactions: pd.DataFrame, bgnbd: PurchaseModel, tmp_path: Path
) -> None:
    out = plot_cumulative_tracking(cdnow_transactions, bgnbd, "1997-09-30", tmp_path / "t.png")
    assert _is_png(out)


@pytest.mark.parametrize("key", ["bgnbd", "pareto"])
def test_p_alive_matrix_matches_lifetimes(cdnow_rfm: pd.DataFrame, key: str) -> None:
    model = PurchaseModel(key).fit(cdnow_rfm)
    ours = p_alive_matrix(model, max_frequency=8, max_recency=20)
    theirs = model.fitter_.conditional_probability_alive_matrix(max_frequency=8, max_recency=20)
    assert ours.shape == (21, 9)
    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-10)


def test_plot_p_alive_matrix_defaults_to_fitted_ranges(
    bgnbd: PurchaseModel, tmp_path: Path
) -> None:
    assert p_alive_matrix(bgnbd).shape == (int(bgnbd.max_T_) + 1, int(bgnbd.max_frequency_) + 1)
    assert _is_png(plot_p_alive_matrix(bgnbd, tmp_path / "p.png"))
    unfitted = PurchaseModel.from_params(bgnbd.params_)
    with pytest.raises(ValueError, match="pass it explicitly"):
        plot_p_alive_matrix(unfitted, tmp_path / "q.png")
