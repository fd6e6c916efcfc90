"""Out-of-time snapshot plans."""

from __future__ import annotations

import datetime as dt

import pytest

from churnguard.churn import plan_snapshots
from churnguard.exceptions import InsufficientHistoryError


def _cutoffs(n: int, step: int = 28) -> list[dt.date]:
    return [dt.date(2020, 1, 1) + dt.timedelta(days=step * i) for i in range(n)]


def test_embargo_keeps_label_windows_apart() -> None:
    cs = _cutoffs(12)
    plan = plan_snapshots(cs, horizon_days=90)
    assert plan.evaluation == cs[-1] and plan.embargo_days == 90
    assert (plan.evaluation - plan.calibration).days >= 90
    assert all((plan.calibration - c).days >= 90 for c in plan.train)
    assert len(plan.train) >= 3
    prod = plan.shifted(cs)
    assert prod.calibration == cs[-1] and max(prod.train) <= cs[-1] - dt.timedelta(days=90)


def test_short_history_falls_back_to_adjacent_snapshots() -> None:
    cs = _cutoffs(5)
    plan = plan_snapshots(cs, horizon_days=90)
    assert plan.embargo_days == 0
    assert plan.train == tuple(cs[:3]) and plan.calibration == cs[3] and plan.evaluation == cs[4]


def test_too_few_cutoffs() -> None:
    with pytest.raises(InsufficientHistoryError, match="at least 3"):
        plan_snapshots(_cutoffs(2), horizon_days=30)
