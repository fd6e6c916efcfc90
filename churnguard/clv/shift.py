"""Pareto/NBD with a dropout hazard that changed by a factor ``k`` at a known date.

The purchase models assume that each customer's dropout rate ``μ`` never changes. When
customers start leaving faster (or slower) from some date on, every customer's hazard is
``μ`` before it and ``k μ`` after it. Pareto/NBD is the one model where this has a clean
form, because its dropout is a hazard in calendar time (BG/NBD's happens only right after
a purchase). For a customer with history ``(x, tx, T)`` whose last ``d`` time units were
under the new hazard (``c = max(T - d, 0)``, the age at the change), integrating the
individual likelihood over ``λ ~ Gamma(r, α)`` and ``μ ~ Gamma(s, β)`` gives the same
split as in `churnguard.clv._likelihood`, ``L = C [E + D]``, with::

    E = (α+T)^-(r+x) (β + c + k (T-c))^-s
    D = s ∫_tx^c (α+y)^-(r+x) (β+y)^-(s+1) dy                      (died before the change)
      + s k ∫_max(c,tx)^T (α+y)^-(r+x) (β + c + k (y-c))^-(s+1) dy   (died after it)

Alive at ``T``, the posteriors are ``λ ~ Gamma(r+x, α+T)`` and ``μ ~ Gamma(s, β + c +
k (T-c))``, so the future hazard ``k μ`` is Gamma with rate ``B = (β + c + k (T-c)) / k``,
and staying quiet over ``(T, T+t]`` is a new Pareto/NBD customer's ``P(X(t) = 0)`` with
those parameters. With ``k = 1`` (or ``d = 0`` and only the future changed) everything
reduces to the plain model's formulas.

Both integrals after the change are Pareto/NBD integrals with constants of their own per
customer: ``(α+y)(β+c+k(y-c)) = (a0+u) k (b0/k+u)`` with ``u = y - max(c, tx)``, and
dying quietly over the horizon is ``∫_0^t (A+u)^-(r+x) (B+u)^-(s+1) du``. They are
computed by the plain model's quadrature (`churnguard.clv._pareto_integral`, per-row ``α``
and ``β``), so heavy buyers and very different ``α`` and ``β`` stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.special import expit

from churnguard.clv import _likelihood
from churnguard.clv._likelihood_inputs import on_patterns, unique_rows
from churnguard.clv._pareto_integral import log_pareto_integral

__all__ = [
    "shifted_discounted_purchases",
    "shifted_expected_purchases",
    "shifted_p_no_purchase",
    "shifted_p_purchase",
]

# Rows evaluated at once: each integral holds a (rows, 48) array (~19 MB at 50,000).
_CHUNK_ROWS = 50_000


def shifted_p_no_purchase(
    params: Mapping[str, float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    t: float,
    since: float,
    k: float,
) -> np.ndarray:
    """P(no purchase in ``(T, T + t]``) when the dropout hazard became ``k`` times higher.

    Parameters
    ----------
    params : mapping
        Pareto/NBD ``r``, ``alpha``, ``s``, ``beta`` (the hazard before the change).
    x, tx, T : ndarray
        Repeat purchases, age at the last one, age now (model time unit), elementwise.
    t : float
        Horizon, >= 0.
    since : float
        Time units between the change and now (>= 0; a customer younger than that lived
        all their life under the new hazard). 0: only the future is changed.
    k : float
        Factor on every customer's dropout hazard from the change on (> 0; 1: no change).

    Returns
    -------
    numpy.ndarray
        Probabilities in [0, 1]. ``k = 1`` gives the plain Pareto/NBD probability (see
        `churnguard.clv._likelihood.p_no_purchase`), and they increase with ``k``.
    """
    r, alpha, s, beta = _checked(params, t, since, k)
    x, tx, T = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, tx, T)))
    if k == 1.0:  # no change: the plain model's closed form (what the general one reduces to)
        return _likelihood.p_no_purchase("pareto", params, x, tx, T, float(t))

    change = (float(t), float(since), float(k))
    return _by_pattern(x, tx, T, lambda rfm: _p_no_purchase((r, alpha, s, beta), rfm, change))


def shifted_p_purchase(
    params: Mapping[str, float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    t: float,
    since: float,
    k: float,
) -> np.ndarray:
    """P(at least one purchase in ``(T, T + t]``) under the change: ``1 -``
    :func:`shifted_p_no_purchase`, computed without the subtraction, so that it keeps its
    relative precision where a purchase is all but impossible (ratios of it stay exact).
    The general formulas at every ``k``, 1 included; parameters as in
    :func:`shifted_p_no_purchase`.
    """
    r, alpha, s, beta = _checked(params, t, since, k)
    change = (float(t), float(since), float(k))
    return _by_pattern(
        x, tx, T, lambda rfm: _p_no_purchase((r, alpha, s, beta), rfm, change, any_purchase=True)
    )


def shifted_expected_purchases(
    params: Mapping[str, float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    t: float,
    since: float,
    k: float,
) -> np.ndarray:
    """Expected purchases in ``(T, T + t]`` when the dropout hazard became ``k`` times higher.

    ``P(alive at T) (r+x)/(α+T) B/(s-1) [1 - (B/(B+t))^(s-1)]`` with the posterior rate
    of the future hazard ``B = (β + c + k (T-c)) / k`` (module docstring): Fader and
    Hardie's conditional expectation (note 009, eq. 41) with ``β + T`` replaced by ``B``,
    and its limit ``B log(1 + t/B)`` at ``s = 1``. Parameters as in
    :func:`shifted_p_no_purchase`; ``k = 1`` gives the plain Pareto/NBD expectation
    (`churnguard.clv._likelihood.pareto_expected_purchases`), and it decreases with ``k``.
    """
    _checked(params, t, since, k)
    if k == 1.0:
        x, tx, T = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, tx, T)))
        return _likelihood.pareto_expected_purchases(params, x, tx, T, float(t))
    return shifted_discounted_purchases(params, x, tx, T, [t], [1.0], since, k)


def shifted_discounted_purchases(
    params: Mapping[str, float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    times: Sequence[float],
    weights: Sequence[float],
    since: float,
    k: float,
) -> np.ndarray:
    """``sum_i weights[i] E[purchases in (T + times[i-1], T + times[i]]]`` under the change.

    With ``times`` the ends of the coming months and ``weights`` their discount factors,
    it is the discounted purchase count behind a CLV (``times[-1]`` before the first is 0).
    Each period's count is a difference of :func:`shifted_expected_purchases`; P(alive)
    and the future hazard's posterior are computed once for all of them. ``times``
    increasing and >= 0; other parameters as in :func:`shifted_p_no_purchase` (``k = 1``
    takes the same general formulas).
    """
    ends = [float(v) for v in times]
    w = [float(v) for v in weights]
    if len(ends) != len(w) or not ends:
        raise ValueError(
            f"times and weights must be non-empty and as long, got {len(ends)} and {len(w)}."
        )
    if not all(math.isfinite(v) for v in (*ends, *w)) or any(
        b < a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)
    ):
        raise ValueError(
            f"times must be finite, increasing and >= 0 and weights finite, got times "
            f"{ends[:5]}... and weights {w[:5]}..."
        )
    r, alpha, s, beta = _checked(params, ends[-1], since, k)

    def one(rfm: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        alive, big_b = _alive((r, alpha, s, beta), rfm, (float(since), float(k)))
        rate = alive * (r + rfm[0]) / (alpha + rfm[2]) * big_b
        total, previous = np.zeros(len(rfm[0])), np.zeros(len(rfm[0]))
        for end, weight in zip(ends, w, strict=True):
            log_growth = np.log1p(end / big_b)
            # E[min(t, remaining life)] / B: -expm1 keeps it exact for s near 1
            life = log_growth if s == 1.0 else -np.expm1(-(s - 1.0) * log_growth) / (s - 1.0)
            cumulative = rate * life
            total += weight * (cumulative - previous)
            previous = cumulative
        return total

    return _by_pattern(x, tx, T, one)


def _by_pattern(
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    one: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray],
) -> np.ndarray:
    """``one`` of 1-d ``(x, tx, T)`` rows, in chunks, once per unique pattern, broadcast."""
    x, tx, T = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, tx, T)))

    def rows(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        out = np.empty(len(x1))
        for lo in range(0, len(x1), _CHUNK_ROWS):
            part = slice(lo, lo + _CHUNK_ROWS)
            out[part] = one((x1[part], tx1[part], T1[part]))
        return out

    return on_patterns(rows, x, tx, T, costly=True)


def _checked(
    params: Mapping[str, float], t: float, since: float, k: float
) -> tuple[float, float, float, float]:
    """``(r, alpha, s, beta)`` once the arguments are checked."""
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a finite number > 0, got {k}.")
    for name, value in (("since", since), ("t", t)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    r, alpha, s, beta = (float(params[name]) for name in ("r", "alpha", "s", "beta"))
    if min(r, alpha, s, beta) <= 0:
        raise ValueError(f"Pareto/NBD parameters must be > 0, got {dict(params)}.")
    return r, alpha, s, beta


def _alive(
    params: tuple[float, float, float, float],
    rfm: tuple[np.ndarray, np.ndarray, np.ndarray],
    change: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """P(alive at ``T``) under the change, and the rate ``B`` of the future hazard's posterior."""
    r, alpha, s, beta = params
    x, tx, T = rfm
    since, k = change
    rx = r + x
    c = np.maximum(T - float(since), 0.0)
    clock = beta + c + k * (T - c)  # β plus the dropout clock: post-change time counts k-fold
    log_e = -rx * np.log(alpha + T) - s * np.log(clock)
    before = tx < c
    log_pre = np.full(len(x), -np.inf)
    if before.any():
        log_pre[before] = math.log(s) + log_pareto_integral(
            tx[before], c[before], rx[before], s + 1.0, alpha, beta
        )
    lo = np.maximum(c, tx)
    a0, b0 = alpha + lo, beta + c + k * (lo - c)
    # (α+y) (β+c+k(y-c)) = (a0+u) k (b0/k+u) with u = y - lo: a Pareto integral per row
    log_post = (
        math.log(s * k)
        - (s + 1.0) * math.log(k)
        + log_pareto_integral(np.zeros_like(lo), T - lo, rx, s + 1.0, a0, b0 / k)
    )
    return expit(log_e - np.logaddexp(log_pre, log_post)), clock / k


def _p_no_purchase(
    params: tuple[float, float, float, float],
    rfm: tuple[np.ndarray, np.ndarray, np.ndarray],
    change: tuple[float, float, float],
    any_purchase: bool = False,
) -> np.ndarray:
    """:func:`shifted_p_no_purchase` of 1-d ``(x, tx, T)`` and ``(t, since, k)`` (no checks).

    ``any_purchase``: the complement instead, P(at least one purchase), computed directly.
    """
    r, alpha, s, beta = params
    x, _, T = rfm
    t, since, k = change
    rx = r + x
    alive, big_b = _alive(params, rfm, (since, k))
    # quiet over (T, T+t] if alive: a new customer with λ ~ Γ(r+x, α+T), kμ ~ Γ(s, B)
    big_a = alpha + T
    log_stay = -rx * np.log1p(t / big_a) - s * np.log1p(t / big_b)
    # dying quietly over the horizon depends on (x, T) only: once per pair
    codes, (ux, uT) = unique_rows(x, T)
    ua, ub = alpha + uT, (beta + np.maximum(uT - since, 0.0) + k * np.minimum(uT, since)) / k
    urx = r + ux
    log_die = (
        math.log(s)
        + urx * np.log(ua)
        + s * np.log(ub)
        + log_pareto_integral(np.zeros_like(ua), np.full_like(ua, t), urx, s + 1.0, ua, ub)
    )[codes]
    log_quiet = np.minimum(np.logaddexp(log_stay, log_die), 0.0)
    # P(alive and buying in the window), kept apart: 1 - P(none) loses it near 0
    buys = alive * -np.expm1(log_quiet)
    return buys if any_purchase else np.clip(1.0 - buys, 0.0, 1.0)
