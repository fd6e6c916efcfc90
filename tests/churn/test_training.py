"""Out-of-time snapshot plans: the validation gap mirrors the one between training and scoring."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from churnguard.churn import plan_production, plan_validation, split_by_plan


def _cutoffs(n: int, step: int = 14) -> list[dt.date]:
    return [dt.date(2020, 1, 1) + dt.timedelta(days=step * i) for i in range(n)]


def test_validation_learns_one_horizon_before_the_evaluation_cutoff() -> None:
    cs = _cutoffs(24)
    plan = plan_validation(cs, horizon_days=90, calibration_days=42)
    assert plan is not None and plan.honest
    assert plan.evaluation == cs[-1]
    assert max(plan.fit) <= cs[-1] - dt.timedelta(days=90)
    assert plan.gap_days >= 90
    # Calibration: the learning cutoffs of the last 42 days of the learning period.
    assert plan.calibration == tuple(c for c in plan.fit if c >= max(plan.fit) - dt.timedelta(42))
    assert plan.to_dict()["honest"] is True


def test_short_history_validates_on_adjacent_snapshots_and_says_so() -> None:
    cs = _cutoffs(5)
    plan = plan_validation(cs, horizon_days=90)
    assert plan is not None and not plan.honest
    assert plan.fit == tuple(cs[:-1]) and plan.evaluation == cs[-1] and plan.gap_days == 14


def test_one_cutoff_cannot_be_validated() -> None:
    assert plan_validation(_cutoffs(1), horizon_days=30) is None


def test_production_learns_from_every_cutoff() -> None:
    cs = _cutoffs(10)
    prod = plan_production(cs, calibration_days=28)
    assert prod.fit == tuple(cs) and prod.evaluation is None
    assert prod.calibration == tuple(cs[-3:])


def test_split_by_plan_selects_rows_by_cutoff() -> None:
    cs = _cutoffs(12)
    snaps = pd.DataFrame({"cutoff": pd.to_datetime(cs).repeat(2), "x": range(24)})
    plan = plan_validation(cs, horizon_days=60)
    assert plan is not None
    fit, cal, ev = split_by_plan(snaps, plan)
    assert set(ev["cutoff"].dt.date) == {cs[-1]}
    assert set(fit["cutoff"].dt.date) == set(plan.fit)
    assert set(cal["cutoff"].dt.date) <= set(fit["cutoff"].dt.date)
