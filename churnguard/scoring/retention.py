"""From scores to a decision: the prioritised retention list.

Takes the per-customer output of :meth:`ChurnGuardModel.score` and adds what a
CRM team acts on: value tier (20/60/20), RFM segment, risk band, the playbook's
action with its cost and expected net benefit, growth candidates, an optional
budgeted contact flag, and ``priority`` (1 = highest value at risk).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnguard.scoring.playbook import Playbook, contact_summary, select_contacts
from churnguard.scoring.segments import assign_segments, load_segment_rules, rfm_scores
from churnguard.scoring.tiers import (
    assign_value_tiers,
    concentration,
    flag_growth_candidates,
    growth_candidates,
)

__all__ = ["CONTRACT_COLUMNS", "build_retention_list", "retention_summary"]

#: The columns every retention list starts with, in this order (the CLI contract).
CONTRACT_COLUMNS = [
    "customer_id",
    "priority",
    "churn_probability",
    "p_alive",
    "expected_purchases",
    "predicted_clv",
    "value_at_risk",
    "value_tier",
    "segment",
    "action",
    "reasons",
]
_EXTRA = [
    "risk_band",
    "expected_net_benefit",
    "unit_cost",
    "save_rate",
    "growth_score",
    "growth_candidate",
    "contact",
    "historical_revenue",
    "expected_spend",
    "frequency",
    "days_since_last",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
]


def build_retention_list(
    scored: pd.DataFrame,
    *,
    playbook: Playbook | str | os.PathLike[str] | None = None,
    segment_rules: str | os.PathLike[str] | None = None,
    tier_weights: Mapping[str, float] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
) -> pd.DataFrame:
    """Turn scored customers into the prioritised retention list.

    Parameters
    ----------
    scored : DataFrame
        Output of :meth:`ChurnGuardModel.score` (features, value outputs,
        ``churn_probability``, ``value_at_risk``, ``reasons``). Not modified.
    playbook : Playbook or path, optional
        Actions, unit costs and save rates by tier x risk band; the packaged
        default when omitted.
    segment_rules : path, optional
        TOML file of RFM segment rules; the packaged default when omitted.
    tier_weights : mapping, optional
        Weights of the value score behind the tiers (see
        :func:`churnguard.scoring.tiers.value_score`).
    capacity, budget : optional
        Limit the ``contact`` flag to at most ``capacity`` customers and/or a
        total unit cost of ``budget``, in order of expected net benefit.

    Returns
    -------
    DataFrame
        :data:`CONTRACT_COLUMNS` then the supporting columns, sorted by ``priority``.
    """
    if not isinstance(scored, pd.DataFrame):
        raise TypeError(f"scored must be a pandas DataFrame; got {type(scored).__name__}.")
    df = scored.reset_index(drop=True).copy()
    df["historical_revenue"] = df["total_spend"]
    df["value_tier"] = assign_value_tiers(df, weights=tier_weights).astype(str).to_numpy()
    scores = rfm_scores(df)
    for col in scores.columns:
        df[col] = scores[col].to_numpy()
    rules = load_segment_rules(segment_rules)
    df["segment"] = assign_segments(df, rules).astype(str).to_numpy()
    book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
    actions = book.assign(df)
    for col in actions.columns:
        df[col] = actions[col].to_numpy()
    growth = growth_candidates(df)
    df["growth_score"] = growth.to_numpy()
    df["growth_candidate"] = flag_growth_candidates(
        df, risk_thresholds=book.thresholds, scores=growth
    ).to_numpy()
    if capacity is not None or budget is not None:
        df["contact"] = select_contacts(df, capacity=capacity, budget=budget).to_numpy()
    order = np.lexsort(
        (
            df["customer_id"].astype(str).to_numpy(),
            -df["churn_probability"].to_numpy(),
            -df["value_at_risk"].to_numpy(),
        )
    )
    df = df.iloc[order].reset_index(drop=True)
    df.insert(1, "priority", np.arange(1, len(df) + 1))
    extra = [c for c in _EXTRA if c in df.columns]
    return df[CONTRACT_COLUMNS + extra]


def retention_summary(retention: pd.DataFrame) -> dict[str, Any]:
    """Headline figures of a retention list: equity, risk, concentration, contacts."""
    conc = concentration(retention, value_cols=("historical_revenue", "predicted_clv"))
    summary: dict[str, Any] = {
        "customers": len(retention),
        "customer_equity": float(retention["predicted_clv"].sum()),
        "value_at_risk": float(retention["value_at_risk"].sum()),
        "mean_churn_probability": float(retention["churn_probability"].mean()),
        "concentration": conc,
        "tier_risk": tier_risk_matrix(retention).to_dict(orient="index"),
    }
    if "contact" in retention:
        summary["contacts"] = contact_summary(retention.loc[retention["contact"].astype(bool)])
    return summary


def tier_risk_matrix(retention: pd.DataFrame) -> pd.DataFrame:
    """Customers and value at risk per value tier x risk band."""
    grouped = retention.groupby(["value_tier", "risk_band"], observed=True)
    table = grouped.agg(customers=("customer_id", "size"), value_at_risk=("value_at_risk", "sum"))
    table.index = [f"{t}/{r}" for t, r in table.index]
    return table
