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

The post-change integrals run over at most the ``d`` or ``t`` time units since or after the
change, and are computed in ``w = log(1 + (y - lo) / (α + lo))`` by 24-node Gauss-Legendre:
the factor ``(α+y)^-(r+x)`` becomes ``exp(-(r+x-1) w)``, and the range is cut where it has
fallen by e^-60, so heavy buyers (``r + x`` in the thousands) stay exact. The pre-change
integral is the plain model's (`churnguard.clv._pareto_integral`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.special import expit

from churnguard.clv import _likelihood
from churnguard.clv._likelihood_inputs import on_patterns, unique_rows
from churnguard.clv._pareto_integral import log_pareto_integral

__all__ = ["shifted_p_no_purchase"]

# Rows evaluated at once: each integral holds a (rows, 48) array (~19 MB at 50,000).
_CHUNK_ROWS = 50_000

# 24 nodes: on these smooth, range-cut integrands they agree with 48 to 1e-14 (relative)
# at half the cost; the pre-change integral is the plain model's 48-node quadrature.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)
# Where exp(-(r+x-1) w) has fallen by e^-60 the rest of the integral is below 1e-26 of it.
_LOG_CUTOFF = 60.0


def _log_decay_integral(
    width: np.ndarray, rate: np.ndarray, b0: np.ndarray, slope: np.ndarray, power: float
) -> np.ndarray:
    """``log ∫_0^width exp(-rate w) (b0 + slope expm1(w))^-power dw``, elementwise (>= 0 args).

    ``-inf`` where ``width`` is 0. The range is cut where ``exp(-rate w)`` is e^-60 below its
    start (the other factor only falls), so a steep integrand still gets all 48 nodes.
    """
    with np.errstate(divide="ignore"):
        cut = np.where(rate > 0, _LOG_CUTOFF / np.maximum(rate, 1e-300), np.inf)
    top = np.minimum(width, cut)
    half = 0.5 * top
    w = half[:, None] * (_GL_NODES + 1.0)
    f = -rate[:, None] * w - power * np.log(b0[:, None] + slope[:, None] * np.expm1(w))
    shift = f.max(axis=1)
    total = np.exp(f - shift[:, None]) @ _GL_WEIGHTS
    with np.errstate(divide="ignore"):
        return np.where(width > 0, shift + np.log(half) + np.log(total), -np.inf)


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
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a finite number > 0, got {k}.")
    for name, value in (("since", since), ("t", t)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    r, alpha, s, beta = (float(params[name]) for name in ("r", "alpha", "s", "beta"))
    if min(r, alpha, s, beta) <= 0:
        raise ValueError(f"Pareto/NBD parameters must be > 0, got {dict(params)}.")
    x, tx, T = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (x, tx, T)))
    if k == 1.0:  # no change: the plain model's closed form (what the general one reduces to)
        return _likelihood.p_no_purchase("pareto", params, x, tx, T, float(t))

    def rows(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        out = np.empty(len(x1))
        for lo in range(0, len(x1), _CHUNK_ROWS):
            part = slice(lo, lo + _CHUNK_ROWS)
            out[part] = _p_no_purchase(
                (r, alpha, s, beta), x1[part], tx1[part], T1[part], float(t), float(since), float(k)
            )
        return out

    return on_patterns(rows, x, tx, T, costly=True)


def _p_no_purchase(
    params: tuple[float, float, float, float],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    t: float,
    since: float,
    k: float,
) -> np.ndarray:
    """:func:`shifted_p_no_purchase` of 1-d arrays (no checks)."""
    r, alpha, s, beta = params
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
    a0 = alpha + lo
    log_post = (
        math.log(s * k)
        + (1.0 - rx) * np.log(a0)
        + _log_decay_integral(
            np.log1p((T - lo) / a0), rx - 1.0, beta + c + k * (lo - c), k * a0, s + 1.0
        )
    )
    alive = expit(log_e - np.logaddexp(log_pre, log_post))
    # quiet over (T, T+t] if alive: a new customer with λ ~ Γ(r+x, α+T), kμ ~ Γ(s, clock/k)
    big_a, big_b = alpha + T, clock / k
    log_stay = -rx * np.log1p(t / big_a) - s * np.log1p(t / big_b)
    # dying quietly over the horizon depends on (x, T) only: once per pair
    codes, (ux, uT) = unique_rows(x, T)
    ua, ub = alpha + uT, (beta + np.maximum(uT - since, 0.0) + k * np.minimum(uT, since)) / k
    log_die = (
        math.log(s)
        + np.log(ua / ub)
        + _log_decay_integral(np.log1p(t / ua), r + ux - 1.0, np.ones_like(ua), ua / ub, s + 1.0)
    )[codes]
    log_quiet = np.minimum(np.logaddexp(log_stay, log_die), 0.0)
    return np.clip(1.0 - alive * -np.expm1(log_quiet), 0.0, 1.0)
