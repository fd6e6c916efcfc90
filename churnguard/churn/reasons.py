"""Per-customer reasons: LightGBM feature contributions turned into short text.

For each customer the features with the largest contributions to the churn
log-odds are phrased in business language, e.g. "42 days since last purchase vs
usual 20-day gap" or "spend down 60% vs previous 90 days". Text is built per
feature over all customers at once (vectorised), never per customer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["describe_feature", "explain"]


def _num(s: pd.Series, fmt: str = "{:.0f}") -> pd.Series:
    """Format numbers as text without a per-row Python call (``fmt`` gives the decimals)."""
    decimals = int(fmt.split(".")[1][0]) if "." in fmt else 0
    v = pd.to_numeric(s, errors="coerce").astype("float64").round(decimals)
    if decimals == 0:
        text = v.astype("Int64").astype("string")
    else:
        text = v.astype("string")
    return text.fillna("n/a").astype(object)


def _days_since_last(f: pd.DataFrame) -> pd.Series:
    base = _num(f["days_since_last"]) + " days since last purchase"
    if "mean_gap_days" not in f:
        return base
    gap = f["mean_gap_days"]
    with_gap = base + " vs usual " + _num(gap) + "-day gap"
    one_time = base.str.replace("last purchase", "first and only purchase", regex=False)
    return with_gap.where(gap.notna(), one_time)


def _ratio_text(col: str, what: str, days: str) -> Callable[[pd.DataFrame], pd.Series]:
    def text(f: pd.DataFrame) -> pd.Series:
        r = f[col]
        pct = ((r - 1.0).abs() * 100).round()
        out = pd.Series(f"no {what} in either of the last two {days}-day periods", index=f.index)
        out = out.mask(r < 1, what + " down " + _num(pct) + f"% vs previous {days} days")
        out = out.mask(r >= 1, what + " up " + _num(pct) + f"% vs previous {days} days")
        prev = f.get(f"{'spend' if what == 'spend' else 'purchases'}_prev_{days}d")
        if prev is not None:
            out = out.mask(
                r.isna() & (prev == 0), f"no {what} in the {days} days before the last {days}"
            )
        return out

    return text


def _window(col: str) -> Callable[[pd.DataFrame], pd.Series]:
    days = col.rsplit("_", 1)[-1].rstrip("d")

    def text(f: pd.DataFrame) -> pd.Series:
        v = f[col]
        if col.startswith("purchases"):
            return pd.Series(
                np.where(v == 0, f"no purchase in the last {days} days", ""), index=f.index
            ).where(v == 0, _num(v) + f" purchase days in the last {days} days")
        return "spend " + _num(v, "{:.2f}") + f" in the last {days} days"

    return text


_TEMPLATES: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "days_since_last": _days_since_last,
    "overdue_ratio": lambda f: (
        _num(f["overdue_ratio"], "{:.1f}") + "x the usual gap since last purchase"
    ),
    "frequency": lambda f: _num(f["frequency"]) + " repeat purchases so far",
    "n_purchases": lambda f: _num(f["n_purchases"]) + " purchase days so far",
    "recency": lambda f: "last repeat purchase " + _num(f["recency"]) + " after the first",
    "T": lambda f: "customer for " + _num(f["T"]) + " time units",
    "days_since_first": lambda f: "customer for " + _num(f["days_since_first"]) + " days",
    "p_alive": lambda f: "P(alive) " + _num(f["p_alive"] * 100) + "% from purchase pattern",
    "expected_purchases": lambda f: (
        _num(f["expected_purchases"], "{:.1f}") + " purchases expected over the horizon"
    ),
    "predicted_clv": lambda f: "predicted value " + _num(f["predicted_clv"], "{:.0f}"),
    "monetary_value": lambda f: "average repeat basket " + _num(f["monetary_value"], "{:.2f}"),
    "avg_purchase_value": lambda f: "average basket " + _num(f["avg_purchase_value"], "{:.2f}"),
    "total_spend": lambda f: "lifetime spend " + _num(f["total_spend"], "{:.2f}"),
    "mean_gap_days": lambda f: "usually buys every " + _num(f["mean_gap_days"]) + " days",
    "gap_cv": lambda f: "irregular buyer (gap variation " + _num(f["gap_cv"], "{:.1f}") + ")",
    "return_rate": lambda f: _num(f["return_rate"] * 100) + "% of transactions returned",
    "purchase_rate_per_year": lambda f: (
        _num(f["purchase_rate_per_year"], "{:.1f}") + " purchases a year"
    ),
}


def describe_feature(name: str, features: pd.DataFrame) -> pd.Series:
    """Phrase feature ``name`` for every row of ``features`` as short text."""
    if name in _TEMPLATES:
        return _TEMPLATES[name](features).astype(str)
    if name.startswith("spend_ratio_"):
        return _ratio_text(name, "spend", name.split("_")[-1].rstrip("d"))(features).astype(str)
    if name.startswith("purchases_ratio_"):
        return _ratio_text(name, "purchases", name.split("_")[-1].rstrip("d"))(features).astype(str)
    if (name.startswith(("purchases_", "spend_"))) and name.endswith("d") and "prev" not in name:
        return _window(name)(features).astype(str)
    return (name.replace("_", " ") + " " + _num(features[name], "{:.3g}")).astype(str)


def explain(contributions: pd.DataFrame, features: pd.DataFrame, top_k: int = 3) -> pd.Series:
    """Readable reasons for each customer's churn score.

    Parameters
    ----------
    contributions : DataFrame
        Feature contributions to the log-odds (from
        :meth:`ChurnClassifier.contributions`); a ``bias`` column is ignored.
    features : DataFrame
        The feature values, aligned row by row with ``contributions``.
    top_k : int
        Number of drivers quoted per customer.

    Returns
    -------
    Series of str
        e.g. ``"raises risk: 120 days since last purchase vs usual 30-day gap; no
        purchase in the last 90 days | lowers risk: 12 repeat purchases so far"``.
    """
    contrib = contributions.drop(columns=["bias"], errors="ignore")
    names = np.asarray(contrib.columns)
    values = contrib.to_numpy(dtype=float)
    order = np.argsort(-np.abs(values), axis=1)[:, :top_k]
    n = len(contrib)
    rows = np.arange(n)
    feats = features.reset_index(drop=True)
    raises = np.full(n, "", dtype=object)
    lowers = np.full(n, "", dtype=object)
    for k in range(order.shape[1]):
        idx = order[:, k]
        sign = values[rows, idx]
        text = np.full(n, "", dtype=object)
        for j in np.unique(idx):
            mask = idx == j
            text[mask] = describe_feature(str(names[j]), feats.loc[mask]).to_numpy()
        sep_r = np.where(raises == "", "", "; ")
        sep_l = np.where(lowers == "", "", "; ")
        raises = np.where(sign > 0, raises + sep_r + text, raises)
        lowers = np.where(sign <= 0, lowers + sep_l + text, lowers)
    r = pd.Series(raises, index=contributions.index)
    lo = pd.Series(lowers, index=contributions.index)
    out = ("raises risk: " + r).where(r != "", "")
    both = (r != "") & (lo != "")
    out = out.where(~both, out + " | ")
    out = out + ("lowers risk: " + lo).where(lo != "", "")
    return out
