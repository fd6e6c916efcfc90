"""The value candidates: how each predicts a window's spend, and how one is chosen."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import churnguard.model.value_choice as vc
from churnguard.exceptions import InputDataError


class _Spend:
    """A stand-in for the fitted spend model: returns a fixed column."""

    def __init__(self, column: str) -> None:
        self.column = column

    def predict(self, frame: pd.DataFrame, num_threads: int | None = None) -> np.ndarray:
        return frame[self.column].to_numpy(dtype=float)


def _rows(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose true spend-if-active is known; BTYD's spend is that plus heavy noise."""
    rng = np.random.default_rng(seed)
    active_spend = rng.gamma(2.0, 50.0, n)
    p_active = rng.uniform(0.05, 0.95, n)
    bought = rng.random(n) < p_active
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "expected_purchases": p_active,
            "expected_spend": active_spend * rng.lognormal(0.0, 1.0, n),
            "truth": active_spend,
            "noise": rng.gamma(2.0, 50.0, n),
            vc.ACTIVE_SPEND: active_spend * rng.lognormal(0.0, 1.0, n),
            "future_purchases": bought.astype(int),
            "future_spend": np.where(bought, active_spend, 0.0),
        }
    )
    return frame, 1.0 - p_active


def test_window_value_of_each_candidate() -> None:
    frame = pd.DataFrame(
        {
            "expected_purchases": [2.0, 1.0, 0.5],
            "expected_spend": [10.0, 20.0, np.nan],
            "learned": [30.0, np.inf, 8.0],
        }
    )
    p = np.array([0.5, 0.2, 0.9])
    spend = _Spend("learned")
    btyd = vc.window_value("btyd", frame, p, spend)
    np.testing.assert_allclose(btyd, [20.0, 20.0, 0.0])  # a missing spend counts as 0
    hurdle = vc.window_value("hurdle", frame, p, spend)
    # (1 - p) x learned spend; a non-finite one falls back to BTYD's answer
    np.testing.assert_allclose(hurdle, [15.0, 20.0, 0.8])
    np.testing.assert_allclose(vc.window_value("blend", frame, p, spend), (btyd + hurdle) / 2)
    # without a spend model every candidate is BTYD x Gamma-Gamma
    np.testing.assert_allclose(vc.window_value("hurdle", frame, p, None), btyd)


def test_btyd_window_value_is_net_of_each_customers_returns() -> None:
    frame = pd.DataFrame(
        {
            "expected_purchases": [2.0, 1.0, 1.0],
            "expected_spend": [10.0, 20.0, 30.0],
            "total_spend": [100.0, 30.0, -5.0],
            "returned_amount": [0.0, 10.0, 40.0],
            "learned": [np.inf, np.inf, np.inf],
        }
    )
    p = np.array([0.5, 0.2, 0.9])
    btyd = vc.window_value("btyd", frame, p, None)
    np.testing.assert_allclose(btyd, [20.0, 20.0 * 0.75, 0.0])
    # the hurdle's fallback is the net answer too
    np.testing.assert_allclose(vc.window_value("hurdle", frame, p, _Spend("learned")), btyd)


class _Purchases:
    def expected_purchases_if_alive_arrays(self, horizon: float, *rfm: np.ndarray) -> np.ndarray:
        return np.full(len(rfm[0]), 2.0)


def test_active_spend_is_net_of_each_customers_returns() -> None:
    frame = pd.DataFrame(
        {
            "frequency": [3.0, 3.0],
            "recency": [10.0, 10.0],
            "T": [20.0, 20.0],
            "expected_purchases": [1.0, 1.0],
            "p_no_purchase": [0.5, 0.5],
            "expected_spend": [40.0, 40.0],
            "total_spend": [80.0, 80.0],
        }
    )
    gross = frame.assign(returned_amount=[0.0, 0.0])
    net = frame.assign(returned_amount=[0.0, 20.0])  # kept 80 of 100
    vc.add_active_spend(gross, 13.0, _Purchases())
    vc.add_active_spend(net, 13.0, _Purchases())
    np.testing.assert_allclose(net[vc.ACTIVE_SPEND], gross[vc.ACTIVE_SPEND] * [1.0, 0.8])


def test_value_ratio_scales_the_clv_columns_by_the_learned_correction() -> None:
    frame = pd.DataFrame({vc.ACTIVE_SPEND: [10.0, 10.0, np.nan], "learned": [20.0, 500.0, 5.0]})
    spend = _Spend("learned")
    np.testing.assert_array_equal(vc.value_ratio("btyd", frame, spend), [1.0, 1.0, 1.0])
    # clipped at 10x; 1 where the structural spend is missing
    np.testing.assert_allclose(vc.value_ratio("hurdle", frame, spend), [2.0, 10.0, 1.0])
    np.testing.assert_allclose(vc.value_ratio("blend", frame, spend), [1.5, 5.5, 1.0])


def test_a_learned_spend_that_knows_more_wins_and_states_its_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, p = _rows()
    monkeypatch.setattr(vc, "fit_spend_model", lambda *a, **k: _Spend("truth"))
    out = vc.compare_value_candidates(rows, rows, rows, p, ["truth"])
    assert out.chosen in ("hurdle", "blend")
    assert out.table.loc[out.chosen, "gini"] > out.table.loc["btyd", "gini"] + 0.002
    assert "validation total was" in out.reason and "off the observed revenue" in out.reason
    assert "before the spend level of the scoring date is set" in out.reason
    assert list(out.table.index) == list(vc.VALUE_CANDIDATES)


def test_a_learned_spend_that_knows_nothing_falls_back_to_btyd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, p = _rows(seed=1)
    # BTYD's spend is informative here; the learned one is independent noise
    rows["expected_spend"] = rows["truth"]
    monkeypatch.setattr(vc, "fit_spend_model", lambda *a, **k: _Spend("noise"))
    out = vc.compare_value_candidates(rows, rows, rows, p, ["noise"])
    assert out.chosen == "btyd"
    assert out.reason.startswith("no learned value candidate beat")


def test_a_spend_model_that_cannot_be_fitted_keeps_btyd(monkeypatch: pytest.MonkeyPatch) -> None:
    rows, p = _rows(n=200)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise InputDataError("no window with a purchase")

    monkeypatch.setattr(vc, "fit_spend_model", fail)
    out = vc.compare_value_candidates(rows, rows, rows, p, ["truth"])
    assert out.chosen == "btyd"
    assert out.table.empty
    assert "could not be fitted (no window with a purchase)" in out.reason


def test_window_value_reads_the_share_the_features_were_built_with() -> None:
    """A scored frame carries its expected kept share; the raw one is not recomputed."""
    frame = pd.DataFrame(
        {
            "expected_purchases": [2.0, 1.0],
            "expected_spend": [10.0, 20.0],
            "total_spend": [100.0, -5.0],
            "returned_amount": [0.0, 40.0],
            "kept_share": [0.9, 0.3],
        }
    )
    p = np.array([0.5, 0.2])
    np.testing.assert_allclose(vc.window_value("btyd", frame, p, None), [18.0, 6.0])


def _calibration_rows(n: int = 40) -> pd.DataFrame:
    """Two cutoffs; at the latest, half the customers buy in the window."""
    ids = [f"c{i}" for i in range(n)]
    late = pd.DataFrame(
        {"cutoff": pd.Timestamp("2024-03-02"), "customer_id": ids,
         "future_purchases": [1, 0] * (n // 2), vc.ACTIVE_SPEND: 20.0}
    )  # fmt: skip
    early = late.assign(cutoff=pd.Timestamp("2024-02-03"), **{vc.ACTIVE_SPEND: 1.0})
    return pd.concat([early, late], ignore_index=True)


def test_the_base_shift_compares_both_fits_on_the_latest_active_customers() -> None:
    rows = _calibration_rows()
    final = pd.DataFrame({"customer_id": rows["customer_id"].unique()})
    # The final fit puts the active customers at 50 against their cutoff fit's 20;
    # inactive customers and the earlier cutoff do not count.
    final[vc.ACTIVE_SPEND] = np.where(np.arange(len(final)) % 2 == 0, 50.0, 999.0)
    assert vc.spend_base_shift(rows, final) == pytest.approx(2.5)
    assert "x2.50" in vc.base_shift_note(2.5) and "divided" in vc.base_shift_note(2.5)
    # The same scale, or within the band: no shift, and a note that says so.
    assert vc.spend_base_shift(rows, final.assign(**{vc.ACTIVE_SPEND: 20.0})) == 1.0
    assert vc.spend_base_shift(rows, final.assign(**{vc.ACTIVE_SPEND: 24.0})) == 1.0
    assert vc.spend_base_shift(rows, final.assign(**{vc.ACTIVE_SPEND: 14.0})) == pytest.approx(0.7)
    assert "within 25%" in vc.base_shift_note(1.0)
    # Bounded, and too few customers to measure it keep the spend as learned.
    assert vc.spend_base_shift(rows, final.assign(**{vc.ACTIVE_SPEND: 1e4})) == 4.0
    few = _calibration_rows(20)
    assert vc.spend_base_shift(few, final) == 1.0


def test_the_spend_model_divides_its_predictions_by_the_base_shift() -> None:
    from churnguard.clv.learned import WindowSpendModel

    rows, _ = _rows(600)
    active = rows.loc[rows["future_purchases"] > 0]
    features = [vc.ACTIVE_SPEND, "noise"]
    half = len(active) // 2
    model = WindowSpendModel(base=vc.ACTIVE_SPEND, lgbm_params={"n_estimators": 20}).fit(
        active[features].iloc[:half], active["future_spend"].iloc[:half],
        active[features].iloc[half:], active["future_spend"].iloc[half:],
        groups=active["customer_id"].iloc[:half], groups_cal=active["customer_id"].iloc[half:],
    )  # fmt: skip
    assert model.base_shift_ == 1.0
    before = model.predict(active[features])
    model.base_shift_ = 2.0
    np.testing.assert_allclose(model.predict(active[features]), before / 2.0)


def test_the_base_shift_needs_only_a_sample_of_the_latest_active_customers() -> None:
    rows = _calibration_rows(40)
    ids = vc.base_shift_customers(rows)
    assert sorted(ids) == sorted(f"c{i}" for i in range(0, 40, 2))  # active, latest cutoff
    few = vc.base_shift_customers(rows, limit=5, random_state=1)
    assert len(few) == 5 and set(few) <= set(ids)
    np.testing.assert_array_equal(few, vc.base_shift_customers(rows, limit=5, random_state=1))
    # Measured on the sample alone, the ratio is the same when the shift is uniform.
    final = pd.DataFrame({"customer_id": few, vc.ACTIVE_SPEND: 50.0})
    assert vc.spend_base_shift(_calibration_rows(200), final.iloc[:0]) == 1.0  # none: kept
    big = _calibration_rows(200)
    sample = vc.base_shift_customers(big, limit=30)
    final = pd.DataFrame({"customer_id": sample, vc.ACTIVE_SPEND: 50.0})
    assert vc.spend_base_shift(big, final) == pytest.approx(2.5)
