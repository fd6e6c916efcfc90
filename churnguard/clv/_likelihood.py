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
quadrature in ``v = log(min(α, β) + y)``: see `_log_pareto_integral`. Against a 100-digit
``mpmath`` evaluation of the closed form, over ``x`` up to 5,000, ``T`` up to 5,000, ``α``
and ``β`` from 1e-4 to 1e5 and ``s`` down to 1e-4, the log-likelihood is off by 1e-16
relative typically and 4e-14 at worst (rounding of the large logs themselves).

Functions evaluate on the unique ``(x, tx, T)`` patterns and broadcast back when that is
cheaper (customer bases have far fewer patterns than customers). All times are in the
model's time unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.special import betaln, expit, gammaln

from churnguard.exceptions import InputDataError

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

#: Parameter names of each model, as in ``PurchaseModel.params_``.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "mbgnbd": ("r", "alpha", "a", "b"),
    "pareto": ("r", "alpha", "s", "beta"),
}

# Gauss-Legendre nodes for the Pareto/NBD integral. 48 keeps the worst error over a stress
# grid (x <= 5000, T <= 5000, alpha/beta in 1e-4..1e5, s down to 1e-4) at ~3e-14 relative of
# the log; 32 nodes leave ~4e-10 on long, slowly decaying integrands (x = 0, small s).
_N_NODES = 48
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(_N_NODES)
# The integrand is cut where it is e^-50 of its peak: the neglected mass is below 1e-20 of
# the integral for every integrand this family produces (its log is concave in v).
_LOG_CUTOFF = 50.0
# Cap on the Newton steps that place the cut. They approach it monotonically from the safe
# side, so stopping early only widens the range; 3 already suffice on the stress grid.
_NEWTON_STEPS = 12
# Below this many rows, grouping into patterns costs more than it saves.
_MIN_ROWS_FOR_PATTERNS = 2_000
# Float noise from date arithmetic may put recency a hair above T; beyond this it is an error.
_RECENCY_TOLERANCE = 1e-9


def _check_model(model: str, params: Mapping[str, float]) -> dict[str, float]:
    if model not in MODEL_PARAMS:
        raise ValueError(
            f"model must be one of {sorted(MODEL_PARAMS)}, received {model!r}. "
            "Use 'bgnbd' (BG/NBD), 'pareto' (Pareto/NBD) or 'mbgnbd' (MBG/NBD)."
        )
    names = MODEL_PARAMS[model]
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"{model} needs parameters {list(names)}, missing {missing}.")
    values = {k: float(params[k]) for k in names}
    if not all(math.isfinite(v) and v > 0 for v in values.values()):
        raise ValueError(f"parameters must be finite and > 0, received {values}.")
    return values


def check_arrays(
    x: np.ndarray | float, tx: np.ndarray | float, T: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcast ``x, tx, T`` to float arrays, rejecting bad values.

    Parameters
    ----------
    x, tx, T : array_like
        Repeat purchases, recency, age (broadcast together).

    Returns
    -------
    tuple of numpy.ndarray
        The three arrays (``tx`` clipped to ``T`` where float noise put it a hair above).

    Raises
    ------
    churnguard.exceptions.InputDataError
        NaN/infinite or negative values, shapes that do not broadcast, or recency > T.
    """
    try:
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, tx, T)))
    except ValueError as exc:
        raise InputDataError(
            f"frequency, recency and T must broadcast to one shape: {exc}"
        ) from None
    for name, values in zip(("frequency", "recency", "T"), arrays, strict=True):
        # two reductions instead of elementwise masks: NaN fails `>= 0`, inf fails `< inf`
        if values.size and not (values.min() >= 0 and values.max() < np.inf):
            if not np.isfinite(values).all():
                raise InputDataError(f"{name} has missing or infinite values; all must be finite.")
            raise InputDataError(f"{name} has negative values (min {values.min():g}); use >= 0.")
    freq, rec, age = arrays
    over = rec > age
    if over.any():
        if (rec[over] > age[over] + _RECENCY_TOLERANCE).any():
            raise InputDataError(
                "recency exceeds T for some customers; recency is the age at the last purchase, "
                "so it cannot exceed T (check both use the same time unit and end date)."
            )
        rec = np.minimum(rec, age)
    return freq, rec, age


def unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Group rows of equal-length 1-d arrays into unique combinations by hashing (no sort).

    Parameters
    ----------
    *columns : numpy.ndarray
        One-dimensional arrays of equal length, e.g. ``x, tx, T``.

    Returns
    -------
    codes : numpy.ndarray
        Index of every row's combination (``int64``), so ``unique[codes]`` restores the rows.
    uniques : tuple of numpy.ndarray
        The unique combinations, one array per column, in order of first appearance.
    """
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column)
        # Fold the column's codes into one key; re-number first if the product could overflow.
        if key.max(initial=0) > np.iinfo(np.int64).max // (len(uniques) + 1):
            key, _ = pd.factorize(key)
        key = key * len(uniques) + codes
    codes, _ = pd.factorize(key)
    # factorize numbers combinations by first appearance, so first rows in row order match codes
    first = np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())
    return codes.astype(np.int64), tuple(column[first] for column in columns)


def _on_patterns(
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    *,
    costly: bool,
) -> np.ndarray:
    """Apply a row-wise ``func`` once per unique pattern and broadcast back to ``x``'s shape."""
    shape = x.shape
    flat = [np.ascontiguousarray(v).ravel() for v in (x, tx, T)]
    # Closed forms cost a few logs per row, about what the hashing costs: only worth it when
    # the per-row cost is high (quadrature) and there are enough rows to repeat.
    if not costly or flat[0].size < _MIN_ROWS_FOR_PATTERNS:
        return np.asarray(func(*flat)).reshape(shape)
    codes, (ux, utx, uT) = unique_rows(*flat)
    if len(ux) > 0.7 * flat[0].size:
        return np.asarray(func(*flat)).reshape(shape)
    return np.asarray(func(ux, utx, uT))[codes].reshape(shape)


def _log_pareto_integral(
    lo: np.ndarray,
    hi: np.ndarray,
    c1: np.ndarray,
    c2: float,
    alpha: float,
    beta: float,
) -> np.ndarray:
    """``log ∫_lo^hi (α+y)^-c1 (β+y)^-c2 dy`` for ``0 <= lo <= hi``, elementwise, in log space.

    See `pareto_integral_nodes`, which this returns the first output of.
    """
    return pareto_integral_nodes(lo, hi, c1, c2, alpha, beta, with_nodes=False)[0]


def pareto_integral_nodes(
    lo: np.ndarray,
    hi: np.ndarray,
    c1: np.ndarray,
    c2: float,
    alpha: float,
    beta: float,
    *,
    with_nodes: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``log ∫_lo^hi (α+y)^-c1 (β+y)^-c2 dy`` and the quadrature behind it.

    Returns the log-integral and, with ``with_nodes``, the nodes as ``v = log(min(α, β) + y)``
    (shape ``(n, 48)``) and their normalised weights (each row sums to 1 where ``hi > lo``),
    so that averages of any function of ``y`` under the integrand (the log-moments a
    gradient needs, `churnguard.clv._fitting`) come from the same evaluation.

    Write ``m = min(α, β)``, ``K = |α - β|`` and ``p``/``q`` for the exponents of ``m + y`` and
    ``m + K + y``. In ``v = log(m + y)`` the integrand is ``exp(h(v))`` with::

        h(v) = (1 - p) v - q log(K + e^v)

    which is concave (``h'' = -q K e^v / (K + e^v)^2 <= 0``): one peak, at an end or at
    ``e^v = K (1 - p) / (p + q - 1)`` when ``p < 1``, and tails that fall at least
    exponentially. A heavy buyer's integrand (``r + x`` in the thousands) can fall by e^-50
    within a fraction of a time unit, so the range is first cut where ``h`` is 50 below its peak
    (Newton on the concave ``h`` from the outer end, which approaches the cut from the safe
    side) and the rest is integrated with 48-node Gauss-Legendre. ``h`` is evaluated as
    ``h(v_peak) + H(d)`` with ``d = v - v_peak`` and ``H`` written with ``log1p``/``expm1``,
    so nothing cancels: the result is accurate to rounding in ``h(v_peak)``.
    """
    if alpha <= beta:
        m, k_gap, p, q = alpha, beta - alpha, c1, np.full_like(c1, c2)
    else:
        m, k_gap, p, q = beta, alpha - beta, np.full_like(c1, c2), c1
    log_k = math.log(k_gap) if k_gap > 0 else -math.inf
    v_lo = np.log(m + lo)
    width = np.log1p((hi - lo) / (m + lo))  # v_hi - v_lo without cancellation
    interior = (p < 1) & (k_gap > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_stat = log_k + np.log1p(-p) - np.log(p + q - 1) - v_lo
    u_peak = np.where(interior, np.clip(np.nan_to_num(u_stat), 0.0, width), 0.0)
    v_peak = v_lo + u_peak
    sig = expit(v_peak - log_k)  # e^v / (K + e^v) at the peak
    h_peak = (1 - p) * v_peak - q * np.logaddexp(log_k, v_peak)

    slope = 1.0 - p

    def rel_h(d: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return slope[rows] * d - q[rows] * np.log1p(sig[rows] * np.expm1(d))

    def rel_dh(d: np.ndarray, rows: np.ndarray) -> np.ndarray:
        grow = sig[rows] * np.exp(d)
        return slope[rows] - q[rows] * grow / (1.0 - sig[rows] + grow)

    def cut(start: np.ndarray, side: float) -> np.ndarray:
        # Newton on the concave h from the outer end (side +1: right, -1: left): the tangent
        # lies above h, so every iterate stays beyond the cut and stopping early only widens
        # the range. Rows within 1 of the cut level are done.
        d = start.copy()
        rows = np.flatnonzero(rel_h(d, np.arange(len(d))) < -_LOG_CUTOFF)
        for _ in range(_NEWTON_STEPS):
            if rows.size == 0:
                break
            dr = d[rows]
            dr = dr - (rel_h(dr, rows) + _LOG_CUTOFF) / rel_dh(dr, rows)
            d[rows] = side * np.maximum(side * dr, 0.0)  # never cross the peak at d = 0
            rows = rows[rel_h(d[rows], rows) < -_LOG_CUTOFF - 1.0]
        return d

    d_hi = cut(width - u_peak, 1.0)
    d_lo = cut(-u_peak, -1.0)  # only an interior peak has a rising left side to cut

    # Gauss-Legendre on [d_lo, d_hi], shifted by the largest node value (log-sum-exp).
    half = 0.5 * (d_hi - d_lo)
    d = d_lo[:, None] + half[:, None] * (_GL_NODES + 1.0)
    f = np.expm1(d)
    f *= sig[:, None]
    np.log1p(f, out=f)
    f *= -q[:, None]
    f += slope[:, None] * d
    shift = f.max(axis=1)
    f -= shift[:, None]
    np.exp(f, out=f)
    h_peak = h_peak + shift
    total = f @ _GL_WEIGHTS
    with np.errstate(divide="ignore"):
        out = np.where(hi > lo, h_peak + np.log(half) + np.log(total), -np.inf)
    if not with_nodes:
        return out, None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        f *= _GL_WEIGHTS
        f /= total[:, None]
    d += v_peak[:, None]
    return out, d, f


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
        log_d = math.log(s) + _log_pareto_integral(tx, T, rx, s + 1.0, alpha, beta)
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
    log_die = _log_pareto_integral(uT, uT + t, p["r"] + ux, s + 1.0, p["alpha"], beta)[codes]
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
    p = _check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        log_e, log_d = _log_alive_dead(model, p, x1, tx1, T1)
        return _log_common(model, p, x1) + np.logaddexp(log_e, log_d)

    return _on_patterns(func, freq, rec, age, costly=model == "pareto")


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
    p = _check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        return expit(_log_alive_odds(model, p, x1, tx1, T1)[0])

    return _on_patterns(func, freq, rec, age, costly=model == "pareto")


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
    p = _check_model(model, params)
    freq, rec, age = check_arrays(x, tx, T)
    horizon = float(t)
    if not math.isfinite(horizon) or horizon < 0:
        raise ValueError(f"t must be a finite number >= 0 (model time unit), got {t}.")

    def func(x1: np.ndarray, tx1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        log_odds, log_e = _log_alive_odds(model, p, x1, tx1, T1)
        alive = expit(log_odds)
        buys_if_alive = -np.expm1(_log_stay_quiet_if_alive(model, p, x1, T1, horizon, log_e))
        return np.clip(1.0 - alive * buys_if_alive, 0.0, 1.0)

    return _on_patterns(func, freq, rec, age, costly=model == "pareto")


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
    p = _check_model("pareto", params)
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
    p = _check_model(model, params)
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
