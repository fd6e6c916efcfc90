"""Reasons answer "why is this customer at risk?" against retained peers, with units."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from churnguard.churn import ReasonReference, explain
from churnguard.churn.reasons import peer_group

#: Raw feature names a manager must never read.
RAW_NAMES = re.compile(
    r"\b(days_since_last|mean_gap_days|gap_std_days|max_gap_days|quantity_total|"
    r"p_no_purchase|overdue_ratio|spend_\d+d|purchases_\d+d|n_purchases|total_spend)\b"
    r"|gap std days|max gap days|quantity total|days since last \d|after the first$"
)
UNIT = re.compile(
    r"(\bdays?\b|%|\$|purchases?\b|transactions?\b|items?\b|returns?\b|spen[dt]|\bpoints\b)"
)


def reason_problems(text: str) -> list[str]:
    """Rule checks a reason must pass (also run over the demo list in tests/test_cli.py)."""
    problems = []
    if "n/a" in text or "nan" in text.lower().split():
        problems.append("n/a or nan")
    if RAW_NAMES.search(text):
        problems.append("raw feature name")
    if re.search(r"\b\d+(\.\d+)?x the usual gap", text):
        problems.append("ratio of gaps")
    if re.search(r"(?<![\d.,])1 (purchase days|days|purchases|transactions|returns)\b", text):
        problems.append("a plural after 1")
    for part in re.split(r" \| |; (?=[a-z])", re.sub(r"^(raises|lowers) risk: ", "", text)):
        part = re.sub(r"^(raises|lowers) risk: ", "", part)
        if (
            part
            and not part.startswith(("close to retained", "not explained"))
            and not UNIT.search(part)
        ):
            problems.append(f"no unit in {part!r}")
    raises = text.split(" | ")[0] if text.startswith("raises risk") else ""
    lowers = text.split("lowers risk: ")[1] if "lowers risk: " in text else ""
    # Direction rules: a long silence never lowers risk, recent activity never raises it.
    if re.search(r"no purchase for \d", lowers):
        problems.append("a silence listed as lowering risk")
    for m in re.finditer(r"(\d+)% chance of a purchase.*?retained peers: (\d+)%", raises):
        if int(m.group(1)) > int(m.group(2)):
            problems.append("a better chance than peers listed as raising risk")
    return problems


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame(
        {
            "n_purchases": rng.integers(1, 12, n),
            "days_since_last": rng.integers(0, 400, n).astype(float),
            "mean_gap_days": rng.uniform(10, 60, n),
            "p_no_purchase": rng.uniform(0.05, 0.99, n),
            "spend_365d": rng.gamma(2.0, 50.0, n),
            "total_spend": rng.gamma(2.0, 150.0, n),
        }
    )
    # Contributions that follow the values: risky values push the log-odds up.
    contrib = pd.DataFrame(
        {
            "n_purchases": -0.1 * (feats["n_purchases"] - 5),
            "days_since_last": 0.005 * (feats["days_since_last"] - 150),
            "mean_gap_days": 0.01 * (feats["mean_gap_days"] - 35),
            "p_no_purchase": 3.0 * (feats["p_no_purchase"] - 0.5),
            "spend_365d": -0.004 * (feats["spend_365d"] - 100),
            "total_spend": -0.001 * (feats["total_spend"] - 300),
            "bias": 1.0,
        }
    )
    churned = (rng.random(n) < feats["p_no_purchase"]).astype(int).to_numpy()
    return feats, contrib, churned


def test_risky_customers_are_told_what_raises_their_risk_against_retained_peers() -> None:
    feats, contrib, churned = _frame(3000, 1)
    ref = ReasonReference.fit(contrib, feats, churned)
    # Relative to retained peers (not the whole base) a high-risk customer is above them.
    risky = feats["p_no_purchase"] > 0.9
    text = explain(contrib.loc[risky], feats.loc[risky], ref, currency="$")
    assert text.str.startswith("raises risk: ").mean() > 0.95
    assert text.str.contains("chance of a purchase in the next 90 days").mean() > 0.9
    problems = {t: reason_problems(t) for t in text}
    assert not {t: p for t, p in problems.items() if p}


def test_every_reason_passes_the_rules_and_quotes_at_most_three_drivers() -> None:
    feats, contrib, churned = _frame(2000, 2)
    ref = ReasonReference.fit(contrib, feats, churned)
    text = explain(contrib, feats, ref, top_k=3, currency="$", horizon_days=60)
    bad = {t: reason_problems(t) for t in text if reason_problems(t)}
    assert not bad, list(bad.items())[:5]
    # Each quoted driver compares the customer with their retained peers once.
    assert (text.str.count("retained peers") <= 3).all()
    assert text.str.contains("next 60 days").any()


def test_gap_never_lowers_the_risk_of_an_overdue_customer() -> None:
    feats = pd.DataFrame(
        {"n_purchases": [6], "days_since_last": [445.0], "mean_gap_days": [2.0],
         "p_no_purchase": [0.99], "spend_365d": [0.0], "total_spend": [6552.7]}
    )  # fmt: skip
    contrib = pd.DataFrame(
        {"n_purchases": [0.0], "days_since_last": [1.0], "mean_gap_days": [-2.0],
         "p_no_purchase": [3.0], "spend_365d": [0.5], "total_spend": [-0.2], "bias": [1.0]}
    )  # fmt: skip
    ref_feats, ref_contrib, churned = _frame(500, 3)
    ref = ReasonReference.fit(ref_contrib, ref_feats, churned)
    text = explain(contrib, feats, ref, currency="$").iloc[0]
    assert "no purchase for 445 days; used to buy every 2 days" in text
    assert "usually buys every" not in text  # the gap would "lower risk": not quoted
    assert not reason_problems(text)


def test_peer_groups_follow_the_number_of_purchases() -> None:
    np.testing.assert_array_equal(peer_group([1, 2, 3, 4, 7, 8, 50]), [0, 1, 1, 2, 2, 3, 3])


def test_reason_checker_catches_the_old_glitches() -> None:
    assert reason_problems("lowers risk: n/ax the usual gap since last purchase")
    assert reason_problems("raises risk: gap std days 1.0")
    assert reason_problems("lowers risk: no purchase for 445 days; used to buy every 21 days")
    assert reason_problems("raises risk: last repeat purchase 446 after the first")
    assert reason_problems("raises risk: 1 purchase days in the last 180 days (retained peers: 4)")
    assert not reason_problems("raises risk: 1 purchase day in the last 180 days (peers: 4)")


def test_a_driver_shared_by_every_customer_is_quoted_first_on_its_side() -> None:
    feats, contrib, churned = _frame(400, 3)
    ref = ReasonReference.fit(contrib, feats, churned)
    plain = explain(contrib, feats, ref, currency="$")
    n = len(feats)
    text = np.where(np.arange(n) % 3 == 0, "", "customers have been leaving 3.0x faster")
    up = np.arange(n) % 2 == 0
    got = explain(contrib, feats, ref, currency="$", shared=(text, up))
    for i in range(n):
        if text[i] == "":
            assert got.iloc[i] == plain.iloc[i]
        elif up[i]:
            assert got.iloc[i].startswith("raises risk: customers have been leaving 3.0x faster")
        else:
            assert "lowers risk: customers have been leaving 3.0x faster" in got.iloc[i]
            assert got.iloc[i].count("raises risk") == plain.iloc[i].count("raises risk")
