"""The level of a learned churn model at the scoring date: half-way to the prior's.

A learned candidate (plain or anchored boosting, :mod:`churnguard.churn.candidates`)
takes its base rate from labelled snapshots, whose windows all end at least a horizon
before the date it scores; the prior (BTYD P(no purchase in the horizon), with its own
level correction, :mod:`churnguard.churn.level`) projects the base rate to that date
through the purchase process. Out of time neither level is reliably right, and they err
in different ways: on CDNOW's five backtest runs the learned model's mean churn was off
by -0.033 to +0.004 and the prior's by -0.012 to +0.054, not on the same runs; on a
frequent-buyer world the learned level overshot (+0.024) where the prior's held.

Two forecasts whose errors differ are combined with equal weights: the robust choice,
since a weight fitted out of time would rest on one validation snapshot's rate. The
learned model's log-odds are moved by one constant, so that its mean probability over
the training base at the end of the log is the mean of its own and the prior's there.
The ranking, so ROC-AUC and lift, is unchanged; the offset is fixed at training, like
the prior's level, so a customer's probability does not depend on who else is scored.

The spread is blended the same way. A learned model sets how far apart its
probabilities lie on its calibration snapshots; at the end of the log the customers are
older and their histories say more, which the trees cannot know (CDNOW as of
1997-09-30 with 182 days: snapshots of 0-3-month-old customers, a base 6-9 months old;
the learned probabilities were too close together, the low ones too high). The prior
projects that change through the purchase process: the ratio of its spread (standard
deviation of the probabilities) at the end of the log to its spread on the calibration
rows, against the same ratio of the learned model. The learned log-odds are multiplied by
the mean of that projection and 1 (equal weights again), then levelled. Where the
snapshots look like the base at the end (a long log), both ratios agree and the factor is
1. A positive factor keeps the order, so the ranking is unchanged here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churnguard.churn.classifier import logit
from churnguard.churn.level import rate_intercept

__all__ = ["SCALE_LIMITS", "LevelBlend", "blend_level", "spread_scale"]

#: The spread factor is kept within these bounds: a larger projected change rests on
#: spreads the calibration rows measure poorly (few rows, nearly constant scores).
SCALE_LIMITS = (2.0 / 3.0, 1.5)


@dataclass
class LevelBlend:
    """The learned model's level moved towards the prior's (0 offset: not moved).

    Attributes
    ----------
    offset : float
        Log-odds added to the learned model's.
    learned_mean, prior_mean : float or None
        Mean churn probability of each over the training base at its end date.
    weight : float
        The prior's weight in the combined level (and spread).
    reason : str
        One line for the train summary.
    scale : float
        Factor on the learned model's log-odds, applied before ``offset`` (1: the
        spread is not moved; see :func:`spread_scale`).
    calibration_spread : (float, float) or None
        Standard deviation of the learned and the prior probabilities on the learned
        model's calibration snapshot rows (what ``scale`` was measured against).
    """

    offset: float = 0.0
    learned_mean: float | None = None
    prior_mean: float | None = None
    weight: float = 0.5
    reason: str = ""
    scale: float = 1.0
    calibration_spread: tuple[float, float] | None = None


def spread_scale(
    learned: np.ndarray,
    prior: np.ndarray,
    calibration_spread: tuple[float, float] | None,
    *,
    weight: float = 0.5,
) -> float:
    """The factor on the learned log-odds that blends its spread with the prior's projection.

    Parameters
    ----------
    learned, prior : ndarray
        Churn probabilities of the base at the end of the log.
    calibration_spread : (float, float) or None
        Standard deviation of the learned and the prior probabilities on the learned
        model's calibration rows; None (or a zero or non-finite spread) gives 1.
    weight : float
        0 keeps the learned spread, 1 takes the prior's projection of it.

    Returns
    -------
    float
        ``1 + weight * (r - 1)`` with ``r = (sd_prior_end / sd_prior_cal) /
        (sd_learned_end / sd_learned_cal)``, within :data:`SCALE_LIMITS`.
    """
    if calibration_spread is None or not len(learned):
        return 1.0
    learned_cal, prior_cal = (float(v) for v in calibration_spread)
    learned_end = float(np.std(np.asarray(learned, dtype=float)))
    prior_end = float(np.std(np.asarray(prior, dtype=float)))
    spreads = np.array([learned_cal, prior_cal, learned_end, prior_end])
    if not np.all(np.isfinite(spreads)) or np.any(spreads <= 1e-9):
        return 1.0
    ratio = (prior_end / prior_cal) / (learned_end / learned_cal)
    low, high = SCALE_LIMITS
    return float(np.clip(1.0 + float(weight) * (ratio - 1.0), low, high))


def blend_level(
    learned: np.ndarray,
    prior: np.ndarray,
    *,
    weight: float = 0.5,
    where: str = "",
    calibration_spread: tuple[float, float] | None = None,
) -> LevelBlend:
    """The factor and offset that move ``learned`` ``weight`` of the way to the prior.

    Parameters
    ----------
    learned, prior : ndarray
        Churn probabilities of the same customers from the learned model and the prior.
    weight : float
        0 keeps the learned level and spread, 1 takes the prior's.
    where : str
        The base the means are over, for the reason (e.g. ``"the base at 1997-09-30"``).
    calibration_spread : (float, float), optional
        The two models' spreads on the learned model's calibration rows; without it the
        spread is not moved (see :func:`spread_scale`).

    Returns
    -------
    LevelBlend
        ``expit(scale * logit(learned) + offset)`` has the blended mean over these
        customers.
    """
    learned = np.asarray(learned, dtype=float)
    prior = np.asarray(prior, dtype=float)
    if not len(learned):
        return LevelBlend(weight=weight, reason="no customer to measure the levels on")
    m_learned, m_prior = float(learned.mean()), float(prior.mean())
    target = (1.0 - weight) * m_learned + weight * m_prior
    scale = spread_scale(learned, prior, calibration_spread, weight=weight)
    offset = rate_intercept(scale * logit(learned), target)
    spread = (
        f"; the learned log-odds first scaled by {scale:.2f}, {weight:.0%} of the way to the "
        "spread the prior projects from the calibration snapshots to this base"
        if scale != 1.0
        else ""
    )
    return LevelBlend(
        offset=offset,
        learned_mean=m_learned,
        prior_mean=m_prior,
        weight=weight,
        reason=(
            f"mean churn over {where or 'the base'}: learned {m_learned:.3f}, prior "
            f"{m_prior:.3f}; the learned log-odds moved by {offset:+.3f} to {target:.3f}, "
            f"the two levels' mean{spread}"
        ),
        scale=scale,
        calibration_spread=calibration_spread,
    )
