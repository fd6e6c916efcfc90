"""The BG/NBD expectation curve is lifetimes' conditional expectation, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from scipy.special import hyp2f1

from churnguard.clv._bgnbd_curve import bgnbd_expected_curve

# CDNOW's published fit (Fader, Hardie & Lee 2005) and two other shapes.
PARAMS = [
    {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    {"r": 0.426, "alpha": 1.481, "a": 0.746, "b": 6.463},
    {"r": 2.0, "alpha": 30.0, "a": 3.0, "b": 0.5},
]


def _customers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 80, n).astype(float)
    x = rng.poisson(3, n).astype(float)
    tx = np.where(x > 0, np.floor(rng.uniform(0, 1, n) * T), 0.0)
    x[:20] = rng.integers(300, 3000, 20)  # heavy buyers: the first 2F1 form overflows
    return x, tx, T


def _lifetimes(params: dict[str, float], t: float, x, tx, T) -> np.ndarray:
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series(params)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = fitter.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T)
    return np.asarray(out, dtype=float)


@pytest.mark.parametrize("params", PARAMS)
def test_curve_is_lifetimes_bit_for_bit(params: dict[str, float]) -> None:
    x, tx, T = _customers(5000, 0)
    horizons = [4.3 * i for i in range(1, 13)] + [500.0]
    got = list(bgnbd_expected_curve(params, horizons, x, tx, T))
    assert len(got) == len(horizons)
    for t, values in zip(horizons, got, strict=True):
        np.testing.assert_array_equal(values, _lifetimes(params, t, x, tx, T))


def test_the_fallback_form_is_exercised() -> None:
    params = PARAMS[0]
    x, tx, T = _customers(5000, 1)
    t = 500.0
    z = t / (params["alpha"] + T + t)
    with np.errstate(all="ignore"):
        first = np.log(
            hyp2f1(params["r"] + x, params["b"] + x, params["a"] + params["b"] + x - 1, z)
        )
    assert np.isinf(first).any()  # else the test above would not cover the fallback
    (values,) = bgnbd_expected_curve(params, [t], x, tx, T)
    assert np.isfinite(values[np.isinf(first)]).any()


def test_purchase_model_curve_matches_single_horizons(cdnow_rfm: pd.DataFrame) -> None:
    from churnguard.clv.purchase import PurchaseModel

    model = PurchaseModel("bgnbd").fit(cdnow_rfm)
    x, tx, T = (cdnow_rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    horizons = [4.0, 8.0, 12.0]
    curve = model.expected_purchases_curve(horizons, x, tx, T)
    params = {k: float(model.fitter_.params_[k]) for k in ("r", "alpha", "a", "b")}
    for t, values in zip(horizons, curve, strict=True):
        np.testing.assert_array_equal(values, _lifetimes(params, t, x, tx, T))
        np.testing.assert_array_equal(values, model.expected_purchases_arrays(t, x, tx, T))
