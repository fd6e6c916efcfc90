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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churnguard.churn.classifier import logit
from churnguard.churn.level import rate_intercept

__all__ = ["LevelBlend", "blend_level"]


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
        The prior's weight in the combined level.
    reason : str
        One line for the train summary.
    """

    offset: float = 0.0
    learned_mean: float | None = None
    prior_mean: float | None = None
    weight: float = 0.5
    reason: str = ""


def blend_level(
    learned: np.ndarray, prior: np.ndarray, *, weight: float = 0.5, where: str = ""
) -> LevelBlend:
    """The offset that moves ``learned`` to ``weight`` of the way to ``prior``'s mean level.

    Parameters
    ----------
    learned, prior : ndarray
        Churn probabilities of the same customers from the learned model and the prior.
    weight : float
        0 keeps the learned level, 1 takes the prior's.
    where : str
        The base the means are over, for the reason (e.g. ``"the base at 1997-09-30"``).
    """
    learned = np.asarray(learned, dtype=float)
    prior = np.asarray(prior, dtype=float)
    if not len(learned):
        return LevelBlend(weight=weight, reason="no customer to measure the levels on")
    m_learned, m_prior = float(learned.mean()), float(prior.mean())
    target = (1.0 - weight) * m_learned + weight * m_prior
    offset = rate_intercept(logit(learned), target)
    return LevelBlend(
        offset=offset,
        learned_mean=m_learned,
        prior_mean=m_prior,
        weight=weight,
        reason=(
            f"mean churn over {where or 'the base'}: learned {m_learned:.3f}, prior "
            f"{m_prior:.3f}; the learned log-odds moved by {offset:+.3f} to {target:.3f}, "
            "the two levels' mean"
        ),
    )
