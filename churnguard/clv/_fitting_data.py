"""Weighted purchase patterns prepared for the objectives, and their per-frequency terms.

`prepare_purchase` turns unique ``(x, tx, T)`` patterns with their customer counts into a
`PurchaseData`: times scaled by ``1 / max T`` (lifetimes' scaling, so the penalizer means
what it meant there) and the index decompositions every objective evaluation reuses (unique
``x``, unique ``T``, and for Pareto/NBD the unique ``(x, u)`` pairs of its integrals).

The ``x``-only factors of the likelihoods are computed here once per unique frequency
(`rising_log` for the ``Γ`` ratio, `beta_ratio` for the ``B`` ratio of the BG models). For
integer ``x`` they are cumulative sums over ``j < x`` (``lgamma(r+x) - lgamma(r) = Σ
log(r+j)``, ``B(a, b+x)/B(a, b) = Π (b+j)/(a+b+j)``), which stay exact for any ``b``
(``betaln`` differences are off by 1e-10 already at ``b = 5e4``, and lose everything near
the boundary ``b ~ e^30``) and cost ``max(x)`` logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import betaln, digamma, gammaln

from churnguard.clv._fitting_optimizer import dot
from churnguard.clv._likelihood_inputs import unique_rows

__all__ = ["PurchaseData", "beta_ratio", "prepare_purchase", "rising_log"]

# Integer frequencies up to this use cumulative sums for the x-only terms (exact at any
# parameter size); beyond it, gammaln/digamma differences on the unique frequencies.
_CUMSUM_MAX_X = 200_000


@dataclass(frozen=True)
class PurchaseData:
    """Weighted patterns in scaled time, with the index decompositions the objective uses.

    Build with `prepare_purchase`. Times are divided by ``max T`` (lifetimes does the
    same, and its penalty is on the parameters in that unit).
    """

    x: np.ndarray
    tx: np.ndarray
    T: np.ndarray
    w: np.ndarray
    scale: float
    total_weight: float
    weighted_x: float
    # unique frequencies: x = ux[ix]; Wx = weight per unique x
    ux: np.ndarray
    ix: np.ndarray
    Wx: np.ndarray
    # unique T: T = uT[iT]; WT / WxT = weight and weight * x per unique T
    uT: np.ndarray
    iT: np.ndarray
    WT: np.ndarray
    WxT: np.ndarray
    # T - tx per pattern
    dT: np.ndarray
    # max(x) when every x is an integer <= _CUMSUM_MAX_X, else -1
    cumsum_n: int

    @cached_property
    def pairs(self) -> _Pairs:
        """The (x, u) pairs of the Pareto/NBD integrals, built on first use."""
        n = len(self.x)
        # one table over both limits: G(x, tx) and G(x, T)
        codes, (pair_ix, pair_u) = unique_rows(
            np.concatenate([self.ix, self.ix]).astype(float), np.concatenate([self.tx, self.T])
        )
        return _Pairs(self.ux[pair_ix.astype(np.int64)], pair_u, codes[:n], codes[n:])


@dataclass(frozen=True)
class _Pairs:
    """Unique (x, u) of a `PurchaseData`: ``G(x, tx) = G[ptx]``, ``G(x, T) = G[pT]``."""

    x: np.ndarray
    u: np.ndarray
    ptx: np.ndarray
    pT: np.ndarray


def prepare_purchase(
    x: np.ndarray, tx: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None
) -> PurchaseData:
    """Scale times by ``1 / max(T)`` and index the patterns for the objective.

    Parameters
    ----------
    x, tx, T : numpy.ndarray
        Repeat purchases, recency and age of each pattern (1-d, same length; validated by
        the caller: finite, ``0 <= tx <= T``, ``max(T) > 0``).
    weights : numpy.ndarray, optional
        Customers per pattern (any positive numbers); 1 each by default.

    Returns
    -------
    PurchaseData
        The prepared data, reusable across penalizers and models.
    """
    freq = np.asarray(x, dtype=float)
    age = np.asarray(T, dtype=float)
    scale = 1.0 / float(age.max())
    rec = np.minimum(np.asarray(tx, dtype=float), age) * scale
    age = age * scale
    w = np.ones_like(freq) if weights is None else np.asarray(weights, dtype=float)
    ux, ix = np.unique(freq, return_inverse=True)
    uT, iT = np.unique(age, return_inverse=True)
    integer = bool(np.all(ux == np.round(ux)))
    cumsum_n = int(ux[-1]) if integer and ux[-1] <= _CUMSUM_MAX_X else -1
    return PurchaseData(
        x=freq,
        tx=rec,
        T=age,
        w=w,
        scale=scale,
        total_weight=float(w.sum()),
        weighted_x=dot(w, freq),
        ux=ux,
        ix=ix,
        Wx=np.bincount(ix, w, minlength=len(ux)),
        uT=uT,
        iT=iT,
        WT=np.bincount(iT, w, minlength=len(uT)),
        WxT=np.bincount(iT, w * freq, minlength=len(uT)),
        dT=age - rec,
        cumsum_n=cumsum_n,
    )


def rising_log(r: float, data: PurchaseData) -> tuple[np.ndarray, np.ndarray]:
    """``lgamma(r+x) - lgamma(r)`` and ``digamma(r+x) - digamma(r)`` on the unique x."""
    if data.cumsum_n >= 0:
        j = np.arange(data.cumsum_n, dtype=float) + r
        logs = np.concatenate([[0.0], np.cumsum(np.log(j))])
        invs = np.concatenate([[0.0], np.cumsum(1.0 / j)])
        idx = data.ux.astype(np.int64)
        return logs[idx], invs[idx]
    ux = data.ux
    return gammaln(r + ux) - gammaln(r), digamma(r + ux) - digamma(r)


def beta_ratio(
    a: float, b: float, data: PurchaseData, shift: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log B(a, b+x+shift) / B(a, b)`` and its derivatives in ``a`` and ``b``, per unique x.

    As products over ``j < x + shift`` of ``(b+j)/(a+b+j)``: each factor is a ``log1p``, so
    the value stays exact when ``b`` is huge and ``a/b`` tiny (a fit at its boundary), where
    the ``betaln`` difference would be rounding noise.
    """
    if data.cumsum_n >= 0:
        j = np.arange(data.cumsum_n + shift, dtype=float)
        bj = b + j
        abj = a + bj
        val = np.concatenate([[0.0], np.cumsum(-np.log1p(a / bj))])
        da = np.concatenate([[0.0], np.cumsum(-1.0 / abj)])
        db = np.concatenate([[0.0], np.cumsum(a / (bj * abj))])
        idx = data.ux.astype(np.int64) + shift
        return val[idx], da[idx], db[idx]
    n = data.ux + shift
    val = betaln(a, b + n) - betaln(a, b)
    da = digamma(a + b) - digamma(a + b + n)
    db = digamma(b + n) - digamma(b) + da
    return val, da, db
