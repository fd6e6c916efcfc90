"""The Pareto/NBD expectation curve is lifetimes' conditional expectation, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter

from churnguard.clv._pareto_curve import pareto_expected_curve

# CDNOW's published fit (Fader, Hardie & Lee 2005, "Counting your customers" the easy
# way) and two other shapes, one with s < 1.
PARAMS = [
    {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
    {"r": 2.0, "alpha": 30.0, "s": 1.7, "beta": 5.0},
    {"r": 0.3, "alpha": 2.0, "s": 0.2, "beta": 80.0},
]


def _fitter(params: dict[str, float]) -> ParetoNBDFitter:
    fitter = ParetoNBDFitter()
    fitter.params_ = pd.Series(params)
    return fitter


def _customers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 80, n).astype(float)
    x = rng.poisson(3, n).astype(float)
    tx = np.where(x > 0, np.floor(rng.uniform(0, 1, n) * T), 0.0)
    x[:20] = rng.integers(300, 3000, 20)  # heavy buyers: lifetimes' likelihood overflows
    return x, tx, T


def _lifetimes(fitter: ParetoNBDFitter, t: float, x, tx, T) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = fitter.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)
    return np.asarray(out, dtype=float)


@pytest.mark.parametrize("params", PARAMS)
def test_curve_is_lifetimes_bit_for_bit(params: dict[str, float]) -> None:
    fitter = _fitter(params)
    x, tx, T = _customers(3000, 0)
    horizons = [4.3 * i for i in range(1, 13)] + [500.0]
    got = pareto_expected_curve(fitter, horizons, x, tx, T)
    assert len(got) == len(horizons)
    for t, values in zip(horizons, got, strict=True):
        # assert_array_equal treats NaN == NaN: the overflowing rows agree too
        np.testing.assert_array_equal(values, _lifetimes(fitter, t, x, tx, T))


def test_purchase_model_curve_matches_single_horizons_and_stays_finite(
    cdnow_rfm: pd.DataFrame,
) -> None:
    from churnguard.clv.purchase import PurchaseModel

    rfm = cdnow_rfm.copy()
    rfm.loc[rfm.index[:3], "frequency"] = [400.0, 900.0, 2500.0]  # non-finite in lifetimes
    rfm.loc[rfm.index[:3], "recency"] = rfm.loc[rfm.index[:3], "T"]  # bought at the end
    model = PurchaseModel("pareto").fit(cdnow_rfm)
    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    horizons = [4.0, 8.0, 52.0]
    curve = model.expected_purchases_curve(horizons, x, tx, T)
    for t, values in zip(horizons, curve, strict=True):
        assert np.isfinite(values).all()
        np.testing.assert_array_equal(values, model.expected_purchases_arrays(t, x, tx, T))
        plain = _lifetimes(model.fitter_, t, x, tx, T)
        ok = np.isfinite(plain)
        assert not ok[:3].all()  # the heavy buyers did need the stable form
        np.testing.assert_array_equal(values[ok], plain[ok])
