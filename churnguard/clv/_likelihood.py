"""Numerically stable individual-level likelihoods of the BG/NBD, MBG/NBD and Pareto/NBD models.

Each model's likelihood of one customer's history ``(x, tx, T)`` (repeat purchases, age at the
last one, age at the end of observation) splits into a common factor and two terms::

    L(x, tx, T) = C(x) * [E(x, T) + D(x, tx, T)]

``E`` is the probability (density) of the history *and* of being alive at ``T``; ``D`` is that
of the history and of having dropped out after the last purchase. Everything here is computed
from ``log C``, ``log E`` and ``log D``, so that::

    P(alive at T)                 = E / (E + D)
    P(no purchase in (T, T + t])  = L(x, tx, T + t) / L(x, tx, T)

The second identity is exact for all three models: observing no purchase in ``(T, T + t]`` is
the same event as an observation window that ends at ``T + t`` with no new purchase.

BG/NBD (Fader, Hardie & Lee 2005, eq. 6 and the note "Implementing the BG/NBD model")::

    C = Γ(r+x)/Γ(r) α^r B(a, b+x)/B(a, b)
    E = (α+T)^-(r+x)
    D = [x > 0] a/(b+x-1) (α+tx)^-(r+x)

MBG/NBD (Batislam, Denizel & Filiztekin 2007, as ``lifetimes`` implements it: a customer can
also drop out right after the first purchase, so ``D`` has no ``x > 0`` condition)::

    C = Γ(r+x)/Γ(r) α^r B(a, b+x+1)/B(a, b)
    E = (α+T)^-(r+x)
    D = a/(b+x) (α+tx)^-(r+x)

Pareto/NBD (Fader, Hardie & Lee 2005, "A note on implementing the Pareto/NBD model in
MATLAB"; integrating the individual likelihood over λ ~ Gamma(r, α), μ ~ Gamma(s, β))::

    C = Γ(r+x)/Γ(r) α^r β^s
    E = (α+T)^-(r+x) (β+T)^-s
    D = s ∫_tx^T (α+y)^-(r+x) (β+y)^-(s+1) dy

The usual closed form of that integral is a difference of two Gauss hypergeometric functions
(``lifetimes``, pymc-marketing and CLVTools all evaluate it with ``hyp2f1``). For heavy buyers
(``r + x`` in the thousands) and ``α``, ``β`` of very different sizes, ``hyp2f1`` overflows or
loses all precision and the difference cancels catastrophically, so the log-likelihood comes
out NaN or wrong. Here the integral is computed directly, in log space, by Gauss-Legendre
quadrature in ``v = log(min(α, β) + y)``: see `churnguard.clv._pareto_integral`. Against a
100-digit ``mpmath`` evaluation of the closed form, over ``x`` up to 5,000, ``T`` up to 5,000,
``α`` and ``β`` from 1e-4 to 1e5 and ``s`` down to 1e-4, the log-likelihood is off by 1e-16
relative typically and 4e-14 at worst (rounding of the large logs themselves).

Functions evaluate on the unique ``(x, tx, T)`` patterns and broadcast back when that is
cheaper (customer bases have far fewer patterns than customers). All times are in the
model's time unit.

This module holds the formulas (``log C``, ``log E``, ``log D``) and what is computed from
them per customer, plus the population dropout share; the checks and pattern grouping they
share with the fitters are in `churnguard.clv._likelihood_inputs`, the quadrature in
`churnguard.clv._pareto_integral`. Both are re-exported here under their former names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.special import betaln, expit, gammaln

from churnguard.clv._likelihood_inputs import (
    MODEL_PARAMS,
    check_arrays,
    check_model,
    on_patterns,
    unique_rows,
)
from churnguard.clv._pareto_integral import log_pareto_integral, pareto_integral_nodes

__all__ = [
    "MODEL_PARAMS",
    "check_arrays",
    "dropout_share",
    "log_likelihood",
    "p_alive",
    "p_no_purchase",
    "pareto_expected_purchases",
    "pareto_integral_nodes",
    "purchase_rate_if_alive",
    "unique_rows",
]


def _log_common(model: str, p: dict[str, float], x: np.ndarray) -> np.ndarray:
    """``log C`` of the module docstring (depends on ``x`` only)."""
    r = p["r"]
    log_c = gammaln(r + x) - gammaln(r) + r * math.log(p["alpha"])
    if model == "pareto":
        return log_c + p["s"] * math.log(p["beta"])
    a, b = p["a"], p["b"]
    shift = 0.0 if model == "bgnbd" else 1.0
    return log_c + betaln(a, b + x + shift) - betaln(a, b)


def _log_alive_dead(
    model: str, p: dict[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(log E, log D)`` of the module docstring, elementwise on 1-d arrays."""
    r, alpha = p["r"], p["alpha"]
    rx = r + x
    log_e = -rx * np.log(alpha + T)
    if model == "pareto":
        s, beta = p["s"], p["beta"]
        log_e -= s * np.log(beta + T)
        log_d = math.log(s) + log_pareto_integral(tx, T, rx, s + 1.0, alpha, beta)
    elif model == "bgnbd":
        a, b = p["a"], p["b"]
        # no repeat purchase, no chance yet to drop out: D = 0
        log_d = np.where(
            x > 0,
            math.log(a) - np.log(b + np.maximum(x, 1) - 1) - rx * np.log(alpha + tx),
            -np.inf,
        )
    else:
        a, b = p["a"], p["b"]
        log_d = math.log(a) - np.log(b + x) - rx * np.log(alpha + tx)
    return log_e, log_d


def _log_alive_odds(
    model: str, p: dict[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(log E - log D, log E)``; ``log E`` only for Pareto/NBD (``None`` otherwise).

    For the BG models the odds are written as ``log((b+x-1)/a) - (r+x) log1p((T-tx)/(α+tx))``
    (``b+x`` for MBG/NBD), which does not form ``log E`` and ``log D`` separately (two large
    numbers whose difference is wanted) and costs about what lifetimes' expression does.
    """
    if model == "pareto":
        log_e, log_d = _log_alive_dead(model, p, x, tx, T)
        return log_e - log_d, log_e
    a, b = p["a"], p["b"]
    stretch = -(p["r"] + x) * np.log1p((T - tx) / (p["alpha"] + tx)) - math.log(a)
    if model == "mbgnbd":
        return stretch + np.log(b + x), None
    # no repeat purchase, no chance yet to drop out: D = 0, odds infinite
    return np.where(x > 0, stretch + np.log(b + np.maximum(x, 1) - 1), np.inf), None


def _log_stay_quiet_if_alive(
    model: str,
    p: dict[str, float],
    x: np.ndarray,
    T: np.ndarray,
    t: float,
    log_e: np.ndarray | None,
) -> np.ndarray:
    """log P(no purchase in (T, T+t] | alive at T, history).

    For the BG models only the alive term depends on T, so this is ``E(T+t)/E(T)``: the
    probability that a Gamma(r+x, α+T) rate gives no event in ``t``; a purchase followed by
    dropping out is still a purchase. For Pareto/NBD the customer may also die quietly in
    ``(T, T+t]``, which adds ``D(T, T+t) / E(T)``.
    """
    rx = p["r"] + x
    log_ratio = -rx * np.log1p(t / (p["alpha"] + T))
    if model != "pareto":
        return log_ratio
    if log_e is None:
        raise TypeError("Pareto/NBD needs log E(T) to weigh dying quietly against staying.")
    s, beta = p["s"], p["beta"]
    log_ratio = log_ratio - s * np.log1p(t / (beta + T))
    # dying quietly in (T, T+t] does not depend on tx: integrate once per (x, T) pair
    codes, (ux, uT) = unique_rows(x, T)
    log_die = log_pareto_integral(uT, uT + t, p["r"] + ux, s + 1.0, p["alpha"], beta)[codes]
    log_die = log_die + math.log(s)
    return np.minimum(np.logaddexp(log_ratio, log_die - log_e), 0.0)


def log_likelihood(
    model: str,
    params: Mapping[str, float],
    x: np.ndarray | float,
    tx: np.ndarray | float,
    T: np.ndarray | float,
) -> np.ndarray:
    """Individual log-likelihood of each customer's ``(x, tx, T)``, constants included.

    Parameters
    ----------
    model : {"bgnbd", "mbgnbd", "pareto"}
        Which model.
    params : mapping of str to float
        ``r, alpha, a, b`` (BG/NBD, MBG/NBD) or ``r, alpha, s, beta`` (Pareto/NBD), all > 0.
    x, tx, T : array_like
        Repeat purchases, age at the last one, age at the end of observation (broadcast).

    Returns
    -------
    numpy.ndarray
        ``log L`` per customer, in the broadcast shape. It is the log of a density in the
        purchase times, so it can be positive. Equals lifetimes' per-customer value for all
        three models where that is finite (lifetimes drops no constant either), and stays
        finite for heavy buyers where lifetimes' Pareto/NBD ``hyp2f1`` form does not.

    Raises
    ------
    ValueError
        Unknown model or missing/non-positive parameters.
    churnguard.exceptions.InputDataError
        Non-finite or negative data, or recency > T.
    """
    p = check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        log_e, log_d = _log_alive_dead(model, p, x1, tx1, T1)
        return _log_common(model, p, x1) + np.logaddexp(log_e, log_d)

    return on_patterns(func, freq, rec, age, costly=model == "pareto")


def p_alive(
    model: str,
    params: Mapping[str, float],
    x: np.ndarray | float,
    tx: np.ndarray | float,
    T: np.ndarray | float,
) -> np.ndarray:
    """Probability that each customer is alive at ``T`` given ``(x, tx, T)``: ``E / (E + D)``.

    Computed as ``expit(log E - log D)``, so it is exact to rounding at both ends (a heavy
    buyer with a long silence gets a tiny but positive value, never NaN). BG/NBD gives 1 at
    ``x = 0``. Arguments, returns and errors as in `log_likelihood`.
    """
    p = check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        return expit(_log_alive_odds(model, p, x1, tx1, T1)[0])

    return on_patterns(func, freq, rec, age, costly=model == "pareto")


def p_no_purchase(
    model: str,
    params: Mapping[str, float],
    x: np.ndarray | float,
    tx: np.ndarray | float,
    T: np.ndarray | float,
    t: float,
) -> np.ndarray:
    """P(no purchase in ``(T, T + t]`` | history): ``L(x, tx, T + t) / L(x, tx, T)``.

    Evaluated without forming the ratio of two likelihoods, as::

        1 - P(alive) * (1 - P(no purchase in (T, T+t] | alive at T))

    with both factors from the log terms (``-expm1`` keeps small probabilities of buying
    exact). For BG/NBD this is ``1 - P(alive) + P(alive) ((α+T)/(α+T+t))^(r+x)``.

    Parameters
    ----------
    model, params, x, tx, T
        As in `log_likelihood`.
    t : float
        Horizon in the model's time unit, >= 0. ``t = 0`` gives exactly 1.

    Returns
    -------
    numpy.ndarray
        Probabilities in [0, 1], non-increasing in ``t``.
    """
    p = check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)
    horizon = float(t)
    if not math.isfinite(horizon) or horizon < 0:
        raise ValueError(f"t must be a finite number >= 0 (model time unit), got {t}.")

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        log_odds, log_e = _log_alive_odds(model, p, x1, tx1, T1)
        alive = expit(log_odds)
        buys_if_alive = -np.expm1(_log_stay_quiet_if_alive(model, p, x1, T1, horizon, log_e))
        return np.clip(1.0 - alive * buys_if_alive, 0.0, 1.0)

    return on_patterns(func, freq, rec, age, costly=model == "pareto")


def purchase_rate_if_alive(
    params: Mapping[str, float], x: np.ndarray | float, T: np.ndarray | float
) -> np.ndarray:
    """E[λ | alive at T, history] = ``(r + x) / (α + T)``, the same for all three models.

    Derivation: in each model the individual likelihood of the history *and* being alive at
    ``T`` is ``λ^x e^{-λT}`` times a factor free of ``λ`` (``(1-p)^x`` for BG/NBD,
    ``(1-p)^(x+1)`` for MBG/NBD, ``e^{-μT}`` for Pareto/NBD), and the recency drops out
    because an alive customer's last purchase says nothing more. With the Gamma(r, α) prior
    the posterior of ``λ`` given alive is Gamma(r + x, α + T), whose mean this is. A customer
    who is kept alive over ``(T, T + t]`` then buys ``t (r + x) / (α + T)`` times in
    expectation.

    Parameters
    ----------
    params : mapping of str to float
        Needs ``r`` and ``alpha`` (> 0); other keys are ignored.
    x, T : array_like
        Repeat purchases and age at the end of observation (broadcast).

    Returns
    -------
    numpy.ndarray
        Purchases per time unit, in the broadcast shape.
    """
    r, alpha = (float(params[k]) for k in ("r", "alpha"))
    if not (math.isfinite(r) and math.isfinite(alpha) and r > 0 and alpha > 0):
        raise ValueError(f"r and alpha must be finite and > 0, received r={r}, alpha={alpha}.")
    freq, _, age = check_arrays(x, 0.0, T)
    return (r + freq) / (alpha + age)


def pareto_expected_purchases(
    params: Mapping[str, float],
    x: np.ndarray | float,
    tx: np.ndarray | float,
    T: np.ndarray | float,
    t: float,
) -> np.ndarray:
    """Pareto/NBD conditional expected purchases in ``(T, T + t]`` with the stable P(alive).

    ``P(alive) (r+x)/(α+T) E[min(t, lifetime left) | alive]``, where the remaining lifetime
    under μ ~ Gamma(s, β + T) gives ``(β+T)/(s-1) [1 - ((β+T)/(β+T+t))^(s-1)]`` (Fader &
    Hardie's note 009, eq. 41; the limit ``(β+T) log((β+T+t)/(β+T))`` at ``s = 1``, where
    lifetimes' form divides 0 by 0).

    Parameters
    ----------
    params : mapping of str to float
        ``r, alpha, s, beta``.
    x, tx, T : array_like
        Repeat purchases, recency, age (broadcast).
    t : float
        Horizon, >= 0.

    Returns
    -------
    numpy.ndarray
        Expected purchases, in the broadcast shape.
    """
    p = check_model("pareto", params)
    freq, rec, age = check_arrays(x, tx, T)
    horizon = float(t)
    if not math.isfinite(horizon) or horizon < 0:
        raise ValueError(f"t must be a finite number >= 0 (model time unit), got {t}.")
    s, beta = p["s"], p["beta"]
    log_growth = np.log1p(horizon / (beta + age))
    # E[min(t, remaining life)] / (β+T): -expm1 keeps it exact for s near 1 (not at s = 1)
    life = log_growth if s == 1.0 else -np.expm1(-(s - 1.0) * log_growth) / (s - 1.0)
    alive = p_alive("pareto", p, freq, rec, age)
    return alive * (p["r"] + freq) / (p["alpha"] + age) * (beta + age) * life


# Purchase occasions summed term by term in `dropout_share`; the negative-binomial tail beyond
# is bounded with Jensen's inequality instead (real fits need < 10^3 terms).
_MAX_OCCASIONS = 200_000


def dropout_share(model: str, params: Mapping[str, float], t: float) -> float:
    """Share of new customers the model expects to have dropped out by age ``t``.

    Parameters
    ----------
    model : {"bgnbd", "mbgnbd", "pareto"}
        Which model.
    params : mapping of str to float
        The model's parameters (see `log_likelihood`).
    t : float
        Age in the model's time unit, >= 0 (NaN gives NaN).

    Returns
    -------
    float
        ``P(dead at t)`` for a customer drawn from the population at their first purchase.
        Pareto/NBD: ``1 - (β/(β+t))^s``. BG/NBD: a customer who would make ``n`` repeat
        purchases by ``t`` if immortal survives them all with probability
        ``E[(1-p)^n] = B(a, b+n)/B(a, b)``; this is averaged over the NBD(r, α) distribution
        of ``n``. MBG/NBD adds the chance to drop out at time 0 (``B(a, b+n+1)/B(a, b)``).
        The first 200,000 terms are summed exactly; a remaining tail (only for absurd spans)
        is bounded above by Jensen's inequality (the dropout probability is concave in
        ``n``). The closed form ``1 - 2F1(r, a; a+b; -t/α)`` is not used: scipy's
        ``hyp2f1`` returns NaN or garbage exactly where fits degenerate (``a`` tiny, ``b``
        huge).
    """
    p = check_model(model, params)
    span = float(t)
    if math.isnan(span):
        return math.nan
    if span < 0 or math.isinf(span):
        raise ValueError(f"t must be a finite age >= 0, got {t}.")
    if model == "pareto":
        return float(-np.expm1(-p["s"] * math.log1p(span / p["beta"])))
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    shift = 0.0 if model == "bgnbd" else 1.0

    def dead(n: np.ndarray) -> np.ndarray:
        return -np.expm1(betaln(a, b + n + shift) - betaln(a, b))

    # NBD counts of an immortal customer: P(n) = Γ(r+n)/(Γ(r) n!) θ^r (1-θ)^n, θ = α/(α+t)
    mean = r * span / alpha
    sd = math.sqrt(mean * (1.0 + span / alpha))
    n_max = int(min(_MAX_OCCASIONS, math.ceil(mean + 40.0 * sd + 50.0)))
    n = np.arange(n_max + 1, dtype=float)
    log_rest = math.log(span / (alpha + span)) if span > 0 else -math.inf
    with np.errstate(invalid="ignore"):
        log_pmf = gammaln(r + n) - gammaln(r) - gammaln(n + 1) - r * math.log1p(span / alpha)
        log_pmf += np.where(n > 0, n * log_rest, 0.0)
    pmf = np.exp(log_pmf)
    share = float(pmf @ dead(n))
    tail = 1.0 - float(pmf.sum())
    if tail > 1e-12:
        tail_mean = max(float(n_max + 1), (mean - float(pmf @ n)) / tail)
        share += tail * float(dead(np.array([tail_mean]))[0])
    return min(1.0, max(0.0, share))
