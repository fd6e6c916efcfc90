"""Simulated worlds whose truth is an exact NBD-family model: no churn, and BG/NBD.

Reference worlds rather than stress tests (see :mod:`churnguard.data.simulate` for the
common conventions):

* :func:`no_churn`: steady NBD buyers who never leave, so every quiet spell is chance;
* :func:`bgnbd_world`: exactly BG/NBD with Gamma-Gamma spend, so the Bayes-optimal churn
  score and value are computable.

Neither has a lifetime clock: nobody dies in the first, and in the second death can only
come right after a repeat purchase.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.data._world import (
    HORIZONS,
    SPEND,
    World,
    build_world,
    check_acquisition,
    check_common,
    check_positive,
    poisson_events,
    start_day,
    suggest_as_of,
    uniform_births,
)

__all__ = ["bgnbd_world", "no_churn"]


def no_churn(
    n_customers: int = 30_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 912,
    acquisition_days: int = 365,
    r: float = 2.0,
    alpha: float = 90.0,
    p: float = SPEND["p"],
    q: float = SPEND["q"],
    v: float = SPEND["v"],
    horizons_days: tuple[int, ...] = HORIZONS,
) -> World:
    """Nobody ever leaves: steady Poisson buyers with gamma-heterogeneous rates (NBD).

    Why: a churn label ("no purchase in the window") is positive here only by chance,
    for slow buyers. A good churn score must follow the purchase rate and nothing else;
    a BTYD fit should put its dropout at the boundary (``a -> 0`` or ``b -> inf`` for
    BG/NBD, ``s / beta -> 0`` for Pareto/NBD) and a model that invents dropout shows it.

    Generative process: birth days uniform over the first ``acquisition_days``; after the
    birth purchase, a Poisson process with rate ``lambda ~ Gamma(r, rate=alpha)`` (per
    day) to the end of the log. No death. Amounts are Gamma-Gamma.

    Parameters
    ----------
    n_customers : int
        Customers.
    seed : int
        Seed of ``np.random.default_rng``.
    start : date-like
        First day of the log.
    n_days : int
        Days observed (default 912: 2.5 years).
    acquisition_days : int
        Acquisition period at the start of the log.
    r, alpha : float
        Gamma heterogeneity of the purchase rate (default mean one purchase per 45 days;
        the chance of a quiet 91-day window is ``(alpha / (alpha + 91)) ** r``, about 25%).
    p, q, v : float
        Gamma-Gamma spend parameters.
    horizons_days : tuple of int
        Horizons the suggested as-of dates must leave room for.

    Returns
    -------
    World
        Two suggested as-of dates 182 days apart ending at ``end - max(horizons)``;
        ``truth["model"] == "nbd"`` with ``params`` ``r, alpha``; every ``latent.death``
        is NaT.
    """
    spend = {"p": p, "q": q, "v": v}
    check_common(n_customers, n_days, horizons_days, spend)
    check_positive(r=r, alpha=alpha)
    check_acquisition(acquisition_days, n_days)
    t_start = start_day(start)
    rng = np.random.default_rng(seed)
    birth = uniform_births(rng, n_customers, acquisition_days)
    lam = rng.gamma(r, 1.0 / alpha, n_customers)
    clock = (birth + 1).astype(np.float64)
    owner, times = poisson_events(rng, lam, clock, np.full(n_customers, float(n_days)))
    as_of = suggest_as_of(n_days, horizons_days, step=182, count=2, earliest=max(horizons_days))
    return build_world(
        name="no_churn",
        description=(
            "Nobody ever leaves, so every quiet spell is chance: churn scores should only "
            "track purchase rates and a BTYD fit's dropout goes to its boundary."
        ),
        start=t_start,
        n_days=n_days,
        birth_day=birth,
        owner=owner,
        repeat_time=times,
        death_time=np.full(n_customers, np.inf),
        lam=lam,
        dropout=np.zeros(n_customers),
        spend=spend,
        rng=rng,
        as_of_days=as_of,
        horizons_days=horizons_days,
        truth={
            "seed": seed,
            "n_customers": n_customers,
            "model": "nbd",
            "model_exact": True,
            "params": {"r": r, "alpha": alpha},
            "acquisition_days": acquisition_days,
        },
    )


def bgnbd_world(
    n_customers: int = 30_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 912,
    acquisition_days: int = 365,
    r: float = 0.6,
    alpha: float = 50.0,
    a: float = 0.8,
    b: float = 3.0,
    p: float = SPEND["p"],
    q: float = SPEND["q"],
    v: float = SPEND["v"],
    horizons_days: tuple[int, ...] = HORIZONS,
) -> World:
    """Exactly BG/NBD purchases with Gamma-Gamma spend and known parameters.

    Why: with the true model known, the Bayes-optimal churn score (P(no purchase in the
    window | x, t_x, T) under the true parameters) and expected value can be computed
    for every customer, giving a ceiling to compare fitted models and classifiers with,
    and a check that a BG/NBD fit recovers its own parameters.

    Generative process (Fader, Hardie & Lee 2005, time in days): birth days uniform over
    the first ``acquisition_days`` (so ``T`` varies); the acquisition purchase starts the
    clock (at the end of the birth day, see :mod:`churnguard.data.simulate`). While alive, repeat
    purchases follow a Poisson process with rate ``lambda ~ Gamma(r, rate=alpha)``;
    right after each *repeat* purchase the customer dies with probability
    ``p ~ Beta(a, b)`` (never at the acquisition purchase). Equivalently: with ``N``
    Poisson events in ``(clock, end]`` and ``D ~ Geometric(p)`` (the repeat purchase after
    which the customer dies), the first ``min(N, D)`` events are purchases. Amounts are
    Gamma-Gamma(``p, q, v``).

    Discrepancies with the continuous-time model, both small at the defaults: recency in
    whole days exceeds the continuous one by less than a day, and two repeat purchases
    on one day (about ``(r + 1) / (2 alpha)``, 1.6%, of repeat purchases) collapse into
    one occasion in churnguard's features (count: ``truth["same_day_repeats"]``).

    Parameters
    ----------
    n_customers : int
        Customers.
    seed : int
        Seed of ``np.random.default_rng``.
    start : date-like
        First day of the log.
    n_days : int
        Days observed (default 912: 2.5 years).
    acquisition_days : int
        Acquisition period at the start of the log (default one year).
    r, alpha : float
        Gamma heterogeneity of the purchase rate (shape; rate in days; default mean one
        purchase per 83 days).
    a, b : float
        Beta heterogeneity of the death probability after a repeat purchase.
    p, q, v : float
        Gamma-Gamma spend parameters.
    horizons_days : tuple of int
        Horizons the suggested as-of dates must leave room for.

    Returns
    -------
    World
        Two suggested as-of dates 182 days apart ending at ``end - max(horizons)``;
        ``truth`` holds ``model == "bgnbd"``, ``params`` ``r, alpha, a, b`` (days) and
        ``spend_params`` ``p, q, v``; ``latent.dropout`` is each customer's ``p``.
    """
    spend = {"p": p, "q": q, "v": v}
    check_common(n_customers, n_days, horizons_days, spend)
    check_positive(r=r, alpha=alpha, a=a, b=b)
    check_acquisition(acquisition_days, n_days)
    t_start = start_day(start)
    rng = np.random.default_rng(seed)
    birth = uniform_births(rng, n_customers, acquisition_days)
    lam = rng.gamma(r, 1.0 / alpha, n_customers)
    death_prob = np.clip(rng.beta(a, b, n_customers), 1e-12, 1.0)
    dies_after = rng.geometric(death_prob).astype(np.int64)
    clock = (birth + 1).astype(np.float64)
    owner, times = poisson_events(rng, lam, clock, np.full(n_customers, float(n_days)))
    # Events come grouped by owner; sort each customer's events by time and rank them.
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    counts = np.bincount(owner, minlength=n_customers)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(owner.size) - first[owner]
    keep = rank < dies_after[owner]
    dies_inside = dies_after <= counts
    death = np.full(n_customers, np.inf)
    death[dies_inside] = times[first[dies_inside] + dies_after[dies_inside] - 1]
    as_of = suggest_as_of(
        n_days, horizons_days, step=182, count=2, earliest=acquisition_days + max(horizons_days)
    )
    return build_world(
        name="bgnbd_world",
        description=(
            "Exactly BG/NBD with Gamma-Gamma spend and known parameters, so the Bayes-optimal "
            "churn score and value are computable and models can be measured against them."
        ),
        start=t_start,
        n_days=n_days,
        birth_day=birth,
        owner=owner[keep],
        repeat_time=times[keep],
        death_time=death,
        lam=lam,
        dropout=death_prob,
        spend=spend,
        rng=rng,
        as_of_days=as_of,
        horizons_days=horizons_days,
        truth={
            "seed": seed,
            "n_customers": n_customers,
            "model": "bgnbd",
            "model_exact": True,
            "params": {"r": r, "alpha": alpha, "a": a, "b": b},
            "acquisition_days": acquisition_days,
        },
    )
