"""The level of the prior's churn probabilities at the scoring date, forecast out of time.

The BTYD prior ranks customers well, but the *share* of them it expects to churn can
be off in a way that repeats: a purchase rate that follows the calendar (a December
peak, a summer dip) makes a window's inactivity depend on its season, which a
stationary BTYD model cannot know. Every labelled snapshot measures that error as one
number, the intercept ``b(c)`` that, added to the prior's log-odds at cutoff ``c``,
makes the mean probability equal the observed churn rate (the log-loss optimum of an
intercept).

A forecast of ``b`` at the scoring date ``t`` may only use snapshots labelled by then
(cutoffs at most ``lag_days`` = horizon + gap before ``t``). Two sources are tried:

* ``season``: ``b`` at the cutoff one year before ``t`` (within ``tolerance_days``),
  whose window covers the same part of the calendar;
* ``latest``: ``b`` at the latest labelled cutoff.

Each is shrunk by a weight ``w`` in ``[0, 1]`` (``w = 0`` is no correction) fitted on a
*rolling origin*: every recent cutoff of the snapshot table is a target whose level is
forecast from the cutoffs labelled ``lag_days`` before it, exactly as the scoring date's
is. A source is used only when its fitted weight lowers the mean log loss of those
targets by at least ``min_gain``; otherwise the prior keeps its own level. So a log with
no repeatable level error gets no correction, and a seasonal one gets last year's error
of the same season, as much of it as held out of time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from churnguard._dates import YEAR_DAYS
from churnguard.churn.classifier import logit

__all__ = [
    "LEVEL_SOURCES",
    "LevelChoice",
    "choose_level",
    "forecast_sources",
    "level_cutoffs",
    "level_errors",
    "level_intercept",
    "rate_intercept",
]

#: Sources of a level forecast, in the order they are reported.
LEVEL_SOURCES: tuple[str, ...] = ("season", "latest")

_WEIGHTS = np.linspace(0.0, 1.0, 21)
_EPS = 1e-6


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def level_intercept(z: np.ndarray, y: np.ndarray) -> float:
    """The ``b`` with ``mean(sigmoid(z + b)) == mean(y)`` (0 when ``y`` is all one class)."""
    return rate_intercept(z, float(np.mean(y)))


def rate_intercept(z: np.ndarray, rate: float) -> float:
    """The ``b`` with ``mean(sigmoid(z + b)) == rate`` (0 when ``rate`` is 0 or 1)."""
    if not 0.0 < rate < 1.0 or not len(z):
        return 0.0
    # The prior's log-odds lie within +-14 (clipped at 1e-6), so +-40 brackets any rate.
    return float(brentq(lambda b: float(np.mean(_sigmoid(z + b))) - rate, -40.0, 40.0))


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss of ``sigmoid(z)``, written to stay finite for large ``|z|``."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def level_errors(rows: pd.DataFrame, prior: str = "p_no_purchase") -> pd.Series:
    """The prior's level error ``b(c)`` at every cutoff of a labelled snapshot table.

    Parameters
    ----------
    rows : DataFrame
        ``cutoff``, the ``prior`` column and ``churned``.
    prior : str
        Column of P(no purchase in the horizon).

    Returns
    -------
    Series
        ``b`` by cutoff (sorted): positive when more customers churned than the prior said.
    """
    out = {
        pd.Timestamp(str(c)): level_intercept(
            logit(g[prior].to_numpy(dtype=float)), g["churned"].to_numpy()
        )
        for c, g in rows.groupby("cutoff", sort=True)
    }
    return pd.Series(out, dtype=float).sort_index()


def forecast_sources(
    errors: pd.Series, target: Any, lag_days: int, *, tolerance_days: int = 7
) -> dict[str, float]:
    """The unshrunk level forecasts at ``target`` from the cutoffs labelled by then.

    Parameters
    ----------
    errors : Series
        ``b`` by cutoff (:func:`level_errors`).
    target : date-like
        The date whose level is forecast (a cutoff or the scoring date).
    lag_days : int
        Only cutoffs at least this many days before ``target`` are labelled by then.
    tolerance_days : int
        Largest distance between a cutoff and ``target`` minus one year for ``season``.

    Returns
    -------
    dict
        ``{source: b}`` for the sources that exist (none before the first labelled cutoff).
    """
    t = pd.Timestamp(target)
    known = errors[errors.index <= t - pd.Timedelta(days=int(lag_days))]
    out: dict[str, float] = {}
    if known.empty:
        return out
    out["latest"] = float(known.iloc[-1])
    ago = pd.DatetimeIndex(known.index) - (t - pd.Timedelta(days=YEAR_DAYS))
    distance = np.abs(ago.days.to_numpy())
    if distance.min() <= int(tolerance_days):
        out["season"] = float(known.iloc[int(np.argmin(distance))])
    return out


@dataclass
class LevelChoice:
    """The level correction chosen for the prior, and the rolling-origin evidence.

    Attributes
    ----------
    source : str
        ``"none"`` or one of :data:`LEVEL_SOURCES`.
    weight : float
        Shrinkage of the source's ``b`` (0 with ``"none"``).
    offset : float
        Log-odds added to the prior at the scoring date: ``weight * b(source)``.
    table : DataFrame
        Per source: the fitted weight, the number of targets and the mean log-loss gain.
    forecasts : Series
        The chosen correction at every rolling-origin target (0 where none applies).
    reason : str
    """

    source: str = "none"
    weight: float = 0.0
    offset: float = 0.0
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    forecasts: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    reason: str = "no level correction"


def choose_level(
    rows: pd.DataFrame,
    lag_days: int,
    *,
    scoring_date: Any = None,
    prior: str = "p_no_purchase",
    recent_days: int = 84,
    tolerance_days: int = 7,
    min_targets: int = 3,
    min_gain: float = 5e-4,
) -> LevelChoice:
    """Fit and validate the level correction of the prior on a rolling origin.

    Parameters
    ----------
    rows : DataFrame
        Labelled snapshots (``cutoff``, ``prior``, ``churned``), reaching a year plus
        ``recent_days`` before the latest cutoff for ``season`` to be validated.
    lag_days : int
        Horizon plus gap: how long before a date a cutoff's label is known.
    scoring_date : date-like, optional
        Where the correction is applied; default the latest cutoff plus ``lag_days``.
    recent_days : int
        Cutoffs within this many days of the latest one are the rolling-origin targets.
    min_targets : int
        Fewest targets with a forecast for a source to be considered.
    min_gain : float
        Least reduction of the targets' mean log loss (nats per customer) for a source
        to be used.
    """
    errors = level_errors(rows, prior)
    if errors.empty:
        return LevelChoice(reason="no labelled snapshot to measure the prior's level on")
    latest = errors.index.max()
    when = (
        latest + pd.Timedelta(days=int(lag_days))
        if scoring_date is None
        else pd.Timestamp(scoring_date)
    )
    targets = [c for c in errors.index if c >= latest - pd.Timedelta(days=int(recent_days))]
    groups = {
        pd.Timestamp(str(c)): (
            logit(g[prior].to_numpy(dtype=float)),
            g["churned"].to_numpy(dtype=float),
        )
        for c, g in rows.loc[rows["cutoff"].isin(targets)].groupby("cutoff")
    }
    sources = {
        t: forecast_sources(errors, t, lag_days, tolerance_days=tolerance_days) for t in targets
    }
    table_rows, best = [], LevelChoice(table=pd.DataFrame())
    best_gain = float(min_gain)
    for source in LEVEL_SOURCES:
        used = [t for t in targets if source in sources[t]]
        if len(used) < int(min_targets):
            table_rows.append({"source": source, "targets": len(used)})
            continue
        losses = np.zeros(len(_WEIGHTS))
        for t in used:
            z, y = groups[t]
            b = sources[t][source]
            losses += [_log_loss(z + w * b, y) for w in _WEIGHTS]
        losses /= len(used)
        k = int(np.argmin(losses))
        gain = float(losses[0] - losses[k])
        table_rows.append(
            {"source": source, "targets": len(used), "weight": float(_WEIGHTS[k]), "gain": gain}
        )
        at_scoring = forecast_sources(errors, when, lag_days, tolerance_days=tolerance_days)
        if gain >= best_gain and source in at_scoring:
            best_gain = gain
            w = float(_WEIGHTS[k])
            best = LevelChoice(
                source,
                w,
                w * at_scoring[source],
                forecasts=pd.Series(
                    {t: w * sources[t].get(source, 0.0) for t in targets}, dtype=float
                ),
                reason=(
                    f"{source} level error of the prior, shrunk by {w:.2f}, lowered the log "
                    f"loss of {len(used)} recent snapshots by {gain:.4f} out of time"
                ),
            )
    best.table = pd.DataFrame(table_rows).set_index("source")
    return best


def level_cutoffs(
    cutoffs: Sequence[Any],
    *,
    step_days: int,
    earliest: Any,
    recent_days: int = 84,
    tolerance_days: int = 7,
) -> list[Any]:
    """Extra cutoffs, older than ``cutoffs``, that the ``season`` source needs.

    The grid of ``cutoffs`` is continued back by ``step_days`` down to one year plus
    ``recent_days`` and ``tolerance_days`` before the latest cutoff, and no earlier than
    ``earliest``; oldest first.
    """
    if not cutoffs:
        return []
    cs = sorted(cutoffs)
    latest, first = pd.Timestamp(cs[-1]), pd.Timestamp(cs[0])
    floor = max(
        latest - pd.Timedelta(days=YEAR_DAYS + int(recent_days) + int(tolerance_days)),
        pd.Timestamp(earliest),
    )
    out = []
    c = first - pd.Timedelta(days=int(step_days))
    while c >= floor:
        out.append(c.date())
        c -= pd.Timedelta(days=int(step_days))
    return sorted(out)
