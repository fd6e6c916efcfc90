"""The level of an active customer's next-window spend at the scoring date, out of time.

The learned spend model (:class:`~churnguard.clv.learned.WindowSpendModel`) is put at
the level of its calibration snapshots, the latest labelled ones. When purchase
intensity follows the calendar, what an active customer spends in the next window
depends on the window's season, and the latest labelled window is in another season
than the one scored: on a simulated log with a December peak (amplitude 0.4) the
next-window revenue was off by -42% to +85% depending on the as-of date
(``benchmarks/README.md``). The churn side has the same problem and its answer,
:mod:`churnguard.churn.level`; this is the value side's.

Every labelled snapshot measures the level error of the structural (BTYD x
Gamma-Gamma) spend of an active window as one number, ``e(c)``: the log of observed
over predicted spend of the customers who bought in the window of cutoff ``c``. The
model's level is the latest labelled one, so what it misses at a date ``t`` is
``e(t) - e(latest labelled by t)``; the forecast of that miss is last year's:
``e(t - 1 year) - e(latest labelled by t)``. It is shrunk by a weight fitted on a
rolling origin (every recent cutoff is a target forecast from what was labelled
``lag_days`` before it, exactly as the scoring date's is) and used only when it lowers
the targets' mean squared log error by at least ``min_gain``. A log without a
repeating season, or too short to have one, gets no correction.

With the ``hurdle`` and ``blend`` value models only the learned spend of an active
window is corrected: the churn probability that multiplies it has its own level. With
``btyd`` the whole BTYD x Gamma-Gamma next-window value is, from its own level errors
counted from zero (it learned no level from the latest window). The 12-month value
columns (``predicted_clv``, ``value_if_retained``) span every season and are left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnguard._money import KEPT_SHARE, fit_kept_prior, kept_share
from churnguard.churn.candidates import PRIOR_COLUMN
from churnguard.churn.level import LevelChoice, forecast_sources
from churnguard.model.value_choice import ACTIVE_SPEND, add_active_spend, window_value

__all__ = [
    "MIN_SPEND_LEVEL_GAIN",
    "active_spend_errors",
    "active_spend_sums",
    "btyd_window_errors",
    "choose_value_level",
    "fit_value_level",
    "value_level_note",
    "window_frame",
]

#: Least reduction of the targets' mean squared log error for the correction to be used.
#: A per-cutoff level is noisy by a few percent (heavy-tailed spend), and without any
#: season averaging last year's level with the latest one lowers that noise a little
#: (gains up to 0.003 with 5% noise); 0.005 is an RMS error going from 0.10 to 0.07.
MIN_SPEND_LEVEL_GAIN = 0.005

_WEIGHTS = np.linspace(0.0, 1.0, 21)
#: What the BTYD x Gamma-Gamma next-window value is made of (net of returns).
_BTYD_COLUMNS = ("expected_purchases", "expected_spend", KEPT_SHARE)


def active_spend_sums(rows: pd.DataFrame) -> pd.DataFrame:
    """Observed and structural spend of the customers active in each cutoff's window.

    Parameters
    ----------
    rows : DataFrame
        ``cutoff``, ``future_purchases``, ``future_spend`` and :data:`ACTIVE_SPEND`.

    Returns
    -------
    DataFrame
        ``observed`` and ``structural`` by cutoff (sorted). A customer without a finite,
        positive structural spend counts on neither side; cutoffs without an active
        customer or spend are left out.
    """
    structural = rows[ACTIVE_SPEND].to_numpy(dtype=float)
    usable = (rows["future_purchases"].to_numpy() > 0) & np.isfinite(structural) & (structural > 0)
    return _sums(rows.loc[usable], structural[usable])


def _sums(rows: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """``observed`` (``future_spend``) and ``structural`` (``predicted``) summed by cutoff."""
    sums = (
        pd.DataFrame(
            {
                "cutoff": rows["cutoff"].to_numpy(),
                "observed": rows["future_spend"].to_numpy(dtype=float),
                "structural": predicted,
            }
        )
        .groupby("cutoff", sort=True)[["observed", "structural"]]
        .sum()
    )
    # Dates, whatever the cutoff column held (one conversion per cutoff, not per row).
    sums.index = pd.DatetimeIndex([pd.Timestamp(str(c)) for c in sums.index])
    return sums.loc[(sums["observed"] > 0) & (sums["structural"] > 0)]


def active_spend_errors(rows: pd.DataFrame) -> pd.Series:
    """``e(c)`` at every cutoff: log(observed / structural spend of active customers).

    See :func:`active_spend_sums` for ``rows`` and which customers count.
    """
    return _log_ratio(active_spend_sums(rows))


def _log_ratio(sums: pd.DataFrame) -> pd.Series:
    ratio = sums["observed"].to_numpy(dtype=float) / sums["structural"].to_numpy(dtype=float)
    return pd.Series(np.log(ratio), index=sums.index, dtype=float)


def choose_value_level(
    errors: pd.Series,
    lag_days: int,
    *,
    scoring_date: Any = None,
    recent_days: int = 84,
    tolerance_days: int = 7,
    min_targets: int = 3,
    min_gain: float = MIN_SPEND_LEVEL_GAIN,
    relative: bool = True,
    reference_days: int = 42,
    weights: pd.Series | None = None,
) -> LevelChoice:
    """Fit and validate the seasonal level of a next-window value on a rolling origin.

    Parameters
    ----------
    errors : Series
        :func:`active_spend_errors` or :func:`btyd_window_errors`, reaching a year plus
        ``recent_days`` before the latest cutoff for the season to be validated.
    lag_days : int
        Horizon plus gap: how long before a date a cutoff's label is known.
    scoring_date : date-like, optional
        Where the correction is applied; default the latest cutoff plus ``lag_days``.
    recent_days, tolerance_days, min_targets
        As in :func:`churnguard.churn.level.choose_level`.
    min_gain : float
        Least reduction of the targets' mean squared log error.
    relative : bool
        The corrected value is at the level of the latest labelled windows (the learned
        spend model is calibrated on the snapshots of its last ``reference_days``): its
        miss and its forecast are counted from their pooled level. False for a value that
        learned no level (BTYD x Gamma-Gamma): both are counted from zero.
    reference_days : int
        The learned model's calibration window (``calibration_days`` of the model).
    weights : Series, optional
        Structural spend by cutoff, to pool the reference level as the calibration pools
        its rows (``log(sum(observed) / sum(structural))``); default equal weights.

    Returns
    -------
    LevelChoice
        ``offset`` is the log of the factor applied to the value (0: none); ``source``
        is ``"season"`` or ``"none"``.
    """
    if errors.empty:
        return LevelChoice(reason="no labelled snapshot to measure the spend level on")
    latest = errors.index.max()
    lag = pd.Timedelta(days=int(lag_days))
    when = latest + lag if scoring_date is None else pd.Timestamp(scoring_date)
    misses, forecasts = [], []
    for t in [c for c in errors.index if c >= latest - pd.Timedelta(days=int(recent_days))]:
        known = forecast_sources(errors, t, lag_days, tolerance_days=tolerance_days)
        if "season" in known:
            base = _reference(errors, weights, t - lag, reference_days) if relative else 0.0
            misses.append(float(errors[t]) - base)
            forecasts.append(known["season"] - base)
    table = pd.DataFrame({"targets": [len(misses)]}, index=pd.Index(["season"], name="source"))
    if len(misses) < int(min_targets):
        return LevelChoice(
            table=table,
            reason=f"{len(misses)} recent snapshots have a labelled window a year earlier "
            f"(at least {int(min_targets)} are needed to validate a seasonal spend level)",
        )
    d, f = np.asarray(misses), np.asarray(forecasts)
    losses = np.array([float(np.mean((d - w * f) ** 2)) for w in _WEIGHTS])
    k = int(np.argmin(losses))
    w, gain = float(_WEIGHTS[k]), float(losses[0] - losses[k])
    table["weight"], table["gain"] = w, gain
    at = forecast_sources(errors, when, lag_days, tolerance_days=tolerance_days)
    if gain < float(min_gain) or "season" not in at:
        why = (
            f"last year's level lowered the squared log error of {len(misses)} recent "
            f"snapshots by {gain:.4f} out of time (at least {float(min_gain):g} is required)"
            if "season" in at
            else "no labelled window a year before the scoring date"
        )
        return LevelChoice(table=table, reason=f"no spend level correction: {why}")
    base = _reference(errors, weights, when - lag, reference_days) if relative else 0.0
    offset = w * (at["season"] - base)
    what = "an active customer's spend" if relative else "the BTYD x Gamma-Gamma value"
    return LevelChoice(
        "season",
        w,
        offset,
        table=table,
        reason=(
            f"last year's level of {what}, shrunk by {w:.2f}, lowered "
            f"the squared log error of {len(misses)} recent snapshots by {gain:.4f} out of time"
        ),
    )


def _reference(
    errors: pd.Series, weights: pd.Series | None, known_by: pd.Timestamp, days: int
) -> float:
    """Pooled level of the cutoffs labelled by ``known_by`` within ``days`` of the latest."""
    known = errors[errors.index <= known_by]
    window = known[known.index >= known.index.max() - pd.Timedelta(days=int(days))]
    w = (
        np.ones(len(window))
        if weights is None
        else weights.reindex(window.index).fillna(0.0).to_numpy(dtype=float)
    )
    if w.sum() <= 0:
        return float(window.iloc[-1])
    return float(np.log(np.sum(w * np.exp(window.to_numpy(dtype=float))) / w.sum()))


def btyd_window_errors(rows: pd.DataFrame) -> pd.Series:
    """Log of observed over BTYD x Gamma-Gamma next-window spend, by cutoff (every row)."""
    if KEPT_SHARE in rows.columns:  # a snapshot without returns has no share: all kept
        rows = rows.assign(**{KEPT_SHARE: rows[KEPT_SHARE].fillna(1.0)})
    return _log_ratio(_sums(rows, window_value("btyd", rows, np.zeros(len(rows)), None)))


def fit_value_level(
    frames: list[pd.DataFrame], value_model: str, *, lag_days: int, reference_days: int = 42
) -> LevelChoice:
    """The seasonal level of ``value_model``'s next-window value, from labelled snapshots.

    ``btyd``: of its whole next-window value, which learned no level; ``hurdle`` and
    ``blend``: of the learned spend of an active window, at the latest window's level.
    ``frames``: snapshot tables, older ones first.
    """
    cols = ["cutoff", "future_purchases", "future_spend", ACTIVE_SPEND, *_BTYD_COLUMNS]
    rows = [
        f[[c for c in cols if c in f.columns]]
        for f in frames
        if not f.empty and ACTIVE_SPEND in f.columns
    ]
    if not rows:
        return LevelChoice(reason="no labelled snapshot to measure the spend level on")
    table = pd.concat(rows, ignore_index=True)
    # The scoring date is the latest cutoff's plus the lag, whether or not that cutoff
    # has an error (it may have no active customer).
    when = pd.Timestamp(str(table["cutoff"].max())) + pd.Timedelta(days=int(lag_days))
    if value_model == "btyd":
        errors = btyd_window_errors(table)
        return choose_value_level(errors, lag_days, scoring_date=when, relative=False)
    sums = active_spend_sums(table)
    return choose_value_level(
        _log_ratio(sums),
        lag_days,
        scoring_date=when,
        reference_days=reference_days,
        weights=sums["structural"],
    )


def value_level_note(choice: LevelChoice, value_model: str = "hurdle") -> str:
    """One line of the train summary."""
    if choice.source == "none":
        return f"spend level: unchanged ({choice.reason})"
    what = "next-window value" if value_model == "btyd" else "learned spend of an active window"
    return f"spend level: {what} x{np.exp(choice.offset):.2f} ({choice.reason})"


def window_frame(stage: Any, feats: pd.DataFrame, pm: Any, sm: Any) -> pd.DataFrame:
    """A snapshot's features with the columns the level corrections read.

    :data:`PRIOR_COLUMN`, ``expected_purchases``, ``expected_spend`` and
    :data:`ACTIVE_SPEND` (net of returns, with the snapshot's own returns prior), as the
    full value columns have them, without the CLV curves.
    """
    values = stage.window_columns(feats, pm, sm)
    frame = feats.assign(
        **{c: values[c].to_numpy() for c in (PRIOR_COLUMN, "expected_purchases", "expected_spend")}
    )
    share = kept_share(feats, fit_kept_prior(feats))
    if share is not None:
        frame[KEPT_SHARE] = share
    add_active_spend(frame, stage.horizon_units, pm)
    return frame
