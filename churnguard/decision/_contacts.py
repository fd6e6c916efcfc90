"""Whom to contact: spend a capacity or budget on the best expected net benefit.

Why a module of its own: once :meth:`churnguard.decision.playbook.Playbook.assign` has
given every customer an action, a unit cost and an ``expected_net_benefit``, choosing
the contacts (:func:`select_contacts`, a greedy prefix, best benefit first) and
reporting what the campaign is expected to return (:func:`contact_summary`) need only
those columns, not the playbook. Both are re-exported by
:mod:`churnguard.decision.playbook`, their public import path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from churnguard._checks import check_number, require_frame, require_numeric
from churnguard.decision._ranks import ranked_positions
from churnguard.exceptions import ParameterTypeError

__all__ = ["contact_summary", "select_contacts"]

# Budget sums are compared with a relative tolerance so that costs of 0.1 + 0.2
# still fit a budget of 0.3 despite binary floating point.
_BUDGET_RTOL = 1e-9


def select_contacts(
    df: pd.DataFrame, *, capacity: int | None = None, budget: float | None = None
) -> pd.Series:
    """Choose whom to contact: best expected net benefit first, within limits.

    Customers are taken in decreasing ``expected_net_benefit`` (ties by
    ``customer_id``, then row position) as a **greedy prefix**: selection stops
    at the first customer whose benefit is not positive, who would exceed
    ``capacity``, or whose ``unit_cost`` would take the running total above
    ``budget``. It never skips an expensive customer to fit a cheaper one
    further down: the list is then exactly "the top k", easy to explain and
    stable when the budget changes, at the price of possibly leaving a little
    budget unspent.

    Parameters
    ----------
    df : DataFrame
        With ``expected_net_benefit`` and ``unit_cost`` (see
        :meth:`churnguard.decision.playbook.Playbook.assign`).
    capacity : int, optional
        Maximum number of customers to contact (e.g. calls an account team can make).
    budget : float, optional
        Maximum total unit cost.

    Returns
    -------
    Series
        Boolean named ``contact``, indexed like ``df``.
    """
    require_frame(df, "select_contacts")
    require_numeric(
        df,
        ["expected_net_benefit", "unit_cost"],
        func="select_contacts",
        hint="Join Playbook.assign(df) first: df.join(playbook.assign(df)).",
    )
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 0
    ):
        raise ParameterTypeError(
            f"capacity must be a whole number >= 0 or None; received {capacity!r}."
        )
    if budget is not None:
        budget = check_number(budget, "budget", low=0.0, high=math.inf, example="5000.0")
    order = ranked_positions(df["expected_net_benefit"], df)
    net = df["expected_net_benefit"].to_numpy(dtype=float)[order]
    ok = net > 0
    if capacity is not None:
        ok &= np.arange(len(df)) < capacity
    if budget is not None:
        spent = np.cumsum(df["unit_cost"].to_numpy(dtype=float)[order])
        ok &= spent <= budget * (1 + _BUDGET_RTOL) + _BUDGET_RTOL
    chosen = np.empty(len(df), dtype=bool)
    chosen[order] = np.logical_and.accumulate(ok)
    return pd.Series(chosen, index=df.index, name="contact")


def contact_summary(df: pd.DataFrame) -> dict[str, Any]:
    """What the selected contacts cost and are expected to return.

    Parameters
    ----------
    df : DataFrame
        With a boolean ``contact`` column (see :func:`select_contacts`) and
        ``unit_cost``, ``save_rate``, ``value_at_risk``.

    Returns
    -------
    dict
        ``n_contacted``; ``spend`` (sum of unit costs); ``expected_value_retained``
        (sum of ``value_at_risk * save_rate``); ``expected_net_benefit``
        (retained minus spend), all over contacted customers.
    """
    require_frame(df, "contact_summary")
    require_numeric(
        df,
        ["contact", "unit_cost", "save_rate", "value_at_risk"],
        func="contact_summary",
        hint="Add contact with df.assign(contact=select_contacts(df, ...)) after joining "
        "Playbook.assign(df).",
    )
    chosen = df.loc[df["contact"].astype(bool)]
    spend = float(chosen["unit_cost"].sum())
    retained = float((chosen["value_at_risk"] * chosen["save_rate"]).sum())
    return {
        "n_contacted": len(chosen),
        "spend": spend,
        "expected_value_retained": retained,
        "expected_net_benefit": retained - spend,
    }
