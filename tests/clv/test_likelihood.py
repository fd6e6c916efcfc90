"""Tests of churnguard.clv._likelihood: agreement with lifetimes, heavy buyers, closed forms."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from scipy import integrate
from scipy.special import gammaln, hyp2f1

from churnguard.clv import _likelihood as lk
from churnguard.exceptions import InputDataError

# CDNOW 1/10th-sample fits in weeks: FHL 2005's BG/NBD and Pareto/NBD (as in test_purchase),
# and MBG/NBD parameters of the same magnitude.
BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PARETO = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
MBGNBD = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
PARAMS = {"bgnbd": BGNBD, "mbgnbd": MBGNBD, "pareto": PARETO}
# A heavy-buyer regime where lifetimes' Pareto/NBD hyp2f1 form breaks down: alpha << beta.
HEAVY = {"r": 0.5, "alpha": 0.01, "s": 0.5, "beta": 1000.0}


def _patterns(rfm: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    unique = rfm[["frequency", "recency", "T"]].drop_duplicates()
    return unique["frequency"].to_numpy(), unique["recency"].to_numpy(), unique["T"].to_numpy()


def _lifetimes_ll(model: str, params: dict[str, float], x, tx, T) -> np.ndarray:
    """lifetimes' per-customer log-likelihood (its BG objectives only return a weighted mean)."""
    if model == "pareto":
        values = [params[k] for k in ("r", "alpha", "s", "beta")]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return ParetoNBDFitter._conditional_log_likelihood(values, x, tx, T)
    cls = BetaGeoFitter if model == "bgnbd" else ModifiedBetaGeoFitter
    log_params = np.log([params[k] for k in ("r", "alpha", "a", "b")])
    one = np.ones(1)
    return np.array(
        [
            -cls._negative_log_likelihood(
                log_params, np.array([xi]), np.array([ti]), np.array([Ti]), one, 0.0
            )
            for xi, ti, Ti in zip(x, tx, T, strict=True)
        ]
    )


def _hyp2f1_pareto_ll(params: dict[str, float], x, tx, T) -> np.ndarray:
    """Fader & Hardie's closed form (note 009 eq. 18-20), written out with scipy's hyp2f1."""
    r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
    big, gap = max(alpha, beta), abs(alpha - beta)
    second = s + 1 if alpha >= beta else r + x
    rsx = r + s + x
    a0 = (
        hyp2f1(rsx, second, rsx + 1, gap / (big + tx)) / (big + tx) ** rsx
        - hyp2f1(rsx, second, rsx + 1, gap / (big + T)) / (big + T) ** rsx
    )
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return common + np.log((alpha + T) ** -(r + x) * (beta + T) ** -s + s / rsx * a0)


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_log_likelihood_equals_lifetimes_on_cdnow_patterns(
    cdnow_rfm: pd.DataFrame, model: str
) -> None:
    x, tx, T = _patterns(cdnow_rfm)
    ours = lk.log_likelihood(model, PARAMS[model], x, tx, T)
    theirs = _lifetimes_ll(model, PARAMS[model], x, tx, T)
    assert np.isfinite(theirs).all()
    # the same terms in a different order: agreement to rounding (max ~3e-14 seen)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_log_likelihood_equals_lifetimes_for_random_parameters(
    cdnow_rfm: pd.DataFrame, model: str
) -> None:
    rng = np.random.default_rng(7)
    x, tx, T = _patterns(cdnow_rfm)
    names = lk.MODEL_PARAMS[model]
    for _ in range(5):
        params = dict(zip(names, 10 ** rng.uniform(-1, 1, 4), strict=True))
        theirs = _lifetimes_ll(model, params, x, tx, T)
        ours = lk.log_likelihood(model, params, x, tx, T)
        finite = np.isfinite(theirs)
        assert finite.mean() > 0.99
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-10, atol=1e-10)


def test_pareto_matches_the_hyp2f1_closed_form_where_that_is_finite() -> None:
    rng = np.random.default_rng(8)
    n = 2_000
    params = {"r": 0.8, "alpha": 6.0, "s": 0.4, "beta": 20.0}
    T = rng.uniform(1, 100, n)
    x = rng.integers(0, 60, n).astype(float)
    tx = np.where(x > 0, T * rng.uniform(size=n), 0.0)
    closed = _hyp2f1_pareto_ll(params, x, tx, T)
    ours = lk.log_likelihood("pareto", params, x, tx, T)
    assert np.isfinite(closed).all()
    np.testing.assert_allclose(ours, closed, rtol=1e-11, atol=1e-11)


def _log_integral_by_quad(x: float, tx: float, T: float, p: dict[str, float]) -> float:
    """log ∫_tx^T (α+y)^-(r+x) (β+y)^-(s+1) dy by adaptive quadrature, scaled at its start.

    The integrand can fall by e^-100 within 1/20 of a time unit of tx, so the range is split
    at geometrically growing offsets for quad to find it.
    """
    r, alpha, s, beta = (p[k] for k in ("r", "alpha", "s", "beta"))

    def log_f(y: float) -> float:
        return -(r + x) * math.log(alpha + y) - (s + 1) * math.log(beta + y)

    edges = tx + (T - tx) * np.array([0.0, 1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 1.0])
    value = sum(
        integrate.quad(
            lambda y: math.exp(log_f(y) - log_f(tx)), lo, hi, epsabs=0, epsrel=1e-10, limit=200
        )[0]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    )
    return math.log(value) + log_f(tx)


@pytest.mark.parametrize(
    ("x", "tx", "T"), [(5000.0, 4990.0, 5000.0), (1000.0, 300.0, 1000.0), (2000.0, 100.0, 5000.0)]
)
def test_heavy_buyers_stay_finite_where_lifetimes_is_nan(x: float, tx: float, T: float) -> None:
    theirs = _lifetimes_ll("pareto", HEAVY, np.array([x]), np.array([tx]), np.array([T]))
    assert np.isnan(theirs).all()  # the failure this module exists for
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert not np.isfinite(_fitter("pareto", HEAVY).conditional_probability_alive(x, tx, T))
    ours = float(lk.log_likelihood("pareto", HEAVY, x, tx, T))
    r, alpha, s, beta = HEAVY.values()
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
    alive = -(r + x) * math.log(alpha + T) - s * math.log(beta + T)
    dead = math.log(s) + _log_integral_by_quad(x, tx, T, HEAVY)
    expected = common + np.logaddexp(alive, dead)
    assert ours == pytest.approx(expected, rel=1e-11, abs=1e-9)
    assert 0 <= float(lk.p_alive("pareto", HEAVY, x, tx, T)) <= 1
    assert 0 <= float(lk.p_no_purchase("pareto", HEAVY, x, tx, T, 52.0)) <= 1


def test_heavy_buyer_grid_is_finite_for_very_different_alpha_and_beta() -> None:
    x, tx_share, T = np.meshgrid(
        [0.0, 1.0, 50.0, 500.0, 5000.0], [0.0, 0.5, 0.999, 1.0], [1.0, 100.0, 5000.0]
    )
    tx = np.where(x > 0, tx_share * T, 0.0)
    for alpha, beta in ((1e-3, 1e4), (1e4, 1e-3), (2.0, 2.0), (1.0, 1.0 + 1e-9)):
        params = {"r": 0.3, "alpha": alpha, "s": 0.2, "beta": beta}
        ll = lk.log_likelihood("pareto", params, x, tx, T)
        alive = lk.p_alive("pareto", params, x, tx, T)
        quiet = lk.p_no_purchase("pareto", params, x, tx, T, 100.0)
        assert ll.shape == x.shape
        assert np.isfinite(ll).all()
        assert ((alive >= 0) & (alive <= 1)).all()
        assert ((quiet >= 1 - alive - 1e-12) & (quiet <= 1)).all()


def test_mpmath_reference_for_extreme_patterns() -> None:
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    cases = [
        (HEAVY, 5000.0, 4990.0, 5000.0),
        ({"r": 0.3, "alpha": 1e4, "s": 0.05, "beta": 1e-3}, 3000.0, 10.0, 4000.0),
        ({"r": 8.0, "alpha": 8.0, "s": 0.04, "beta": 0.005}, 0.0, 0.0, 3400.0),
        ({"r": 2.0, "alpha": 3.0, "s": 1.5, "beta": 3.0}, 7.0, 5.0, 9.0),  # alpha == beta
    ]
    for params, x, tx, T in cases:
        r, alpha, s, beta = (mp.mpf(params[k]) for k in ("r", "alpha", "s", "beta"))
        c1, c2 = r + x, s + 1
        c = c1 + c2

        def tail(y, alpha=alpha, beta=beta, c1=c1, c2=c2, c=c):  # ∫_y^∞ via Euler-transformed 2F1
            big, small_exp, big_exp = (beta, c1, c2) if alpha < beta else (alpha, c2, c1)
            z = abs(alpha - beta) / (big + y)
            return (
                (big + y) ** (1 - c)
                / (c - 1)
                * (1 - z) ** (1 - small_exp)
                * mp.hyp2f1(1, big_exp, c, z)
            )

        common = mp.loggamma(c1) - mp.loggamma(r) + r * mp.log(alpha) + s * mp.log(beta)
        alive = (alpha + T) ** -c1 * (beta + T) ** -s
        expected = common + mp.log(alive + s * (tail(mp.mpf(tx)) - tail(mp.mpf(T))))
        ours = float(lk.log_likelihood("pareto", params, x, tx, T))
        assert ours == pytest.approx(float(expected), rel=1e-12, abs=1e-11), (params, x, tx, T)


def _fitter(model: str, params: dict[str, float]):
    cls = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter, "pareto": ParetoNBDFitter}[
        model
    ]
    fitter = cls()
    fitter.params_ = pd.Series(params)
    return fitter


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_p_alive_equals_lifetimes_on_cdnow(cdnow_rfm: pd.DataFrame, model: str) -> None:
    x, tx, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    theirs = _fitter(model, PARAMS[model]).conditional_probability_alive(x, tx, T)
    np.testing.assert_allclose(
        lk.p_alive(model, PARAMS[model], x, tx, T), theirs, rtol=1e-12, atol=1e-13
    )


def test_bgnbd_p_no_purchase_closed_form(cdnow_rfm: pd.DataFrame) -> None:
    x, tx, T = (cdnow_rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    r, alpha = BGNBD["r"], BGNBD["alpha"]
    alive = lk.p_alive("bgnbd", BGNBD, x, tx, T)
    for t in (1.0, 13.0, 39.0, 520.0):
        closed = 1 - alive + alive * ((alpha + T) / (alpha + T + t)) ** (r + x)
        np.testing.assert_allclose(
            lk.p_no_purchase("bgnbd", BGNBD, x, tx, T, t), closed, rtol=1e-13
        )


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_p_no_purchase_is_the_likelihood_ratio(cdnow_rfm: pd.DataFrame, model: str) -> None:
    """No purchase in (T, T + t] is the same observation as a window that ends at T + t."""
    x, tx, T = _patterns(cdnow_rfm)
    for t in (5.0, 39.0):
        ratio = np.exp(
            lk.log_likelihood(model, PARAMS[model], x, tx, T + t)
            - lk.log_likelihood(model, PARAMS[model], x, tx, T)
        )
        np.testing.assert_allclose(
            lk.p_no_purchase(model, PARAMS[model], x, tx, T, t), ratio, rtol=1e-11
        )


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd", "pareto"])
def test_p_no_purchase_is_one_at_zero_monotone_and_a_probability(
    cdnow_rfm: pd.DataFrame, model: str
) -> None:
    x, tx, T = _patterns(cdnow_rfm)
    params = PARAMS[model]
    assert (lk.p_no_purchase(model, params, x, tx, T, 0.0) == 1.0).all()
    curve = np.stack(
        [lk.p_no_purchase(model, params, x, tx, T, t) for t in np.linspace(0, 200, 41)]
    )
    assert ((curve >= 0) & (curve <= 1)).all()
    assert (np.diff(curve, axis=0) <= 1e-13).all()
    # far out, only the dead stay silent: the curve falls towards 1 - P(alive)
    assert (curve[-1] >= 1 - lk.p_alive(model, params, x, tx, T) - 1e-12).all()


def test_purchase_rate_if_alive_is_the_gamma_posterior_mean() -> None:
    x, T = np.array([0.0, 2.0, 40.0]), np.array([10.0, 30.0, 52.0])
    rate = lk.purchase_rate_if_alive(PARETO, x, T)
    np.testing.assert_allclose(rate, (PARETO["r"] + x) / (PARETO["alpha"] + T))
    # the same for every model: only r and alpha enter
    np.testing.assert_array_equal(
        lk.purchase_rate_if_alive(BGNBD, x, T), (BGNBD["r"] + x) / (BGNBD["alpha"] + T)
    )


def test_pattern_evaluation_equals_row_evaluation() -> None:
    rng = np.random.default_rng(9)
    n = 20_000  # above the size where patterns are used
    x = rng.integers(0, 8, n).astype(float)
    T = rng.integers(1, 30, n).astype(float)
    tx = np.where(x > 0, np.floor(T * rng.uniform(size=n)), 0.0)
    codes, (ux, utx, uT) = lk.unique_rows(x, tx, T)
    assert len(ux) < n / 5
    np.testing.assert_array_equal(ux[codes], x)
    np.testing.assert_array_equal(utx[codes], tx)
    np.testing.assert_array_equal(uT[codes], T)
    per_pattern = lk.p_no_purchase("pareto", PARETO, x, tx, T, 10.0)
    per_row = np.concatenate(
        [
            lk.p_no_purchase(
                "pareto", PARETO, x[i : i + 500], tx[i : i + 500], T[i : i + 500], 10.0
            )
            for i in range(0, n, 500)
        ]
    )
    np.testing.assert_allclose(per_pattern, per_row, rtol=1e-14)


def test_dropout_share_flags_boundary_parameters_but_not_cdnow() -> None:
    span = 78.0  # weeks of the CDNOW log
    assert lk.dropout_share("bgnbd", BGNBD, span) > 100 * 1e-3
    assert lk.dropout_share("mbgnbd", MBGNBD, span) > 100 * 1e-3
    assert lk.dropout_share("pareto", PARETO, span) > 100 * 1e-3
    # the degenerate fits seen in practice: BG/NBD a = 1e-6, Pareto/NBD s = 1e-13
    assert lk.dropout_share("bgnbd", {**BGNBD, "a": 1e-6}, span) < 1e-5
    assert lk.dropout_share("pareto", {**PARETO, "s": 1e-13}, span) < 1e-11
    # exact against the hypergeometric closed form where scipy evaluates it well
    r, alpha, a, b = BGNBD.values()
    assert lk.dropout_share("bgnbd", BGNBD, span) == pytest.approx(
        1 - hyp2f1(r, a, a + b, -span / alpha), rel=1e-10
    )
    assert lk.dropout_share("mbgnbd", BGNBD, span) == pytest.approx(
        1 - b / (a + b) * hyp2f1(r, a, a + b + 1, -span / alpha), rel=1e-10
    )
    assert lk.dropout_share("pareto", PARETO, span) == pytest.approx(
        1 - (PARETO["beta"] / (PARETO["beta"] + span)) ** PARETO["s"], rel=1e-12
    )


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(InputDataError, match="recency exceeds T"):
        lk.log_likelihood("bgnbd", BGNBD, [1.0], [5.0], [4.0])
    with pytest.raises(InputDataError, match="negative"):
        lk.p_alive("pareto", PARETO, [-1.0], [0.0], [4.0])
    with pytest.raises(InputDataError, match="missing or infinite"):
        lk.p_alive("pareto", PARETO, [1.0], [np.nan], [4.0])
    with pytest.raises(InputDataError, match="broadcast"):
        lk.p_alive("pareto", PARETO, [1.0, 2.0], [0.0, 1.0, 2.0], [4.0])
    with pytest.raises(ValueError, match="model must be one of"):
        lk.p_alive("bgbb", PARETO, [1.0], [0.0], [4.0])
    with pytest.raises(ValueError, match="missing"):
        lk.p_alive("pareto", BGNBD, [1.0], [0.0], [4.0])
    with pytest.raises(ValueError, match="> 0"):
        lk.p_alive("bgnbd", {**BGNBD, "a": 0.0}, [1.0], [0.0], [4.0])
    with pytest.raises(ValueError, match="t must be"):
        lk.p_no_purchase("bgnbd", BGNBD, [1.0], [0.0], [4.0], -1.0)
