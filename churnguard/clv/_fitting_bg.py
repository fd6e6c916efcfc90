"""BG/NBD and MBG/NBD log-likelihood and gradient on prepared patterns (scaled time).

`bg_terms` is what `churnguard.clv._fitting` minimises for ``model="bgnbd"`` and
``"mbgnbd"``: the total weighted log-likelihood, its analytic gradient in the
log-parameters ``log(r, α, a, b)``, and optionally the per-pattern values. The ``x``-only
factors come once per unique frequency (`churnguard.clv._fitting_data`), the ``T``-only
ones once per unique age; only the mixing of "alive" and "dropped out" is per pattern.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from churnguard.clv._fitting_data import PurchaseData, beta_ratio, rising_log
from churnguard.clv._fitting_optimizer import dot

__all__ = ["bg_terms"]


def bg_terms(
    model: str, theta: np.ndarray, data: PurchaseData, per_pattern: bool
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Total weighted log-likelihood (scaled time), its gradient in ``theta``, per-pattern ll.

    ``ll = log C(x) + log E + softplus(log D - log E)`` with ``log E = -(r+x) log(α+T)`` and
    ``log D - log E = log a - log(b+x-1) + (r+x) log1p((T-tx)/(α+tx))`` (``b+x`` for
    MBG/NBD; BG/NBD has ``D = 0`` at ``x = 0``). ``π = sigmoid(log D - log E)`` is the
    posterior share of "dropped out", which weighs the dropout terms of the gradient.
    ``r log α - (r+x) log(α+T)`` is summed as ``-r log1p(T/α) - x log(α+T)``: the two large
    terms cancel when ``r`` and ``α`` grow together (the Poisson limit some fits run into).
    """
    r, alpha, a, b = np.exp(theta)
    shift = 1 if model == "mbgnbd" else 0
    rise, drise = rising_log(r, data)
    bval, bda, bdb = beta_ratio(a, b, data, shift)
    Wx, WT, WxT, uT = data.Wx, data.WT, data.WxT, data.uT
    log1p_T = np.log1p(uT / alpha)
    log_aT = np.log(alpha + uT)
    # b + x - 1 (BG/NBD) or b + x (MBG/NBD) per unique x; BG/NBD's x = 0 is masked below
    bx = b + data.ux - (1.0 - shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_bx = np.log(bx)
    a_tx = alpha + data.tx
    gap = np.log1p(data.dT / a_tx)  # log((α+T)/(α+tx)) >= 0
    rx = r + data.x
    d = (math.log(a) - log_bx)[data.ix] + rx * gap
    if shift == 0:
        d = np.where(data.x > 0, d, -np.inf)
    soft = np.logaddexp(0.0, d)
    pi = expit(d)
    pw = data.w * pi

    ll = dot(Wx, rise + bval) - r * dot(WT, log1p_T) - dot(WxT, log_aT) + dot(data.w, soft)
    pw_x = np.bincount(data.ix, pw, minlength=len(data.ux))
    # ∂/∂α of (r+x) log((α+T)/(α+tx)) = -(r+x) (T-tx) / ((α+T)(α+tx))
    dgap = -data.dT / (a_tx * (a_tx + data.dT))
    g_r = dot(Wx, drise) - dot(WT, log1p_T) + dot(pw, gap)
    # ∂/∂α of -r log1p(T/α) - x log(α+T) = r T / (α (α+T)) - x / (α+T)
    g_alpha = r * dot(WT, uT / (alpha * (alpha + uT))) - dot(WxT, 1.0 / (alpha + uT))
    g_alpha += dot(pw * rx, dgap)
    g_a = dot(Wx, bda) + float(pw.sum()) / a
    with np.errstate(invalid="ignore"):
        g_b = dot(Wx, bdb) - float(np.where(pw_x > 0, pw_x / bx, 0.0).sum())
    grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
    per = None
    if per_pattern:
        per = (rise + bval)[data.ix] - r * log1p_T[data.iT] - data.x * log_aT[data.iT] + soft
    return ll, grad, per
