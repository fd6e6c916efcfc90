"""Pareto/NBD log-likelihood and gradient on prepared patterns, and its integral ``G``.

`pareto_terms` is what `churnguard.clv._fitting` minimises for ``model="pareto"``. Its
dropout integral ``D = s ∫_tx^T (α+y)^-(r+x) (β+y)^-(s+1) dy`` is ``s [G(x, tx) - G(x, T)]``
with ``G(x, u) = ∫_u^∞``, so only the unique ``(x, u)`` pairs need the special function
(`pareto_log_g`): 55k pairs for 1M customers in 600k patterns.

Pareto/NBD's ``G``
------------------
With ``P = min(α, β)`` (exponent ``e_P``), ``Q = max(α, β)`` (exponent ``e_Q``), where the
exponents are ``r + x`` for ``α`` and ``s + 1`` for ``β``, Euler's transformation of the
usual ``hyp2f1`` closed form gives::

    G(x, u) = (P+u)^(1-e_P) (Q+u)^(-e_Q) F(e_Q, 1; e_P+e_Q; z) / (e_P+e_Q-1),
    z = (Q-P)/(Q+u) in [0, 1)

whose series ``F = Σ_n (e_Q)_n/(e_P+e_Q)_n z^n`` has positive terms shrinking at least by
``z`` per step: no overflow, no cancellation, a rigorous truncation bound, and the
derivatives in ``e_P``, ``e_Q`` and ``z`` (which ``hyp2f1`` cannot give) are summed term by
term in the same pass; against 50-digit ``mpmath`` the log and its gradient are off by
2e-15 relative. (scipy's ``hyp2f1`` in lifetimes' form overflows for heavy buyers, and in
this form still returns NaN for ``z`` near 1 and wrong values for some large parameters,
e.g. relative error 1 at ``e_P=236, e_Q=436, z=0.88``.) Pairs whose series would need more
than ``_SERIES_MAX_TERMS`` terms (light buyers with ``z`` above ~0.7, i.e. ``min(α, β) + u``
small against ``max(α, β)``; 463 of 55k pairs on the 1M-customer benchmark) are split at
the ``y`` where ``z = 1/2``: the series takes the tail, the Gauss-Legendre quadrature of
`churnguard.clv._pareto_integral` the finite part, with the gradient's log-moments from the
quadrature's own nodes (2e-14 relative). ``D`` as a difference of two ``G`` loses no
accuracy that matters: ``s G(T) <= E`` and ``s G(tx) <= E + D``, so the rounding error is
~1e-16 of the likelihood.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma, gammaln

from churnguard.clv._fitting_data import PurchaseData, rising_log
from churnguard.clv._fitting_optimizer import dot
from churnguard.clv._pareto_integral import pareto_integral_nodes

__all__ = ["log_g_split", "pareto_log_g", "pareto_terms"]

# Series terms allowed per (x, u) pair before the split with quadrature takes over. Light
# buyers need ~40 / (1 - z) terms (heavy ones far fewer); past ~120 terms the 48-node
# quadrature (~3 us per pair) is cheaper than the loop, whose numpy calls cost ~20 us per term.
_SERIES_MAX_TERMS = 120
# Relative size of the neglected series tail (value and derivatives).
_SERIES_TOL = 1e-17
# Where the series would be too long, the integral is split at the y where z falls to this:
# the series takes the rest in ~60 terms, the quadrature the part before.
_SPLIT_Z = 0.5


def pareto_log_g(
    r: float, x: np.ndarray, s: float, alpha: float, beta: float, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """``log G = log[α^r β^s ∫_u^∞ (α+y)^-(r+x) (β+y)^-(s+1) dy]`` and its gradient.

    The factor ``α^r β^s`` (from ``C``) is folded in so that ``r log α - r log(α+u)`` is
    formed as ``-r log1p(u/α)``: the terms cancel when ``r`` and ``α`` (or ``s`` and ``β``)
    grow together. By the series of the module docstring; where it would need more than
    ``_SERIES_MAX_TERMS`` terms (``z`` near 1), the integral is split at the ``y`` where
    ``z = _SPLIT_Z``: the series takes the tail beyond it and the quadrature of
    `churnguard.clv._pareto_integral` the finite part before it, with the gradient's
    log-moments from the same quadrature nodes.

    Parameters
    ----------
    r, s, alpha, beta : float
        Pareto/NBD parameters (time scaled), > 0.
    x : numpy.ndarray
        Repeat purchases per element.
    u : numpy.ndarray
        Lower limits, >= 0 (same length as ``x``).

    Returns
    -------
    log_g : numpy.ndarray
        The log-integral (times ``α^r β^s``).
    grad : numpy.ndarray
        Shape ``(4, n)``: derivatives of ``log_g`` in ``r``, ``alpha``, ``s``, ``beta``.
    n_quadrature : int
        Elements that needed the quadrature.
    """
    x = np.asarray(x, dtype=float)
    u = np.asarray(u, dtype=float)
    log_g, grad, ok = _log_g_series(r, x, s, alpha, beta, u)
    bad = np.flatnonzero(~ok)
    if bad.size:
        log_g[bad], grad[:, bad] = log_g_split(r, x[bad], s, alpha, beta, u[bad])
    return log_g, grad, int(bad.size)


def log_g_split(
    r: float, x: np.ndarray, s: float, alpha: float, beta: float, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`pareto_log_g` as quadrature on ``[u, y*]`` plus the series on ``[y*, ∞)``.

    ``y*`` is where ``z = (Q-P)/(Q+y)`` falls to ``_SPLIT_Z`` (or ``u`` if that is later), so
    the series part converges in ~60 terms whatever ``u``; the quadrature part supplies its
    log-moments (the gradient) from the nodes of its own evaluation.
    """
    p_const, q_const = min(alpha, beta), max(alpha, beta)
    split = np.maximum(u, (q_const - p_const) / _SPLIT_Z - q_const)
    far, far_grad, far_ok = _log_g_series(r, x, s, alpha, beta, split)
    e_alpha = r + x
    near, nodes, node_w = pareto_integral_nodes(u, split, e_alpha, s + 1.0, alpha, beta)
    assert nodes is not None and node_w is not None
    log_alpha, log_beta = math.log(alpha), math.log(beta)
    near = near + r * log_alpha + s * log_beta
    # nodes are v = log(P + y); log(α+y), log(β+y) from them without cancellation
    log_k = math.log(q_const - p_const) if q_const > p_const else -math.inf
    log_other = np.logaddexp(log_k, nodes)
    log_ay, log_by = (nodes, log_other) if alpha <= beta else (log_other, nodes)
    near_grad = np.stack(
        [
            log_alpha - np.einsum("ij,ij->i", node_w, log_ay),
            r / alpha - e_alpha * np.einsum("ij,ij->i", node_w, np.exp(-log_ay)),
            log_beta - np.einsum("ij,ij->i", node_w, log_by),
            s / beta - (s + 1.0) * np.einsum("ij,ij->i", node_w, np.exp(-log_by)),
        ]
    )
    total = np.logaddexp(near, far)
    share = np.exp(near - total)  # of the near part in G; 0 for an empty near part
    grad = np.where(share > 0, share * near_grad, 0.0) + (1.0 - share) * far_grad
    return np.where(far_ok, total, np.nan), grad


def _log_g_series(
    r: float, x: np.ndarray, s: float, alpha: float, beta: float, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pareto_log_g` by the series alone; NaN and ``False`` where it did not converge.

    ``log G = -r log1p(u/α) - s log1p(u/β) - x log(α+u) + [α <= β] log((α+u)/(β+u))
    + log F(e_Q, 1; e_P+e_Q; z) - log(r+s+x)``: the module docstring's prefactor
    ``(P+u)^(1-e_P) (Q+u)^-e_Q`` times ``α^r β^s``, in both orders of ``α`` and ``β``.
    """
    e_alpha = r + x
    e_b = np.full_like(e_alpha, s + 1.0)
    alpha_small = alpha <= beta
    if alpha_small:
        p_const, q_const, e_p, e_q = alpha, beta, e_alpha, e_b
    else:
        p_const, q_const, e_p, e_q = beta, alpha, e_b, e_alpha
    a_u = alpha + u
    b_u = beta + u
    qu = q_const + u
    pu = p_const + u
    z = (q_const - p_const) / qu
    k = e_p + e_q - 1.0
    s_val, s_a, s_c, s_z, ok = _series_a1c(e_q, e_p + e_q, z)
    dlf_a = s_a / s_val  # ∂ log F / ∂e_Q at fixed c ...
    dlf_c = -s_c / s_val  # ... and ∂ log F / ∂c (c = e_P + e_Q)
    dlf_z = s_z / s_val
    log_a_u = np.log(a_u)
    log1p_a = np.log1p(u / alpha)
    log1p_b = np.log1p(u / beta)
    log_g = -r * log1p_a - s * log1p_b - x * log_a_u + np.log(s_val) - np.log(k)
    if alpha_small:
        log_g += log_a_u - np.log(b_u)
    # prefactor derivatives (stable forms of the ones of (P+u)^(1-e_P) (Q+u)^-e_Q α^r β^s)
    d_r = -log1p_a
    d_s = -log1p_b
    d_alpha = r * u / (alpha * a_u) - x / a_u
    d_beta = s * u / (beta * b_u)
    if alpha_small:
        d_alpha += 1.0 / a_u
        d_beta -= 1.0 / b_u
    # F and 1/k: e_α = r + x is e_P (α <= β) or e_Q; e_β = s + 1 the other
    dz_dp = -1.0 / qu
    dz_dq = pu / (qu * qu)
    if alpha_small:
        d_r += dlf_c - 1.0 / k
        d_s += dlf_a + dlf_c - 1.0 / k
        d_alpha += dlf_z * dz_dp
        d_beta += dlf_z * dz_dq
    else:
        d_r += dlf_a + dlf_c - 1.0 / k
        d_s += dlf_c - 1.0 / k
        d_alpha += dlf_z * dz_dq
        d_beta += dlf_z * dz_dp
    grad = np.stack([d_r, d_alpha, d_s, d_beta])
    return np.where(ok, log_g, np.nan), grad, ok


def _series_a1c(
    a: np.ndarray, c: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``F(a, 1; c; z) = Σ t_n`` (``0 <= z < 1``, ``0 < a < c``) with term-wise derivatives.

    Returns ``S = Σ t_n``, ``Σ t_n A_n`` (``∂S/∂a``), ``Σ t_n C_n`` (``-∂S/∂c``),
    ``Σ n t_n / z`` (``∂S/∂z``) and a converged mask, where ``t_n = Π_{j<n} z (a+j)/(c+j)``,
    ``A_n = Σ_{j<n} 1/(a+j)``, ``C_n = Σ_{j<n} 1/(c+j)``.

    Truncation: with ``τ_j = t_{n+j}/t_n <= min(z^j, (a+n)_j/(c+n)_j)``, the neglected sums
    are bounded by ``Σ τ_j <= min(z/(1-z), (a+n)/(e-1))`` and
    ``Σ (n+j) τ_j <= min(z (n/(1-z) + 1/(1-z)^2), (n-1)(a+n)/(e-1) + F2 - 1)`` where
    ``e = c - a`` and ``F2 = (c+n-1)(c+n-2)/((e-1)(e-2))`` (Gauss' sums of
    ``F(a+n, 1 or 2; c+n; 1)``, used when ``e > 2``: heavy buyers converge in a few terms even
    at ``z`` near 1). An element stops once ``t_n (1 + A_n)`` times the larger bound is below
    ``_SERIES_TOL`` of ``S``. The loop runs on the shrinking set of unconverged elements.
    """
    n_el = len(a)
    total = np.ones(n_el)
    tot_a = np.zeros(n_el)
    tot_c = np.zeros(n_el)
    tot_z = np.zeros(n_el)
    done = np.zeros(n_el, dtype=bool)
    # Elements the test would still reject after the last term allowed are left to the
    # caller's quadrature straight away: t_N = z^N (a)_N / (c)_N is known in closed form.
    big_n = float(_SERIES_MAX_TERMS)
    e_all = c - a
    with np.errstate(divide="ignore", invalid="ignore"):
        log_t = (
            big_n * np.log(z) + gammaln(a + big_n) - gammaln(a) + gammaln(c) - gammaln(c + big_n)
        )
        rest = big_n * z / (1.0 - z) + z / np.square(1.0 - z)
        alg = (big_n - 1) * (a + big_n) / (e_all - 1.0) + (c + big_n - 1) * (c + big_n - 2) / (
            (e_all - 1.0) * (e_all - 2.0)
        )
        rest = np.where(e_all > 2.0, np.minimum(rest, alg), rest)
        hopeless = log_t + np.log(rest * (1.0 + digamma(a + big_n) - digamma(a))) > math.log(
            _SERIES_TOL
        )
    idx = np.flatnonzero(~hopeless)
    aa, cc, zz = a[idx], c[idx], z[idx]
    n_el = len(idx)
    ee = cc - aa
    term = np.ones(n_el)  # t_n
    acc_a = np.zeros(n_el)  # A_n
    acc_c = np.zeros(n_el)  # C_n
    sum_v, sum_a, sum_c, sum_z = np.ones(n_el), np.zeros(n_el), np.zeros(n_el), np.zeros(n_el)
    with np.errstate(divide="ignore"):
        geo = zz / (1.0 - zz)
        geo2 = zz / np.square(1.0 - zz)
    for n in range(1, _SERIES_MAX_TERMS + 1):
        if n_el == 0:
            break
        ratio = (aa + (n - 1)) / (cc + (n - 1))
        sum_z += n * term * ratio  # n t_n / z, without dividing by z (z may be 0)
        acc_a += 1.0 / (aa + (n - 1))
        acc_c += 1.0 / (cc + (n - 1))
        term *= zz * ratio
        sum_v += term
        sum_a += term * acc_a
        sum_c += term * acc_c
        if n % 4 and n != _SERIES_MAX_TERMS:
            continue
        rest_v = geo
        rest_w = n * geo + geo2
        heavy = ee > 2.0
        if heavy.any():
            an = aa + n
            with np.errstate(divide="ignore", invalid="ignore"):
                alg_v = an / (ee - 1.0)
                alg_w = (n - 1) * alg_v + (cc + n - 1) * (cc + n - 2) / ((ee - 1) * (ee - 2)) - 1
            rest_v = np.where(heavy, np.minimum(rest_v, alg_v), rest_v)
            rest_w = np.where(heavy, np.minimum(rest_w, alg_w), rest_w)
        small = term * (1.0 + acc_a) * np.maximum(rest_v, rest_w) <= _SERIES_TOL * sum_v
        if small.any():
            fin = idx[small]
            total[fin], tot_a[fin], tot_c[fin], tot_z[fin] = (
                sum_v[small],
                sum_a[small],
                sum_c[small],
                sum_z[small],
            )
            done[fin] = True
            keep = ~small
            if not keep.any():
                break
            idx = idx[keep]
            aa, cc, zz, ee, geo, geo2 = (
                aa[keep],
                cc[keep],
                zz[keep],
                ee[keep],
                geo[keep],
                geo2[keep],
            )
            term, acc_a, acc_c = term[keep], acc_a[keep], acc_c[keep]
            sum_v, sum_a, sum_c, sum_z = sum_v[keep], sum_a[keep], sum_c[keep], sum_z[keep]
    return total, tot_a, tot_c, tot_z, done


def pareto_terms(
    theta: np.ndarray, data: PurchaseData, per_pattern: bool
) -> tuple[float, np.ndarray, np.ndarray | None, int]:
    """Pareto/NBD total log-likelihood (scaled time), gradient in ``theta``, per-pattern ll.

    ``ll = lgamma(r+x) - lgamma(r) + log(E + D)`` with ``α^r β^s`` folded into ``E`` and
    ``D``: ``log E = -r log1p(T/α) - x log(α+T) - s log1p(T/β)`` and
    ``D = s [G(x, tx) - G(x, T)]`` (`pareto_log_g`). The gradient of ``log(E + D)`` is
    ``(1-π) ∇log E + [s G(tx) ∇log G(tx) - s G(T) ∇log G(T)] / (E+D) + (π/s) e_s``
    with ``π = D / (E+D)``; the two ``G`` terms are aggregated per (x, u) pair. Also returns
    how many pairs needed the quadrature.
    """
    r, alpha, s, beta = np.exp(theta)
    rise, drise = rising_log(r, data)
    Wx, uT = data.Wx, data.uT
    l1a_T = np.log1p(uT / alpha)
    la_T = np.log(alpha + uT)
    l1b_T = np.log1p(uT / beta)
    iT = data.iT
    log_e = -r * l1a_T[iT] - data.x * la_T[iT] - s * l1b_T[iT]

    pairs = data.pairs
    log_g, grad_g, n_quad = pareto_log_g(r, pairs.x, s, alpha, beta, pairs.u)
    g_tx = log_g[pairs.ptx]
    g_T = log_g[pairs.pT]
    log_s = math.log(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        # D = s G(tx) (1 - G(T)/G(tx)); rounding may put G(T) a hair above G(tx) when tx ~ T
        log_d = log_s + g_tx + np.log(-np.expm1(np.minimum(g_T - g_tx, 0.0)))
    mix = np.logaddexp(log_e, log_d)
    with np.errstate(over="ignore", invalid="ignore"):
        pi = np.exp(log_d - mix)
        # s G / (E + D): both <= 1 (s G(T) <= E, s G(tx) <= E + D)
        w_tx = data.w * np.exp(log_s + g_tx - mix)
        w_T = data.w * np.exp(log_s + g_T - mix)
    q = data.w * (1.0 - pi)  # weight of the alive term
    pw = data.w * pi

    ll = dot(Wx, rise) + dot(data.w, mix)
    # (1 - π) ∇log E, aggregated per unique T
    q_T = np.bincount(iT, q, minlength=len(uT))
    qx_T = np.bincount(iT, q * data.x, minlength=len(uT))
    n_pairs = len(log_g)
    agg = np.bincount(pairs.ptx, w_tx, minlength=n_pairs) - np.bincount(
        pairs.pT, w_T, minlength=n_pairs
    )
    agg_g = np.einsum("ij,j->i", grad_g, agg)
    g_r = dot(Wx, drise) - dot(q_T, l1a_T) + agg_g[0]
    g_alpha = r * dot(q_T, uT / (alpha * (alpha + uT))) - dot(qx_T, 1.0 / (alpha + uT))
    g_alpha += agg_g[1]
    g_s = -dot(q_T, l1b_T) + agg_g[2] + float(pw.sum()) / s
    g_beta = s * dot(q_T, uT / (beta * (beta + uT))) + agg_g[3]
    grad = np.array([g_r * r, g_alpha * alpha, g_s * s, g_beta * beta])
    per = rise[data.ix] + mix if per_pattern else None
    return ll, grad, per, n_quad
