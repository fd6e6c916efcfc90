"""Why is this customer at risk? Drivers a manager can check, in the customer's own terms.

A model's feature contributions (TreeSHAP) are measured against the population's
average prediction. When most customers churn (86% on CDNOW), nearly every customer is
"below average" and a 75%-risk customer would be told that everything *lowers* their
risk. So the contributions are measured against a reference a manager knows instead:
the **retained customers with a similar number of purchases** (peers), learned on the
latest labelled snapshot at training and stored in the model (:class:`ReasonReference`).
A driver raises risk when it pushes this customer's score above their retained peers'.

A driver is only quoted when its stated direction agrees with the value it describes:
each feature has a known business direction (a longer silence is riskier, more recent
purchases are safer), and "raises risk" is only said of a value on the risky side of the
peers' typical value. Each driver is phrased with units, against the customer's own past
where there is one ("no purchase for 445 days; used to buy every 21 days") or against
the peers ("3 purchases in the last 365 days; retained peers: 7"). Text is built per
feature over all customers at once (vectorised), never per customer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "DIRECTIONS",
    "ReasonReference",
    "describe_driver",
    "explain",
    "peer_group",
]

#: Peer groups: retained customers with a similar number of purchase days so far.
PEER_EDGES = (1, 2, 4, 8)
_PEER_NAMES = ("one-time", "2-3 purchases", "4-7 purchases", "8+ purchases")

#: Business direction of each feature: +1 when more of it means more risk, -1 when
#: more means less risk. Features without a clear direction are never quoted.
DIRECTIONS: dict[str, int] = {
    "days_since_last": 1,
    "overdue_ratio": 1,
    "p_no_purchase": 1,
    "p_alive": -1,
    "expected_purchases": -1,
    "frequency": -1,
    "n_purchases": -1,
    "n_transactions": -1,
    "total_spend": -1,
    "avg_purchase_value": -1,
    "monetary_value": -1,
    "mean_gap_days": 1,
    "gap_cv": 1,
    "max_gap_days": 1,
    "purchase_rate_per_year": -1,
    "return_rate": 1,
    "n_returns": 1,
    "returned_amount": 1,
    "margin_total": -1,
    "margin_rate": -1,
    "quantity_total": -1,
    "avg_quantity_per_purchase": -1,
    "n_channels": -1,
}


#: Features that together describe the customer's purchase rhythm: quoted as one driver
#: (the silence against their own usual gap, and the purchase pattern's chance of a
#: purchase in the horizon), so a customer is never told the same thing three ways.
RHYTHM = ("p_no_purchase", "days_since_last", "overdue_ratio", "p_alive", "expected_purchases")
_RHYTHM = "purchase_rhythm"
# Gap features cannot *lower* the risk of a customer silent for this many usual gaps.
_OVERDUE = 2.0
_GAPS = ("mean_gap_days", "max_gap_days", "gap_cv", "purchase_rate_per_year")


def _direction(name: str) -> int:
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    if name.startswith(("purchases_ratio_", "spend_ratio_")):
        return -1  # falling spend or purchases raise risk
    if name.startswith(("purchases_", "spend_", "n_products")) and "prev" not in name:
        return -1
    return 0


def peer_group(n_purchases: pd.Series | np.ndarray) -> np.ndarray:
    """Peer group of each customer (0..3) by purchase days so far: 1, 2-3, 4-7, 8+."""
    n = np.asarray(n_purchases, dtype=float)
    return (np.searchsorted(np.asarray(PEER_EDGES[1:]), n, side="right")).astype(np.int8)


@dataclass
class ReasonReference:
    """Mean contributions and typical feature values of retained peers, per peer group.

    Attributes
    ----------
    contributions : DataFrame
        One row per peer group (0..3): the mean contribution of each feature (and the
        bias) among retained customers of that group.
    values : DataFrame
        One row per peer group: the median of each feature among them.
    counts : list of int
        Retained customers in each group.
    """

    contributions: pd.DataFrame = field(default_factory=pd.DataFrame)
    values: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts: list[int] = field(default_factory=list)

    @classmethod
    def fit(
        cls, contributions: pd.DataFrame, features: pd.DataFrame, churned: np.ndarray
    ) -> ReasonReference:
        """Learn from labelled rows: contributions, features and outcomes, row-aligned.

        A group with no retained customer borrows the overall retained mean.
        """
        kept = np.asarray(churned) == 0
        if not kept.any():
            kept = np.ones(len(kept), dtype=bool)
        group = peer_group(features["n_purchases"].to_numpy())
        c = contributions.reset_index(drop=True).loc[kept]
        f = features.reset_index(drop=True).loc[kept].select_dtypes("number")
        g = group[kept]
        overall_c, overall_f = c.mean(), f.median()
        rows_c, rows_f, counts = [], [], []
        for k in range(len(PEER_EDGES)):
            hit = g == k
            counts.append(int(hit.sum()))
            rows_c.append(c.loc[hit].mean() if hit.sum() >= 20 else overall_c)
            rows_f.append(f.loc[hit].median() if hit.sum() >= 20 else overall_f)
        return cls(pd.DataFrame(rows_c), pd.DataFrame(rows_f), counts)


# ----------------------------------------------------------------------- phrasing
def _num(values: np.ndarray, decimals: int = 0) -> np.ndarray:
    """Numbers as text with thousands separators, vectorised over whole columns."""
    v = np.round(np.asarray(values, dtype=float), decimals)
    fmt = f"{{:,.{decimals}f}}"
    uniq, inv = np.unique(v, return_inverse=True)  # few distinct values: format once each
    return np.array([fmt.format(u) for u in uniq], dtype=object)[inv.reshape(-1)]


def _money(values: np.ndarray, currency: str) -> np.ndarray:
    text = _num(values, 2)
    return (currency + text) if currency else text


def _pct(values: np.ndarray) -> np.ndarray:
    return _num(100 * np.asarray(values, dtype=float)) + "%"


Phrase = Callable[[pd.DataFrame, pd.DataFrame, str, int], np.ndarray]


def _unit(number: np.ndarray, plural: str) -> np.ndarray:
    """``plural`` (e.g. `` days so far``) after each number, singular after exactly 1."""
    singular = re.sub(r"\b(day|purchase|transaction|return|item)s\b", r"\1", plural, count=1)
    return np.where(number == "1", singular, plural)


def _silence(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
    days = f["days_since_last"].to_numpy(dtype=float)
    gap = f["mean_gap_days"].to_numpy(dtype=float) if "mean_gap_days" in f else np.nan * days
    n = _num(days)
    base = "no purchase for " + n + _unit(n, " days")
    every = _num(np.where(np.isfinite(gap), gap, 0))
    own = base + "; used to buy every " + every + _unit(every, " days")
    once = base + " since the first and only purchase"
    return np.where(np.isfinite(gap) & (gap > 0), own, once)


def _recent(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
    days = f["days_since_last"].to_numpy(dtype=float)
    n = _num(days)
    text = "last purchase " + n + _unit(n, " days ago")
    return np.where(days == 0, "last purchase 0 days ago (on the scoring date)", text)


def _labelled(col: str, before: str, after: str, decimals: int = 0) -> Phrase:
    def phrase(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
        own = _num(f[col].to_numpy(dtype=float), decimals)
        typical = _num(peers[col].to_numpy(dtype=float), decimals)
        return before + own + _unit(own, after) + " (retained peers: " + typical + ")"

    return phrase


def _money_labelled(col: str, before: str, after: str = "") -> Phrase:
    def phrase(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
        own = _money(f[col].to_numpy(dtype=float), currency)
        typical = _money(peers[col].to_numpy(dtype=float), currency)
        return before + own + after + " (retained peers: " + typical + ")"

    return phrase


def _share(col: str, label: str, *, complement: bool = False) -> Phrase:
    """A probability or rate as a percentage, own and peers'."""

    def phrase(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
        own, typical = f[col].to_numpy(dtype=float), peers[col].to_numpy(dtype=float)
        if complement:
            own, typical = 1 - own, 1 - typical
        text = label.replace("{horizon}", str(horizon))
        return _pct(own) + text + " (retained peers: " + _pct(typical) + ")"

    return phrase


def _ratio(col: str, what: str) -> Phrase:
    days = col.rsplit("_", 1)[-1].rstrip("d")

    def phrase(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
        r = f[col].to_numpy(dtype=float)
        pct = _num(np.abs(r - 1.0) * 100)
        down = f"{what} down " + pct + f"% on the previous {days} days"
        up = f"{what} up " + pct + f"% on the previous {days} days"
        return np.where(r < 1, down, up)

    return phrase


def _window(col: str) -> Phrase:
    days = col.rsplit("_", 1)[-1].rstrip("d")
    if col.startswith("purchases_"):

        def count(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
            v = f[col].to_numpy(dtype=float)
            typical = _num(peers[col].to_numpy(dtype=float))
            text = np.select(
                [v == 0, v == 1],
                [f"no purchase in the last {days} days", f"1 purchase day in the last {days} days"],
                _num(v) + f" purchase days in the last {days} days",
            )
            return text + " (retained peers: " + typical + ")"

        return count

    def spend(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
        own = _money(f[col].to_numpy(dtype=float), currency)
        typical = _money(peers[col].to_numpy(dtype=float), currency)
        return "spent " + own + f" in the last {days} days (retained peers: " + typical + ")"

    return spend


_TEMPLATES: dict[str, Phrase] = {
    "p_no_purchase": _share(
        "p_no_purchase",
        " chance of a purchase in the next {horizon} days by purchase pattern",
        complement=True,
    ),
    "p_alive": _share("p_alive", " chance still active by purchase pattern"),
    "expected_purchases": _labelled(
        "expected_purchases", "", " purchases expected by purchase pattern", 1
    ),
    "frequency": _labelled("frequency", "", " repeat purchases so far"),
    "n_purchases": _labelled("n_purchases", "", " purchase days so far"),
    "n_transactions": _labelled("n_transactions", "", " transactions so far"),
    "recency": _labelled("recency", "last repeat purchase came ", " days after the first"),
    "total_spend": _money_labelled("total_spend", "lifetime spend "),
    "avg_purchase_value": _money_labelled("avg_purchase_value", "average basket "),
    "monetary_value": _money_labelled("monetary_value", "average repeat basket "),
    "mean_gap_days": _labelled("mean_gap_days", "usually buys every ", " days"),
    "gap_cv": _labelled("gap_cv", "gaps between purchases vary by ", " times their mean", 1),
    "max_gap_days": _labelled("max_gap_days", "longest gap between purchases ", " days"),
    "purchase_rate_per_year": _labelled("purchase_rate_per_year", "", " purchase days a year", 1),
    "return_rate": _share("return_rate", " of transactions returned"),
    "n_returns": _labelled("n_returns", "", " returns so far"),
    "returned_amount": _money_labelled("returned_amount", "returned ", " in total"),
    "margin_total": _money_labelled("margin_total", "lifetime margin "),
    "margin_rate": _share("margin_rate", " margin on spend"),
    "quantity_total": _labelled("quantity_total", "", " items bought so far"),
    "avg_quantity_per_purchase": _labelled(
        "avg_quantity_per_purchase", "", " items per purchase", 1
    ),
    "n_channels": _labelled("n_channels", "bought through ", " channels"),
}


def _chance(f: pd.DataFrame, peers: pd.DataFrame, horizon: int) -> np.ndarray:
    own = _pct(1 - f["p_no_purchase"].to_numpy(dtype=float))
    typical = _pct(1 - peers["p_no_purchase"].to_numpy(dtype=float))
    return (
        own + f" chance of a purchase in the next {horizon} days by purchase pattern "
        "(retained peers: " + typical + ")"
    )


def _rhythm_up(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
    """Risk raised by the rhythm: the silence in the customer's own terms, then the figure."""
    silence = _silence(f, peers, currency, horizon)
    if "p_no_purchase" not in f:
        return silence
    days = f["days_since_last"].to_numpy(dtype=float)
    gap = f["mean_gap_days"].to_numpy(dtype=float) if "mean_gap_days" in f else np.nan * days
    # Quote the silence only when it is long for this customer (or they bought once).
    long = ~np.isfinite(gap) | (days > gap)
    chance = _chance(f, peers, horizon)
    return np.where(long, silence + ": " + chance, chance)


def _rhythm_down(f: pd.DataFrame, peers: pd.DataFrame, currency: str, horizon: int) -> np.ndarray:
    """Risk lowered by the rhythm: the purchase pattern's better chance, then the recency."""
    recent = _recent(f, peers, currency, horizon)
    if "p_no_purchase" not in f:
        return recent
    return _chance(f, peers, horizon) + "; " + recent


def _template(name: str, raises: bool) -> Phrase | None:
    if name == _RHYTHM:
        return _rhythm_up if raises else _rhythm_down
    if name in ("days_since_last", "overdue_ratio"):
        return _silence if raises else _recent
    if name in _TEMPLATES:
        return _TEMPLATES[name]
    if name.startswith("spend_ratio_"):
        return _ratio(name, "spend")
    if name.startswith("purchases_ratio_"):
        return _ratio(name, "purchases")
    if name.startswith(("purchases_", "spend_")) and name.endswith("d") and "prev" not in name:
        return _window(name)
    if name.startswith("n_products"):
        return _labelled(name, "bought ", " different products")
    return None


def describe_driver(
    name: str,
    features: pd.DataFrame,
    peers: pd.DataFrame,
    *,
    raises: bool,
    currency: str = "",
    horizon_days: int = 90,
) -> np.ndarray | None:
    """One driver phrased for every row (None when the feature has no phrasing)."""
    phrase = _template(name, raises)
    if phrase is None:
        return None
    return np.asarray(phrase(features, peers, currency, int(horizon_days)), dtype=object)


def explain(
    contributions: pd.DataFrame,
    features: pd.DataFrame,
    reference: ReasonReference,
    *,
    top_k: int = 3,
    currency: str = "",
    horizon_days: int = 90,
    shared: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.Series:
    """Readable reasons for each customer's churn score, against retained peers.

    Parameters
    ----------
    contributions : DataFrame
        Feature contributions to the log-odds (``bias`` column ignored), row-aligned
        with ``features``.
    features : DataFrame
        The feature values of the same customers (``n_purchases`` picks their peers).
    reference : ReasonReference
        Retained peers' mean contributions and typical values.
    top_k : int
        Most drivers quoted per customer.
    currency : str
        Prefix of money amounts (e.g. ``"$"``).
    horizon_days : int
        The churn horizon, named in the purchase-chance driver.
    shared : (ndarray of str, ndarray of bool), optional
        A driver that is no feature of the customer's (the drift correction's move of
        every customer's score): its text per row ("" for none) and whether it raises
        risk. It is quoted first on its side.

    Returns
    -------
    Series of str
        e.g. ``"raises risk: no purchase for 445 days; used to buy every 21 days; 4%
        chance of a purchase in the next 90 days by purchase pattern (retained peers:
        58%) | lowers risk: lifetime spend 6,552.70 (retained peers: 312.40)"``; a
        customer no driver explains gets a sentence saying so.
    """
    available = [c for c in contributions.columns if c != "bias" and c in features.columns]
    feats = features.reset_index(drop=True)
    group = peer_group(feats["n_purchases"].to_numpy())
    ref_c = reference.contributions.reindex(columns=available).fillna(0.0).to_numpy()[group]
    peers = reference.values.reindex(columns=feats.columns).iloc[group].reset_index(drop=True)
    rel_all = contributions[available].to_numpy(dtype=float) - ref_c
    rhythm = [j for j, c in enumerate(available) if c in RHYTHM]
    anchor = "p_no_purchase" if "p_no_purchase" in available else "days_since_last"
    names = [c for c in available if c not in RHYTHM]
    keep = [j for j, c in enumerate(available) if c not in RHYTHM]
    rel = rel_all[:, keep]
    values = feats[names].to_numpy(dtype=float)
    typical = peers[names].to_numpy(dtype=float)
    direction = np.array([_direction(c) for c in names], dtype=int)
    if rhythm and anchor in feats:
        # One driver for the rhythm: its contributions summed, its side read from the
        # anchor (the purchase pattern's P(no purchase), else the silence).
        names.append(_RHYTHM)
        rel = np.column_stack([rel, rel_all[:, rhythm].sum(axis=1)])
        values = np.column_stack([values, feats[anchor].to_numpy(dtype=float)])
        typical = np.column_stack([typical, peers[anchor].to_numpy(dtype=float)])
        direction = np.append(direction, 1)
    side = np.sign(values - typical) * direction  # +1: on the risky side of the peers
    # A driver may be quoted only when its value says what its contribution says.
    usable = np.isfinite(values) & np.isfinite(typical) & (direction != 0)
    usable &= np.where(rel > 0, side > 0, side < 0)
    if "days_since_last" in feats and "mean_gap_days" in feats:
        # The usual gap cannot lower the risk of a customer long overdue on it.
        days, gap = feats["days_since_last"].to_numpy(float), feats["mean_gap_days"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            overdue = np.nan_to_num(days / gap, nan=np.inf) >= _OVERDUE
        gaps = np.array([c in _GAPS for c in names])
        usable &= ~(overdue[:, None] & gaps[None, :] & (rel < 0))
    strength = np.where(usable, np.abs(rel), 0.0)
    order = np.argsort(-strength, axis=1, kind="stable")[:, : int(top_k)]
    n = len(feats)
    rows = np.arange(n)
    raises = np.full(n, "", dtype=object)
    lowers = np.full(n, "", dtype=object)
    if shared is not None:
        text, up = (np.asarray(a) for a in shared)
        raises = np.where(up, text, "").astype(object)
        lowers = np.where(up, "", text).astype(object)
    for k in range(order.shape[1]):
        idx = order[:, k]
        ok = strength[rows, idx] > 0
        up = rel[rows, idx] > 0
        text = np.full(n, "", dtype=object)
        for j in np.unique(idx[ok]):
            for is_up in (True, False):
                mask = ok & (idx == j) & (up == is_up)
                if not mask.any():
                    continue
                got = describe_driver(
                    names[j],
                    feats.loc[mask],
                    peers.loc[mask],
                    raises=is_up,
                    currency=currency,
                    horizon_days=horizon_days,
                )
                if got is not None:
                    text[mask] = got
        has = text != ""
        raises = np.where(has & up, raises + np.where(raises == "", "", "; ") + text, raises)
        lowers = np.where(has & ~up, lowers + np.where(lowers == "", "", "; ") + text, lowers)
    r = pd.Series(raises, index=contributions.index)
    lo = pd.Series(lowers, index=contributions.index)
    out = ("raises risk: " + r).where(r != "", "")
    both = (r != "") & (lo != "")
    out = out.where(~both, out + " | ")
    out = out + ("lowers risk: " + lo).where(lo != "", "")
    group_name = pd.Series(np.array(_PEER_NAMES, dtype=object)[group], index=out.index)
    empty = "close to retained " + group_name + " customers on every driver"
    return out.where(out != "", empty)
