"""Tests for churnguard.decision.playbook: treatments, contact selection, summaries."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from churnguard.decision.playbook import (
    ASSIGN_COLUMNS,
    Override,
    Playbook,
    Treatment,
    contact_summary,
    select_contacts,
)
from churnguard.decision.reference import RiskBands
from churnguard.exceptions import InputDataError


def _default_dict() -> dict[str, Any]:
    text = (files("churnguard") / "config" / "playbook.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "value_tier": ["vip", "vip", "stable", "low", "low"],
            "churn_probability": [0.9, 0.4, 0.7, 0.8, 0.1],
            "value_at_risk": [900.0, 40.0, 70.0, 8.0, 1.0],
            "segment": ["cant_lose", "loyal", "at_risk", "lost", "new"],
        },
        index=[10, 11, 12, 13, 14],
    )


# --------------------------------------------------------------------------- loading


def test_default_playbook_covers_every_tier_and_band() -> None:
    book = Playbook.load()
    assert len(book.treatments) == 9 and book.thresholds == (0.3, 0.6)
    vip_high = book.treatments[("vip", "high")]
    assert "account manager" in vip_high.action
    assert (vip_high.unit_cost, vip_high.save_rate) == (25.0, 0.35)
    assert book.treatments[("low", "low")].unit_cost == 0.0
    assert book.treatments[("low", "low")].save_rate == 0.0
    assert book.overrides == ()


def test_playbook_from_user_file(tmp_path: Path) -> None:
    text = (files("churnguard") / "config" / "playbook.toml").read_text(encoding="utf-8")
    path = tmp_path / "book.toml"
    path.write_text(text.replace("unit_cost = 25.0", "unit_cost = 40"), encoding="utf-8")
    assert Playbook.load(path).treatments[("vip", "high")].unit_cost == 40.0
    with pytest.raises(FileNotFoundError, match="playbook.toml"):
        Playbook.load(tmp_path / "missing.toml")


def _broken(edit: str) -> dict[str, Any]:
    data = _default_dict()
    if edit == "missing_pair":
        del data["actions"]["vip"]["medium"]
    elif edit == "negative_cost":
        data["actions"]["stable"]["low"]["unit_cost"] = -1.0
    elif edit == "save_rate_above_1":
        data["actions"]["low"]["high"]["save_rate"] = 1.5
    elif edit == "unknown_tier":
        data["actions"]["gold"] = data["actions"]["vip"]
    elif edit == "unknown_band":
        data["actions"]["vip"]["critical"] = data["actions"]["vip"]["high"]
    elif edit == "unknown_key":
        data["actions"]["vip"]["low"]["discount"] = 0.1
    elif edit == "missing_key":
        del data["actions"]["vip"]["low"]["save_rate"]
    elif edit == "reversed_thresholds":
        data["risk_bands"]["thresholds"] = [0.6, 0.3]
    elif edit == "bad_override_tier":
        data["overrides"] = [
            {"segment": "x", "tier": "gold", "action": "a", "unit_cost": 1, "save_rate": 0.1}
        ]
    elif edit == "unknown_section":
        data["budget"] = {"total": 100}
    return data


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        ("missing_pair", ValueError, r"missing \[\('vip', 'medium'\)\].*\[actions\.vip\.medium\]"),
        ("negative_cost", ValueError, r"\[actions\.stable\.low\]: unit_cost must be in \[0.0"),
        ("save_rate_above_1", ValueError, r"\[actions\.low\.high\]: save_rate must be in"),
        ("unknown_tier", ValueError, r"\[actions\.gold\] is not a value tier"),
        ("unknown_band", ValueError, "risk band must be one of"),
        ("unknown_key", ValueError, r"unknown key\(s\) \['discount'\]"),
        ("missing_key", ValueError, r"missing \['save_rate'\]"),
        ("reversed_thresholds", ValueError, "increasing"),
        ("bad_override_tier", ValueError, r"\[\[overrides\]\] #1: override tier"),
        ("unknown_section", ValueError, r"unknown key\(s\) \['budget'\]"),
    ],
)
def test_playbook_validation_errors(edit: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Playbook.from_dict(_broken(edit), source="test.toml")


def test_treatment_rejects_bad_types() -> None:
    with pytest.raises(TypeError, match="action"):
        Treatment("", 1.0, 0.1)
    with pytest.raises(TypeError, match="unit_cost"):
        Treatment("call", "5", 0.1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- assign


def test_assign_gives_actions_and_net_benefit() -> None:
    df = _scored()
    before = df.copy()
    out = Playbook.load().assign(df, risk_edges=(0.3, 0.6))
    pd.testing.assert_frame_equal(df, before)
    assert list(out.columns) == list(ASSIGN_COLUMNS)
    assert list(out.index) == [10, 11, 12, 13, 14]
    assert out["risk_band"].astype(str).tolist() == ["high", "medium", "high", "high", "low"]
    assert out["action"].tolist() == [
        "personal call from account manager + service recovery",
        "personal check-in / VIP perk",
        "targeted incentive (voucher)",
        "automated win-back email (no discount)",
        "no spend",
    ]
    expected = [900 * 0.35 - 25, 40 * 0.20 - 10, 70 * 0.20 - 8, 8 * 0.05 - 0.1, 0.0]
    assert out["expected_net_benefit"].tolist() == pytest.approx(expected)


def test_assign_uses_the_playbook_thresholds() -> None:
    data = _default_dict()
    data["risk_bands"] = {"method": "fixed", "thresholds": [0.05, 0.95]}
    out = Playbook.from_dict(data).assign(_scored())
    assert out["risk_band"].astype(str).tolist() == ["medium"] * 5


def test_segment_overrides_first_match_wins_and_respect_tier_and_band() -> None:
    base = Playbook.load()
    overrides = (
        Override("cant_lose", Treatment("we miss you call", 12.0, 0.5), tier="vip", band="high"),
        Override("cant_lose", Treatment("never used", 1.0, 0.1)),
        Override("at_risk", Treatment("stable-only", 2.0, 0.3), tier="vip"),
        Override("lost", Treatment("silence", 0.0, 0.0)),
    )
    book = Playbook(base.treatments, RiskBands(method="fixed"), overrides)
    out = book.assign(_scored())
    assert out["action"].tolist() == [
        "we miss you call",
        "personal check-in / VIP perk",
        "targeted incentive (voucher)",  # at_risk override is for VIPs only
        "silence",
        "no spend",
    ]
    assert out.loc[10, "expected_net_benefit"] == pytest.approx(900 * 0.5 - 12)
    assert out.loc[13, "expected_net_benefit"] == 0.0
    with pytest.raises(InputDataError, match="segment column"):
        book.assign(_scored().drop(columns="segment"))


def test_assign_rejects_bad_frames() -> None:
    book = Playbook.load()
    with pytest.raises(InputDataError, match="value_tier"):
        book.assign(_scored().drop(columns="value_tier"))
    with pytest.raises(InputDataError, match="value_at_risk is churn_probability"):
        book.assign(_scored().drop(columns="value_at_risk"))
    with pytest.raises(InputDataError, match=r"unknown value\(s\) \['gold'\]"):
        book.assign(_scored().assign(value_tier=["gold", "vip", "vip", "low", "low"]))


# --------------------------------------------------------------------------- contacts


def _plan() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["p", "q", "r", "s", "t", "u"],
            "expected_net_benefit": [30.0, 50.0, 20.0, 10.0, -5.0, 0.0],
            "unit_cost": [10.0, 10.0, 5.0, 1.0, 1.0, 0.0],
            "save_rate": [0.4, 0.6, 0.5, 0.1, 0.0, 0.0],
            "value_at_risk": [100.0, 100.0, 50.0, 110.0, 20.0, 0.0],
        },
        index=list("ABCDEF"),
    )


def _chosen(contact: pd.Series, plan: pd.DataFrame) -> list[str]:
    return sorted(plan.loc[contact, "customer_id"])


def test_select_contacts_takes_only_positive_net_benefit() -> None:
    plan = _plan()
    contact = select_contacts(plan)
    assert contact.name == "contact" and list(contact.index) == list("ABCDEF")
    assert _chosen(contact, plan) == ["p", "q", "r", "s"]


def test_select_contacts_capacity() -> None:
    plan = _plan()
    assert _chosen(select_contacts(plan, capacity=2), plan) == ["p", "q"]
    assert _chosen(select_contacts(plan, capacity=0), plan) == []
    assert _chosen(select_contacts(plan, capacity=100), plan) == ["p", "q", "r", "s"]


def test_select_contacts_budget_is_a_greedy_prefix() -> None:
    plan = _plan()  # order q(10) p(10) r(5) s(1): cumulative costs 10, 20, 25, 26
    assert _chosen(select_contacts(plan, budget=25), plan) == ["p", "q", "r"]
    # 24 stops at r (cost 5) and does not skip ahead to s, which alone would fit
    assert _chosen(select_contacts(plan, budget=24), plan) == ["p", "q"]
    assert _chosen(select_contacts(plan, budget=9.99), plan) == []
    assert _chosen(select_contacts(plan, budget=1000), plan) == ["p", "q", "r", "s"]
    assert _chosen(select_contacts(plan, capacity=3, budget=1000), plan) == ["p", "q", "r"]
    assert _chosen(select_contacts(plan, capacity=3, budget=20), plan) == ["p", "q"]


def test_select_contacts_budget_tolerates_float_sums_and_breaks_ties_by_id() -> None:
    plan = pd.DataFrame(
        {
            "customer_id": ["z", "y", "x"],
            "expected_net_benefit": [5.0, 5.0, 5.0],
            "unit_cost": [0.2, 0.2, 0.1],
        }
    )
    assert 0.1 + 0.2 > 0.3  # binary floating point: the budget check must not trip on it
    # id order x, y, z: cumulative costs 0.1, 0.1 + 0.2, then 0.5 > 0.3
    assert _chosen(select_contacts(plan, budget=0.3), plan) == ["x", "y"]
    assert _chosen(select_contacts(plan, capacity=1), plan) == ["x"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"capacity": 2.5}, TypeError),
        ({"capacity": -1}, TypeError),
        ({"capacity": True}, TypeError),
        ({"budget": -1.0}, ValueError),
        ({"budget": "100"}, TypeError),
    ],
)
def test_select_contacts_rejects_bad_limits(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        select_contacts(_plan(), **kwargs)


def test_select_contacts_needs_the_playbook_columns() -> None:
    with pytest.raises(InputDataError, match=r"playbook\.assign"):
        select_contacts(_plan().drop(columns="unit_cost"))


def test_contact_summary_arithmetic() -> None:
    plan = _plan().assign(contact=lambda d: select_contacts(d, budget=25))
    summary = contact_summary(plan)
    assert summary["n_contacted"] == 3
    assert summary["spend"] == pytest.approx(25.0)
    assert summary["expected_value_retained"] == pytest.approx(40 + 60 + 25)
    assert summary["expected_net_benefit"] == pytest.approx(100.0)
    with pytest.raises(InputDataError, match="select_contacts"):
        contact_summary(_plan())
