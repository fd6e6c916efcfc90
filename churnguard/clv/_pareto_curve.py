"""Pareto/NBD conditional expected purchases at many horizons, sharing the likelihood.

lifetimes' ``ParetoNBDFitter.conditional_expected_number_of_purchases_up_to_time``
(Fader & Hardie's note 009, eq. 41) recomputes the customer's log-likelihood at each
horizon, and the likelihood's ``log A_0`` term (a Gauss hypergeometric function per
customer) is nearly all of its cost. A CLV sums the expectation over 12 monthly
horizons; on CDNOW that was about a third of ``train``. Only the last factor of eq. 41
depends on the horizon, so :func:`pareto_expected_curve` evaluates the likelihood once
(with lifetimes' own function) and the rest with the same floating-point operations in
the same order: the values are bit-for-bit lifetimes' (tested).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.special import gammaln

__all__ = ["pareto_expected_curve"]


def pareto_expected_curve(
    fitter: Any,
    horizons: Iterable[float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
) -> list[np.ndarray]:
    """E[X(T, T + t] | x, t_x, T] for each ``t`` of ``horizons``, in order.

    Parameters
    ----------
    fitter : lifetimes.ParetoNBDFitter
        A fitted lifetimes fitter (its ``params_`` and its conditional log-likelihood).
    horizons : iterable of float
        Horizons ``t`` (> 0), in the unit of ``recency`` and ``T``.
    frequency, recency, T : numpy.ndarray
        Arrays of one shape (validated by the caller). Values lifetimes cannot compute
        (its likelihood overflows for very heavy buyers) come out non-finite, as there;
        the caller replaces them.
    """
    params = [fitter.params_[k] for k in ("r", "alpha", "s", "beta")]
    r, alpha, s, beta = params
    x = frequency
    out = []
    # lifetimes' own call warns on the overflowing rows too; they are replaced downstream.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        likelihood = fitter._conditional_log_likelihood(params, x, recency, T)
        first_term = (
            gammaln(r + x)
            - gammaln(r)
            + r * np.log(alpha)
            + s * np.log(beta)
            - (r + x) * np.log(alpha + T)
            - s * np.log(beta + T)
        )
        second_term = np.log(r + x) + np.log(beta + T) - np.log(alpha + T)
        shared = first_term + second_term
        for t in horizons:
            third_term = np.log((1 - ((beta + T) / (beta + T + t)) ** (s - 1)) / (s - 1))
            out.append(np.exp(shared + third_term - likelihood))
    return out
