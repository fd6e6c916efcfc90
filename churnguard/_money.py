"""Money kept: the share of a customer's gross spend they did not return.

Shared by the value stage (net value columns, :mod:`churnguard.clv.value`, which exports
:func:`kept_share` and :func:`fit_kept_prior` publicly) and the decision layer (the RFM
monetary score), which may not import the value stage: both must read a customer's
returns the same way.

Two readings of the same history:

* **What was kept so far** (``kept_share(frame)``): net over gross spend. It describes
  the past, and the RFM monetary score ranks it.
* **What will be kept** (``kept_share(frame, prior)``): the same ratio shrunk towards the
  base's pooled share, as a Beta-binomial estimate of a rate is shrunk towards the
  population's: ``(net + w * pooled) / (gross + w)`` with ``w`` the mean gross spend of a
  customer. A customer with one returned purchase has not shown that they return
  everything, and one without a return yet may still return. The value columns use this
  reading: with the raw share, one returned first purchase set a customer's value to 0
  and ranked next-window spend worse than ignoring returns altogether
  (``benchmarks/README.md``, sixth session).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "KEPT_SHARE",
    "KeptPrior",
    "fit_kept_prior",
    "kept_share",
    "net_monetary_value",
    "scored_kept_share",
]

#: Column of a scored frame holding each customer's expected kept share (the value
#: columns' factor), so the later value steps read the one the features were built with.
KEPT_SHARE = "kept_share"


@dataclass(frozen=True)
class KeptPrior:
    """The base's pooled kept share and the weight, in money, of that prior.

    Parameters
    ----------
    share : float
        Net over gross spend summed over the base, in ``[0, 1]`` (1: no returns).
    weight : float
        Mean gross spend of the base's customers: how much of a customer's own
        spend it takes to move their estimate halfway from the pooled share.
    """

    share: float
    weight: float


def fit_kept_prior(frame: pd.DataFrame) -> KeptPrior | None:
    """The :class:`KeptPrior` of a feature table, or None without the spend columns."""
    if "returned_amount" not in frame.columns or "total_spend" not in frame.columns:
        return None
    returned = np.nan_to_num(frame["returned_amount"].to_numpy(dtype=float))
    gross = np.maximum(np.nan_to_num(frame["total_spend"].to_numpy(dtype=float)) + returned, 0.0)
    total = float(gross.sum())
    if total <= 0:
        return None
    share = float(np.clip((total - float(returned.sum())) / total, 0.0, 1.0))
    return KeptPrior(share=share, weight=total / max(int((gross > 0).sum()), 1))


def kept_share(frame: pd.DataFrame, prior: KeptPrior | None = None) -> np.ndarray | None:
    """The share of each customer's gross spend they kept (did not return), in ``[0, 1]``.

    Gamma-Gamma models what a customer spends per purchase, not what they bring back,
    so a customer who returns most of what they buy would keep the value of a big
    spender. churnguard's value columns are *net*: the model's gross value times this
    share, ``total_spend / (total_spend + returned_amount)`` (net over gross spend so
    far), clipped to ``[0, 1]``: 0 when returns have cancelled every purchase, 1
    without a return. A customer's own history is the estimate because returning is a
    habit of the customer (and their basket) more than of the season.

    With ``prior`` (:func:`fit_kept_prior` of the training base), the share expected
    from now on: shrunk towards the pooled share (see the module's docstring).

    Parameters
    ----------
    frame : DataFrame
        A feature table with ``total_spend`` (net) and ``returned_amount`` (a positive
        amount), as :class:`~churnguard.features.FeatureBuilder` builds it.
    prior : KeptPrior, optional
        The base's pooled share and its weight.

    Returns
    -------
    ndarray or None
        One share per row; None when neither the table nor the prior has any return (or
        the table lacks those columns), so callers leave their values exactly as they are.
    """
    if "returned_amount" not in frame.columns or "total_spend" not in frame.columns:
        return None
    returned = np.nan_to_num(frame["returned_amount"].to_numpy(dtype=float))
    pooled = 1.0 if prior is None else float(prior.share)
    if not (returned > 0).any() and pooled >= 1.0:
        return None
    gross = np.nan_to_num(frame["total_spend"].to_numpy(dtype=float)) + returned
    if prior is not None:
        w = float(prior.weight)
        kept = np.maximum(gross, 0.0) - returned
        with np.errstate(divide="ignore", invalid="ignore"):
            shrunk = (kept + w * pooled) / (np.maximum(gross, 0.0) + w)
        return np.clip(np.where(np.isfinite(shrunk), shrunk, pooled), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip((gross - returned) / gross, 0.0, 1.0)
    return np.where(returned > 0, np.where(gross > 0, share, 0.0), 1.0)


def scored_kept_share(frame: pd.DataFrame) -> np.ndarray | None:
    """The :data:`KEPT_SHARE` column of a scored frame, else ``kept_share(frame)``."""
    if KEPT_SHARE in frame.columns:
        return np.asarray(frame[KEPT_SHARE].to_numpy(dtype=float))
    return kept_share(frame)


def net_monetary_value(frame: pd.DataFrame) -> pd.Series:
    """``monetary_value`` (gross spend per repeat purchase) times :func:`kept_share`.

    The RFM monetary score ranks this, so a customer whose returns cancelled their
    purchases is not scored as a big spender. Without any return in ``frame`` (or
    without the ``total_spend`` and ``returned_amount`` columns) it is ``monetary_value``
    itself.
    """
    share = kept_share(frame)
    money = frame["monetary_value"]
    if share is None:
        return money
    return money.astype(float) * share
