"""Has churn moved since the last labelled window? A check on the latest partial window.

Every churn model churnguard trains learns the churn level of windows that are fully
observed, so the newest of them ends at least one horizon before the scoring date. When
customers start leaving faster (or slower) after that, no snapshot has seen it and the
churn probabilities are off in level; a backtest shows it only a horizon later.

The latest days are not labelled for the horizon, but they are for a shorter window.
The purchase model gives every customer's probability of no purchase in ``days`` days;
the intercept ``d`` that, added to those log-odds, matches the share that actually made
no purchase in the last ``days`` days (the same statistic as the level error of
:mod:`churnguard.churn.level`) is compared with the ``d`` of the windows before it. The
purchase model is never exact, so ``d`` is never zero; what signals a change is a latest
``d`` far outside its own recent range (more than ``z`` standard deviations and more than
``min_shift`` from their median).

A move that repeats every year is not drift: in a log with a December peak the last
four weeks of December always look "too active". When the log reaches back a year, the
same windows a year earlier are measured too (``year_ago``), and when the same weeks
made a move then that would itself have been flagged, what is judged is the latest move
*beyond* it: a move the season explains is not flagged (``seasonal`` is set instead),
while drift on top of a season still is. A smaller year-ago move is within the noise of
one window and explains nothing.

A flagged drift is reported, and :mod:`churnguard.churn.hazard_shift` turns it into a
correction of the churn probabilities (a change of every customer's dropout hazard that
explains the latest window). On the shifted-churn world of :mod:`churnguard.data`
(dropout hazard tripled 28 days before the scoring date) the latest ``d`` is +0.10
against -0.02..+0.02 before (z = 5.8); on the seasonal continuous-acquisition world the
largest is z = 3.5, on CDNOW |z| <= 2.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churnguard._dates import YEAR_DAYS
from churnguard.churn.classifier import logit
from churnguard.churn.level import level_intercept

__all__ = ["RecentDrift", "recent_drift", "window_level"]


@dataclass
class RecentDrift:
    """The latest partial window's level against the windows before it.

    Attributes
    ----------
    days : int
        Length of each window.
    levels : Series
        ``d`` by window end (the latest last); empty when not measured.
    z : float
        The latest ``d`` minus the median of the others, over their standard deviation.
    flagged : bool
        Whether the latest window is outside the recent range (see the module).
    seasonal : bool
        Whether it is, but the same weeks a year earlier moved the same way (not flagged).
    year_ago_shift : float
        The year-ago latest window's distance from its own recent median (NaN: not measured).
    season_shift : float
        ``year_ago_shift`` when it is large enough to be a season (it would itself have
        been flagged), else 0: the part of a move the season accounts for.
    note : str
        One line for the train summary ('' when nothing to say).
    """

    days: int = 0
    levels: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    z: float = float("nan")
    flagged: bool = False
    seasonal: bool = False
    year_ago_shift: float = float("nan")
    season_shift: float = 0.0
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``metadata.json``."""
        return {
            "days": int(self.days),
            "flagged": bool(self.flagged),
            "seasonal": bool(self.seasonal),
            "z": None if not np.isfinite(self.z) else round(float(self.z), 3),
            "year_ago_shift": (
                None if not np.isfinite(self.year_ago_shift) else round(self.year_ago_shift, 4)
            ),
            "season_shift": round(float(self.season_shift), 4),
            "levels": {
                str(pd.Timestamp(str(k)).date()): round(float(v), 4) for k, v in self.levels.items()
            },
            "note": self.note,
        }


def window_level(p_no_purchase: np.ndarray, no_purchase: np.ndarray) -> float:
    """The intercept ``d`` with ``mean(sigmoid(logit(p) + d)) == mean(no_purchase)``.

    :func:`churnguard.churn.level.level_intercept` of the probabilities' log-odds: 0 when
    every customer (or none) made no purchase, where it would be unbounded.
    """
    return level_intercept(logit(np.asarray(p_no_purchase, dtype=float)), no_purchase)


def recent_drift(
    levels: pd.Series,
    *,
    days: int,
    labelled_until: object = None,
    z: float = 4.0,
    min_shift: float = 0.05,
    min_reference: int = 4,
    year_ago: pd.Series | None = None,
) -> RecentDrift:
    """Flag the latest window's level when it leaves the range of the earlier ones.

    Parameters
    ----------
    levels : Series
        ``d`` (:func:`window_level`) by window end, consecutive windows of ``days`` days.
    days : int
        Window length.
    labelled_until : date-like, optional
        Cutoff of the newest labelled snapshot, named in the note.
    z : float
        Standard deviations from the median of the earlier windows to flag.
    min_shift : float
        Least distance (log-odds) to flag: a very steady history must not turn a
        negligible move into a warning.
    min_reference : int
        Fewest earlier windows to judge against; with fewer nothing is flagged.
    year_ago : Series, optional
        The levels of the same windows one year earlier (52 weeks, ending within half a
        window of a year before the latest; otherwise ignored): only the latest move
        beyond the one they made is judged. Missing levels are skipped.
    """
    levels = levels.sort_index()
    out = RecentDrift(days=int(days), levels=levels)
    reference = levels.iloc[:-1].to_numpy(dtype=float)
    if len(reference) < int(min_reference):
        return out
    latest = float(levels.iloc[-1])
    centre = float(np.median(reference))
    spread = max(float(np.std(reference, ddof=1)), 0.02)
    out.z = (latest - centre) / spread
    threshold = max(float(z) * spread, float(min_shift))
    out.flagged = abs(latest - centre) > threshold
    shift = _year_ago_shift(year_ago, levels.index[-1], int(days), int(min_reference))
    out.year_ago_shift = shift
    # What the same weeks did a year earlier explains the move: a season, not drift. Only
    # a year-ago move that would itself be flagged is a season; a smaller one is one noisy
    # window, and explaining a real change away with it would silence the warning (and the
    # drift correction) on noise.
    out.season_shift = shift if np.isfinite(shift) and abs(shift) > threshold else 0.0
    if out.flagged and out.season_shift and abs(latest - centre - shift) <= threshold:
        out.flagged, out.seasonal = False, True
    if out.flagged:
        direction = "more" if latest > centre else "fewer"
        effect = "too low" if latest > centre else "too high"
        since = (
            f" (the newest labelled snapshot is as of {labelled_until})" if labelled_until else ""
        )
        out.note = (
            f"recent drift: in the last {days} days {direction} customers went without a "
            f"purchase than the purchase model expects (level {latest:+.3f} log-odds against "
            f"{reference.min():+.3f} to {reference.max():+.3f} in the {len(reference)} "
            f"windows before, z = {out.z:+.1f}). Churn may have moved after the last "
            f"labelled window{since}, which no churn model has seen: uncorrected, the churn "
            f"probabilities are likely {effect} (the next line says whether they were "
            "corrected). Re-check with `churnguard backtest` once a horizon is observed."
        )
    return out


def _year_ago_shift(year_ago: pd.Series | None, latest_end: Any, days: int, least: int) -> float:
    """The year-ago latest window's distance from the median of its own earlier windows.

    NaN when there is no usable year-ago series: too few measured windows, or a latest
    one that does not end about 52 weeks before ``latest_end``.
    """
    if year_ago is None:
        return float("nan")
    before = year_ago.dropna().sort_index()
    if len(before) <= least:
        return float("nan")
    gap = (pd.Timestamp(latest_end) - pd.Timestamp(before.index[-1])).days
    if abs(gap - YEAR_DAYS) > days // 2:
        return float("nan")
    return float(before.iloc[-1]) - float(np.median(before.iloc[:-1].to_numpy(dtype=float)))
