"""Plain-English labels of the list's codes, for people reading a console or a report.

The list keeps short codes (``vip``, ``cant_lose``, ``high``) because files are read by
programs too; what a manager reads says ``VIP``, ``Can't lose``, ``High risk``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COLUMN_LABELS", "label", "labels", "money"]

_LABELS: dict[str, str] = {
    "vip": "VIP",
    "stable": "Stable",
    "low": "Low",
    "medium": "Medium",
    "high": "High",
    "champions": "Champions",
    "loyal": "Loyal",
    "cant_lose": "Can't lose",
    "at_risk": "At risk",
    "potential_loyalist": "Potential loyalist",
    "new": "New",
    "promising": "Promising",
    "need_attention": "Needs attention",
    "about_to_sleep": "About to sleep",
    "lost": "Lost",
    "hibernating": "Hibernating",
    "win_back": "Win-back",
    "other": "Other",
}

#: Column headings of the list as people read them.
COLUMN_LABELS: dict[str, str] = {
    "priority": "Priority",
    "customer_id": "Customer",
    "churn_probability": "Churn risk",
    "p_alive": "P(active)",
    "expected_purchases": "Expected purchases",
    "predicted_clv": "Expected value",
    "value_if_retained": "Value if retained",
    "value_at_risk": "Value at risk",
    "value_tier": "Tier",
    "segment": "Segment",
    "risk_band": "Risk",
    "action": "Action",
    "reasons": "Why",
    "expected_net_benefit": "Net benefit",
    "contact": "Contact",
    "ranked_by": "Ranked by",
}


def label(code: Any) -> str:
    """``cant_lose`` -> ``Can't lose``; an unknown code loses its underscores."""
    text = str(code)
    return _LABELS.get(text, text.replace("_", " ").capitalize())


def labels(codes: Any) -> np.ndarray:
    """:func:`label` of every code (each distinct code translated once)."""
    arr = np.asarray(codes, dtype=object)
    uniq, inv = np.unique(arr.astype(str), return_inverse=True)
    return np.array([label(u) for u in uniq], dtype=object)[inv.reshape(-1)]


def money(value: float, currency: str = "", decimals: int = 0) -> str:
    """``1234.5`` -> ``$1,235`` (thousands separators, currency prefix)."""
    return f"{currency}{value:,.{decimals}f}"
