"""Out-of-time training plan for the classifier over rolling snapshots.

Snapshots are ordered in time. The latest fully observed one is the
*evaluation* snapshot; an earlier *calibration* snapshot is used for early
stopping and probability calibration; older ones train the trees. Between them
an *embargo* of one horizon keeps label windows from overlapping (a training
label window must end before the calibration cutoff), so the calibration and
evaluation numbers are honest out-of-time estimates. When the history is too
short for that, the embargo is dropped and the plan says so.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from churnguard.exceptions import InsufficientHistoryError

__all__ = ["SnapshotPlan", "plan_snapshots", "split_by_plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotPlan:
    """Which snapshot cutoffs train, calibrate and evaluate the classifier."""

    train: tuple[dt.date, ...]
    calibration: dt.date
    evaluation: dt.date
    embargo_days: int
    #: First cutoff of a pooled calibration window ``[calibration_from, calibration]``
    #: (None: the calibration snapshot alone).
    calibration_from: dt.date | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for metadata and MLflow."""
        d = asdict(self)
        d["train"] = [c.isoformat() for c in self.train]
        d["calibration"] = self.calibration.isoformat()
        d["evaluation"] = self.evaluation.isoformat()
        if self.calibration_from is not None:
            d["calibration_from"] = self.calibration_from.isoformat()
        return d

    def shifted(
        self,
        cutoffs: Sequence[dt.date],
        *,
        embargo_days: int | None = None,
        calibration_days: int = 0,
    ) -> SnapshotPlan:
        """The production plan: evaluation becomes calibration, training moves up.

        Trains on every cutoff whose label window ends before the latest cutoff,
        calibrates on the latest one (no held-out snapshot is left: the metrics of
        the validation plan describe this procedure).

        Parameters
        ----------
        embargo_days : int, optional
            Overrides the plan's embargo (0 when the classifier cross-fits customers,
            which keeps a training row's labels out of its own calibration).
        calibration_days : int
            Calibrate on every cutoff within this many days before the latest one.
        """
        latest = max(cutoffs)
        embargo = self.embargo_days if embargo_days is None else int(embargo_days)
        limit = latest - dt.timedelta(days=embargo)
        train = tuple(c for c in sorted(cutoffs) if c < latest and c <= limit)
        window = [c for c in cutoffs if c >= latest - dt.timedelta(days=int(calibration_days))]
        cal_from = min(window) if calibration_days > 0 and len(window) > 1 else None
        return SnapshotPlan(train, latest, latest, embargo, cal_from)


def plan_snapshots(
    cutoffs: Sequence[dt.date], horizon_days: int, *, min_train: int = 3
) -> SnapshotPlan:
    """Split ``cutoffs`` into train / calibration / evaluation, out of time.

    Parameters
    ----------
    cutoffs : sequence of date
        Fully observed snapshot cutoffs.
    horizon_days : int
        Label horizon; used as the embargo between the three groups.
    min_train : int
        Fewest training cutoffs acceptable with the embargo before falling back
        to adjacent snapshots without it.

    Raises
    ------
    InsufficientHistoryError
        With fewer than three cutoffs.
    """
    cs = sorted(set(cutoffs))
    if len(cs) < 3:
        raise InsufficientHistoryError(
            f"out-of-time training needs at least 3 snapshot cutoffs; the data allow {len(cs)} "
            f"({[c.isoformat() for c in cs]}). Use a longer log, a shorter --horizon-days or a "
            "smaller snapshot step."
        )
    evaluation = cs[-1]
    emb = dt.timedelta(days=int(horizon_days))
    cal_options = [c for c in cs if c <= evaluation - emb]
    if cal_options:
        calibration = cal_options[-1]
        train = tuple(c for c in cs if c <= calibration - emb)
        if len(train) >= min_train:
            return SnapshotPlan(train, calibration, evaluation, int(horizon_days))
    log.warning(
        "history too short for a %d-day embargo between snapshots; using adjacent "
        "snapshots (label windows overlap, so validation is slightly optimistic)",
        horizon_days,
    )
    return SnapshotPlan(tuple(cs[:-2]), cs[-2], cs[-1], 0)


def split_by_plan(
    snapshots: pd.DataFrame, plan: SnapshotPlan
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return the (train, calibration, evaluation) rows of a snapshot table."""
    day = snapshots["cutoff"].dt.date
    train = snapshots.loc[day.isin(plan.train)]
    cal_from = plan.calibration_from or plan.calibration
    cal = snapshots.loc[(day >= cal_from) & (day <= plan.calibration)]
    ev = snapshots.loc[day == plan.evaluation]
    return train, cal, ev
