"""Churn after a change no labelled window has seen: a dropout hazard that moved recently.

Every churn model churnguard trains learns the churn level of fully observed windows, the
newest of which ends a horizon before the scoring date. The drift check
(:mod:`churnguard.churn.drift`) flags when, in the latest partial window, more (or fewer)
customers went without a purchase than the purchase model expects. This module turns that
flag into a correction, in the one structure where "customers started leaving faster"
has a precise meaning: Pareto/NBD, whose dropout is a hazard in calendar time.

Suppose every customer's dropout hazard became ``k`` times what it was from some day on.
:func:`churnguard.clv.shifted_p_no_purchase` gives, under that change, each customer's
probability of no purchase in each window since (from their history at its start, part
of it under the new hazard) and in the scoring horizon. ``k`` is the factor that brings
those windows' levels (:func:`churnguard.churn.drift.window_level`) back to the level of
the windows before the change, i.e. that explains them as well as the model explains its
past. The day is the start of the latest window or of one of the two before, whichever
fit leaves the smallest squared level gaps over all the windows (a change two windows old
read as one window old needs a factor of 7.5 instead of 3). When the same weeks a year
earlier moved the same way, that part of the move is put down to the season and not
corrected (a move the other way a year earlier adds nothing). Each customer's churn
log-odds are then moved by what the change does to Pareto/NBD's probability of no
purchase in the horizon: a silent customer's chance of being alive falls more than a
recent buyer's.

Why only when the drift check flags: four weeks identify ``k`` poorly. On the
shifted-churn world without a shift (true ``k = 1``) the estimate is 0.77, which would
move calibration for nothing; with the dropout hazard tripled 28 days before the scoring
date it is 3.5, and the prior's ECE falls from 0.061 to 0.010 (91 days) and from 0.078 to
0.010 (182 days) (``benchmarks/README.md``). A fall in churn shows much less in four weeks
(few of those who stay would have left in them) and is rarely flagged.

Why Pareto/NBD even when another purchase model was chosen: in BG/NBD a customer can only
leave right after a purchase, so a change of the dropout rate cannot show in a window of
silence. A Pareto/NBD is then fitted to the same base for the correction alone.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from churnguard._dates import DAYS_PER_UNIT, to_date
from churnguard.churn.classifier import logit
from churnguard.churn.level import level_intercept
from churnguard.clv import (
    shifted_discounted_purchases,
    shifted_expected_purchases,
    shifted_p_no_purchase,
    shifted_p_purchase,
)
from churnguard.clv.value import PERIODS_PER_MONTH

__all__ = ["K_BOUNDS", "HazardShift", "fit_hazard_shift"]

#: The factors searched. A change beyond them is not taken for a hazard shift (a broken
#: feed, a closed store) and is left to the warning.
K_BOUNDS = (0.05, 20.0)


@dataclass
class HazardShift:
    """A dropout hazard ``k`` times the model's since ``since`` time units before training end.

    Attributes
    ----------
    k : float
        Factor on every customer's dropout hazard.
    since : float
        How long the change had lasted at the end of the training log (the latest window),
        in ``time_unit``; scoring at another date counts from ``start`` (:meth:`since_at`).
    horizon : float
        Churn horizon, in ``time_unit``.
    params : dict
        Pareto/NBD parameters (``r``, ``alpha``, ``s``, ``beta``) in ``time_unit``.
    time_unit : str
        ``"D"`` or ``"W"``, as the purchase model's.
    start : str
        First day of the change (ISO date), for the notes.
    misfit : float
        Sum of the windows' squared level gaps left at ``k`` (0 for one window).
    """

    k: float
    since: float
    horizon: float
    params: dict[str, float]
    time_unit: str
    start: str
    misfit: float = 0.0

    def since_at(self, as_of: Any = None) -> float | None:
        """Time units the change has lasted at ``as_of`` (default: the training end).

        None when ``as_of`` is before the change: a date the change had not reached is
        scored without it.
        """
        if as_of is None:
            return self.since
        days = (to_date(as_of) - dt.date.fromisoformat(self.start)).days
        return None if days < 0 else days / DAYS_PER_UNIT[self.time_unit]

    def log_odds_shift(
        self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, since: float | None = None
    ) -> np.ndarray:
        """What the change adds to each customer's churn log-odds (``x, tx, T``: ``time_unit``).

        ``since``: time units the change has lasted at the scoring date (default: the
        latest window's length, i.e. scoring as of the training end).
        """
        lasted = self.since if since is None else float(since)
        before, after = (
            shifted_p_no_purchase(self.params, x, tx, T, self.horizon, lasted, factor)
            for factor in (1.0, self.k)
        )
        return logit(after) - logit(before)

    def window_factors(
        self, x: np.ndarray, tx: np.ndarray, T: np.ndarray, since: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the change does to each customer's purchases in the horizon, as two factors.

        ``(purchases, if_active)``: Pareto/NBD's expected purchases in the horizon under
        the change over those without it, and the same for the purchases of a customer who
        buys at least once in it (expected purchases over ``1 - P(no purchase)``). A higher
        hazard ends more lives inside the window, so an active customer buys fewer times
        in it as well. Arguments as in :meth:`log_odds_shift`; a factor that is not finite
        (no purchase expected either way) is 1.
        """
        lasted = self.since if since is None else float(since)
        e0, e1 = (
            shifted_expected_purchases(self.params, x, tx, T, self.horizon, lasted, factor)
            for factor in (1.0, self.k)
        )
        # P(a purchase) itself, not 1 - P(none): near-dead customers keep exact ratios
        a0, a1 = (
            shifted_p_purchase(self.params, x, tx, T, self.horizon, lasted, factor)
            for factor in (1.0, self.k)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            purchases = e1 / e0
            if_active = purchases * a0 / a1
        return (
            np.where(np.isfinite(purchases), purchases, 1.0),
            np.where(np.isfinite(if_active), if_active, 1.0),
        )

    def clv_factor(
        self,
        x: np.ndarray,
        tx: np.ndarray,
        T: np.ndarray,
        months: int,
        discount_rate: float,
        since: float | None = None,
    ) -> np.ndarray:
        """What the change does to each customer's discounted purchases over ``months``.

        The discounted expected purchases of the coming ``months`` (discount
        ``discount_rate`` a month, as ``predicted_clv``'s) under the change over those
        without it, from the same Pareto/NBD. Arguments as in :meth:`log_odds_shift`; a
        factor that is not finite is 1.
        """
        lasted = self.since if since is None else float(since)
        per_month = PERIODS_PER_MONTH[self.time_unit]
        times = [i * per_month for i in range(1, int(months) + 1)]
        weights = [(1.0 + float(discount_rate)) ** -i for i in range(1, int(months) + 1)]
        before, after = (
            shifted_discounted_purchases(self.params, x, tx, T, times, weights, lasted, factor)
            for factor in (1.0, self.k)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = after / before
        return np.where(np.isfinite(ratio), ratio, 1.0)

    @property
    def note(self) -> str:
        """One line for the train summary."""
        direction = "higher" if self.k > 1 else "lower"
        return (
            f"drift correction: the churn probabilities assume that every customer's dropout "
            f"hazard has been {self.k:.2f}x the purchase history's since {self.start} ({direction} "
            "churn): the factor that explains how many customers went silent since then "
            "(Pareto/NBD). Value at risk, the next-window value and predicted_clv follow; "
            "p_alive and expected_purchases keep the purchase model's hazard. Train with "
            "--no-drift-correction (drift_correction=False) to only warn."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``metadata.json``."""
        return {
            "k": round(float(self.k), 4),
            "since": float(self.since),
            "horizon": float(self.horizon),
            "time_unit": self.time_unit,
            "start": self.start,
            "params": {name: float(v) for name, v in self.params.items()},
        }


def fit_hazard_shift(
    params: Mapping[str, float],
    windows: Sequence[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, float]],
    target: float,
    *,
    window: float,
    horizon: float,
    time_unit: str,
    start: str,
) -> HazardShift | None:
    """The hazard factor that gives the windows since the change the level ``target``.

    Parameters
    ----------
    params : mapping
        Pareto/NBD parameters fitted on the whole training log (model time unit).
    windows : sequence of ``((x, tx, T), silent, lasted)``
        The windows since the change, oldest first: each customer's history at the
        window's start (model time unit), 1 for those who made no purchase in the window,
        and how long the change had lasted at the window's start (0 for the first).
    target : float
        The level (:func:`churnguard.churn.drift.window_level`) a window should have
        without a change: the median of the windows before, or nearer the latest when
        the season explains part of its move.
    window : float
        Length of each window (model time unit).
    horizon : float
        Churn horizon (model time unit).
    time_unit, start : str
        Recorded in the result; ``start`` is the first day of the change.

    Returns
    -------
    HazardShift or None
        One window: the factor that meets ``target`` exactly. Several: the one that
        minimises the windows' squared gaps to it (``misfit``). None when the factor
        would lie outside :data:`K_BOUNDS` (or a window's customers were all, or none,
        silent).
    """
    data = []
    for rfm, silent, lasted in windows:
        y = np.asarray(silent, dtype=float)
        if len(y) == 0 or not 0.0 < float(y.mean()) < 1.0:
            return None
        data.append((tuple(np.asarray(a, dtype=float) for a in rfm), y, float(lasted)))
    if not data:
        return None

    def gaps(log_k: float) -> np.ndarray:
        out = []
        for (x, tx, T), y, lasted in data:
            p = shifted_p_no_purchase(params, x, tx, T, float(window), lasted, math.exp(log_k))
            out.append(level_intercept(logit(p), y) - float(target))
        return np.asarray(out)

    lo, hi = (math.log(b) for b in K_BOUNDS)
    if len(data) == 1:
        # The level falls as k rises (more predicted silence needs less intercept).
        if not (gaps(lo)[0] > 0 > gaps(hi)[0]):
            return None
        log_k, misfit = brentq(lambda v: float(gaps(v)[0]), lo, hi, xtol=1e-4), 0.0
    else:
        best = minimize_scalar(
            lambda v: float(np.sum(gaps(v) ** 2)), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-4},
        )  # fmt: skip
        if not lo + 1e-3 < best.x < hi - 1e-3:
            return None
        log_k, misfit = float(best.x), float(best.fun)
    return HazardShift(
        k=float(math.exp(log_k)),
        since=data[-1][2] + float(window),
        horizon=float(horizon),
        params={name: float(params[name]) for name in ("r", "alpha", "s", "beta")},
        time_unit=str(time_unit),
        start=str(start),
        misfit=misfit,
    )
