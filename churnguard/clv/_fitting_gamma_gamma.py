"""Weighted maximum-likelihood fitter of the Gamma-Gamma spend model.

`SpendModel` fits through `fit_gamma_gamma` (reached via `churnguard.clv._fitting`) instead
of ``lifetimes``: lifetimes' objective (mean per-customer log-likelihood plus an L2 penalty
on ``p, q, v``), minimised by L-BFGS-B on the log-parameters with an analytic gradient
(`churnguard.clv._fitting_optimizer`), on unique (frequency, mean spend) pairs weighted by
their counts. The ``betaln`` term depends on the frequency only and is computed once per
unique frequency; the rest is written without large cancelling terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma

from churnguard.clv._fitting_optimizer import (
    LOG_BOUND,
    FitResult,
    dot,
    minimize_in_box,
    names_at_bound,
)

__all__ = ["GammaGammaData", "fit_gamma_gamma", "gamma_gamma_objective", "prepare_gamma_gamma"]

_SPEND_PARAMS = ("p", "q", "v")


@dataclass(frozen=True)
class GammaGammaData:
    """Weighted (frequency, mean spend) pairs of repeat buyers; build with `prepare_gamma_gamma`."""

    x: np.ndarray
    w: np.ndarray
    xm: np.ndarray
    total_weight: float
    # Σ w log m: the data-only part of the log-likelihood
    weighted_log_m: float
    weighted_x: float
    mean_spend: float
    ux: np.ndarray
    ix: np.ndarray
    Wx: np.ndarray


def prepare_gamma_gamma(
    x: np.ndarray, m: np.ndarray, weights: np.ndarray | None = None
) -> GammaGammaData:
    """Index (frequency, mean spend) pairs for the Gamma-Gamma objective.

    Parameters
    ----------
    x, m : numpy.ndarray
        Repeat purchases and mean spend per purchase, both > 0 (validated by the caller).
    weights : numpy.ndarray, optional
        Customers per pair (any positive numbers); 1 each by default.

    Returns
    -------
    GammaGammaData
        The prepared data, reusable across penalizers.
    """
    freq = np.asarray(x, dtype=float)
    money = np.asarray(m, dtype=float)
    w = np.ones_like(freq) if weights is None else np.asarray(weights, dtype=float)
    ux, ix = np.unique(freq, return_inverse=True)
    W = float(w.sum())
    return GammaGammaData(
        x=freq,
        w=w,
        xm=freq * money,
        total_weight=W,
        weighted_log_m=dot(w, np.log(money)),
        weighted_x=dot(w, freq),
        mean_spend=dot(w, money) / W,
        ux=ux,
        ix=ix,
        Wx=np.bincount(ix, w, minlength=len(ux)),
    )


def _gamma_gamma_terms(
    theta: np.ndarray, data: GammaGammaData, per_pattern: bool = False
) -> tuple[float, np.ndarray, np.ndarray | None]:
    """Total weighted Gamma-Gamma log-likelihood, its gradient in ``theta``, per-pair ll.

    Hardie's note 025, eq. (1a), written without large cancelling terms::

        ll = -B(px, q) - log m - px log1p(v/(xm)) - q log1p(xm/v)

    where ``B`` is ``betaln`` (``lgamma(px+q) - lgamma(px) - lgamma(q) = -betaln(px, q)``),
    which depends on ``x`` only and is computed once per unique frequency.
    """
    p, q, v = np.exp(theta)
    ux, Wx = data.ux, data.Wx
    px = p * ux
    b_x = betaln(px, q)
    psi_pq = digamma(px + q)
    ratio = v / data.xm
    l1 = np.log1p(ratio)  # log((xm+v)/(xm))
    l2 = np.log1p(1.0 / ratio)  # log((xm+v)/v)
    share_v = ratio / (1.0 + ratio)  # v/(xm+v)
    w, x = data.w, data.x
    ll = -dot(Wx, b_x) - data.weighted_log_m - p * dot(w * x, l1) - q * dot(w, l2)
    g_p = dot(Wx * ux, psi_pq - digamma(px)) - dot(w * x, l1)
    g_q = dot(Wx, psi_pq) - data.total_weight * float(digamma(q)) - dot(w, l2)
    # v ∂/∂v of -px l1 - q l2 = (q xm - px v)/(xm+v) = q (1 - share_v) - px share_v
    g_logv = q * (data.total_weight - dot(w, share_v)) - p * dot(w * x, share_v)
    grad = np.array([g_p * p, g_q * q, g_logv])
    per = None
    if per_pattern:
        per = -b_x[data.ix] - np.log(data.xm / x) - p * x * l1 - q * l2
    return ll, grad, per


def gamma_gamma_objective(
    theta: np.ndarray, data: GammaGammaData, penalizer: float = 0.0
) -> tuple[float, np.ndarray]:
    """lifetimes' Gamma-Gamma objective and its gradient.

    Parameters
    ----------
    theta : numpy.ndarray
        ``log(p, q, v)``, ``v`` in the spend's own unit (lifetimes does not rescale money).
    data : GammaGammaData
        From `prepare_gamma_gamma`.
    penalizer : float
        L2 penalty coefficient.

    Returns
    -------
    value : float
        ``-Σ w ll / Σ w + penalizer * (p² + q² + v²)``.
    gradient : numpy.ndarray
        Derivative in ``theta``.
    """
    theta = np.asarray(theta, dtype=float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ll, grad, _ = _gamma_gamma_terms(theta, data)
    params = np.exp(theta)
    value = -ll / data.total_weight + penalizer * dot(params, params)
    gradient = -grad / data.total_weight + 2.0 * penalizer * params * params
    return value, gradient


def fit_gamma_gamma(data: GammaGammaData, penalizer: float = 0.0) -> FitResult:
    """Maximum (penalized) likelihood fit of the Gamma-Gamma spend model.

    Parameters
    ----------
    data : GammaGammaData
        From `prepare_gamma_gamma`.
    penalizer : float
        L2 penalty on ``p, q, v`` relative to the mean per-customer log-likelihood.

    Returns
    -------
    FitResult
        ``params`` are ``p, q, v``; ``n_fallback`` is 0. Check ``converged``.
    """
    # p = 1, q = 2 and v at the mean spend: the population mean p v / (q - 1) matches it
    theta0 = np.log([1.0, 2.0, max(data.mean_spend, 1e-12)])
    theta0 = np.clip(theta0, -LOG_BOUND, LOG_BOUND)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return gamma_gamma_objective(theta, data, penalizer)

    theta, value, converged, message, nit, nfev, pg = minimize_in_box(fun, theta0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        _, _, per = _gamma_gamma_terms(theta, data, per_pattern=True)
    assert per is not None
    finite = np.isfinite(per)
    ll = dot(data.w, per) if finite.all() else math.nan
    return FitResult(
        params={k: float(math.exp(t)) for k, t in zip(_SPEND_PARAMS, theta, strict=True)},
        log_likelihood=ll,
        objective=value,
        converged=converged and bool(finite.all()),
        message=message,
        n_iterations=nit,
        n_evaluations=nfev,
        projected_gradient=pg,
        at_bound=names_at_bound(_SPEND_PARAMS, theta),
        n_nonfinite=float(data.w[~finite].sum()),
        n_fallback=0,
    )
