"""BG/NBD conditional expected purchases at many horizons, sharing the per-customer terms.

lifetimes' ``BetaGeoFitter.conditional_expected_number_of_purchases_up_to_time``
(Fader, Hardie & Lee 2005, eq. 10) recomputes every term at each horizon and evaluates
the Gauss hypergeometric function twice (a fallback form, used only where the first is
infinite). A CLV sums the expectation over 12 monthly horizons, so at a million
customers that is most of the value stage. :func:`bgnbd_expected_curve` computes the
horizon-free terms once and the fallback only where it is used, with the same
floating-point operations in the same order: its values are bit-for-bit lifetimes'
(tested), about twice as fast at one horizon and three times over twelve.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from scipy.special import hyp2f1

__all__ = ["bgnbd_expected_curve"]


def bgnbd_expected_curve(
    params: Mapping[str, float],
    horizons: Iterable[float],
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
) -> Iterator[np.ndarray]:
    """Yield E[X(T, T + t] | x, t_x, T] for each ``t`` of ``horizons``, in order.

    Parameters
    ----------
    params : mapping
        BG/NBD ``r``, ``alpha``, ``a``, ``b``.
    horizons : iterable of float
        Horizons ``t`` (> 0), in the unit of ``recency`` and ``T``.
    frequency, recency, T : numpy.ndarray
        One-dimensional arrays of the same length (validated by the caller).
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x = frequency
    _a = r + x
    _b = b + x
    _c = a + b + x - 1
    age = alpha + T  # lifetimes' ``alpha + T + t`` is evaluated as ``(alpha + T) + t``
    first_term = (a + b + x - 1) / (a - 1)
    denominator = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + recency)) ** (r + x)
    r_x = r + x
    for t in horizons:
        _z = t / (age + t)
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_hyp_term = np.log(hyp2f1(_a, _b, _c, _z))
            inf = np.isinf(ln_hyp_term)
            if inf.any():
                # The equivalent Euler-transformed form, where the first overflows.
                ci, ai, bi, zi = _c[inf], _a[inf], _b[inf], _z[inf]
                ln_hyp_term[inf] = np.log(hyp2f1(ci - ai, ci - bi, ci, zi)) + (
                    ci - ai - bi
                ) * np.log(1 - zi)
            second_term = 1 - np.exp(ln_hyp_term + r_x * np.log((alpha + T) / (alpha + t + T)))
        yield first_term * second_term / denominator
