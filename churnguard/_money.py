"""Money kept: the share of a customer's gross spend they did not return.

Shared by the value stage (net value columns, :mod:`churnguard.clv.value`, which exports
:func:`kept_share` publicly) and the decision layer (the RFM monetary score), which may not
import the value stage: both must read a customer's returns the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["kept_share", "net_monetary_value"]


def kept_share(frame: pd.DataFrame) -> np.ndarray | None:
    """The share of each customer's gross spend they kept (did not return), in ``[0, 1]``.

    Gamma-Gamma models what a customer spends per purchase, not what they bring back,
    so a customer who returns most of what they buy would keep the value of a big
    spender. churnguard's value columns are *net*: the model's gross value times this
    share, ``total_spend / (total_spend + returned_amount)`` (net over gross spend so
    far), clipped to ``[0, 1]``: 0 when returns have cancelled every purchase, 1
    without a return. A customer's own history is the estimate because returning is a
    habit of the customer (and their basket) more than of the season.

    Parameters
    ----------
    frame : DataFrame
        A feature table with ``total_spend`` (net) and ``returned_amount`` (a positive
        amount), as :class:`~churnguard.features.FeatureBuilder` builds it.

    Returns
    -------
    ndarray or None
        One share per row; None when the table has no return at all (or lacks those
        columns), so callers leave their values exactly as they are.
    """
    if "returned_amount" not in frame.columns or "total_spend" not in frame.columns:
        return None
    returned = np.nan_to_num(frame["returned_amount"].to_numpy(dtype=float))
    if not (returned > 0).any():
        return None
    gross = np.nan_to_num(frame["total_spend"].to_numpy(dtype=float)) + returned
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip((gross - returned) / gross, 0.0, 1.0)
    return np.where(returned > 0, np.where(gross > 0, share, 0.0), 1.0)


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
