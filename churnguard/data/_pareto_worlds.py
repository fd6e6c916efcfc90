"""Simulated worlds with Pareto/NBD purchases and exponential lifetimes.

Each stresses one thing a churn model meets on real logs (see
:mod:`churnguard.data.simulate` for the common conventions and :data:`WORLDS
<churnguard.data.simulate.WORLDS>` for every world):

* :func:`aging_cohort`: one cohort followed as it ages, so churn rises with age;
* :func:`continuous_acquisition`: cohorts of every age buying with yearly seasonality;
* :func:`shifting_churn`: a dropout intensity that jumps after the last labelled window.

Customers buy at the times of a Poisson process while alive and die at a continuous time
after birth (exponential, or piecewise exponential around the shift); rates are
Gamma-heterogeneous (Pareto/NBD).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.data._world import (
    HORIZONS,
    SPEND,
    YEAR,
    FloatArray,
    World,
    build_world,
    check_acquisition,
    check_common,
    check_positive,
    growing_births,
    poisson_events,
    seasonal_factor,
    start_day,
    suggest_as_of,
    uniform_births,
)

__all__ = ["aging_cohort", "continuous_acquisition", "shifting_churn"]


def _pareto_rates(
    rng: np.random.Generator, n: int, r: float, alpha: float, s: float, beta: float
) -> tuple[FloatArray, FloatArray]:
    """Pareto/NBD heterogeneity: ``lambda ~ Gamma(r, alpha)``, ``mu ~ Gamma(s, beta)`` (rates)."""
    return rng.gamma(r, 1.0 / alpha, n), rng.gamma(s, 1.0 / beta, n)


def aging_cohort(
    n_customers: int = 23_570,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 912,
    acquisition_days: int = 90,
    r: float = 0.75,
    alpha: float = 60.0,
    s: float = 0.6,
    beta: float = 180.0,
    p: float = SPEND["p"],
    q: float = SPEND["q"],
    v: float = SPEND["v"],
    horizons_days: tuple[int, ...] = HORIZONS,
) -> World:
    """One cohort acquired over a quarter and followed as it ages (CDNOW-like Pareto/NBD).

    Why: churn models are usually trained on windows labelled when the cohort was young.
    As a cohort ages the dead accumulate, so the share of inactive customers in a window
    rises with time and a model calibrated on early windows underestimates later churn.

    Generative process (exactly Pareto/NBD in days, then floored to days): birth days are
    uniform over the first ``acquisition_days``; each customer buys at birth, then at the
    times of a Poisson process with rate ``lambda ~ Gamma(r, rate=alpha)`` while alive;
    the lifetime after birth is exponential with rate ``mu ~ Gamma(s, rate=beta)``.
    Amounts are Gamma-Gamma(``p, q, v``).

    Parameters
    ----------
    n_customers : int
        Customers in the cohort (default: CDNOW's 23,570).
    seed : int
        Seed of ``np.random.default_rng``.
    start : date-like
        First day of the log.
    n_days : int
        Days observed (default 912: 2.5 years, 2022-01-01 to 2024-06-30).
    acquisition_days : int
        Length of the acquisition period at the start (default a quarter).
    r, alpha : float
        Gamma heterogeneity of the purchase rate (shape, rate in days; mean ``r / alpha``
        purchases per day, default one per 80 days).
    s, beta : float
        Gamma heterogeneity of the dropout rate (shape, rate in days; mean ``s / beta``).
    p, q, v : float
        Gamma-Gamma spend parameters.
    horizons_days : tuple of int
        Horizons the suggested as-of dates must leave room for.

    Returns
    -------
    World
        Suggested as-of dates every 182 days back from ``end - max(horizons)``, as long as
        at least one fully labelled ``max(horizons)`` window after acquisition precedes them
        (default: 2023-01-01, 2023-07-02, 2023-12-31); ``truth["model"] == "pareto"``.
    """
    spend = {"p": p, "q": q, "v": v}
    check_common(n_customers, n_days, horizons_days, spend)
    check_positive(r=r, alpha=alpha, s=s, beta=beta)
    check_acquisition(acquisition_days, n_days)
    t_start = start_day(start)
    rng = np.random.default_rng(seed)
    birth = uniform_births(rng, n_customers, acquisition_days)
    lam, mu = _pareto_rates(rng, n_customers, r, alpha, s, beta)
    clock = (birth + 1).astype(np.float64)
    with np.errstate(divide="ignore"):
        death = clock + rng.exponential(1.0, n_customers) / mu
    owner, times = poisson_events(rng, lam, clock, np.minimum(death, float(n_days)))
    as_of = suggest_as_of(
        n_days,
        horizons_days,
        step=182,
        count=3,
        earliest=acquisition_days + max(horizons_days),
    )
    return build_world(
        name="aging_cohort",
        description=(
            "One cohort acquired in a quarter and followed as it ages: churn rises with age, "
            "so windows labelled when the cohort was young understate later churn."
        ),
        start=t_start,
        n_days=n_days,
        birth_day=birth,
        owner=owner,
        repeat_time=times,
        death_time=death,
        lam=lam,
        dropout=mu,
        spend=spend,
        rng=rng,
        as_of_days=as_of,
        horizons_days=horizons_days,
        truth={
            "seed": seed,
            "n_customers": n_customers,
            "model": "pareto",
            "model_exact": True,
            "params": {"r": r, "alpha": alpha, "s": s, "beta": beta},
            "acquisition_days": acquisition_days,
        },
    )


def continuous_acquisition(
    n_customers: int = 30_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 1096,
    acquisition_growth: float = 0.25,
    seasonal_amplitude: float = 0.4,
    peak_day_of_year: int = 350,
    r: float = 0.8,
    alpha: float = 50.0,
    s: float = 0.7,
    beta: float = 200.0,
    p: float = SPEND["p"],
    q: float = SPEND["q"],
    v: float = SPEND["v"],
    horizons_days: tuple[int, ...] = HORIZONS,
) -> World:
    """Customers acquired throughout the period, buying with yearly seasonality.

    Why: real logs mix cohorts of every age, and purchase intensity follows the calendar.
    A window's inactivity then depends on the season (a quiet summer is not churn), and
    a model trained on windows from one season is scored in another.

    Generative process: birth days over the whole log with acquisition intensity growing
    by ``acquisition_growth`` per year (0 = steady); lifetime after birth exponential with
    ``mu ~ Gamma(s, rate=beta)``; while alive, purchases follow a Poisson process with
    intensity ``lambda * (1 + A cos(2 pi (t - t_peak) / 365.25))``, ``lambda ~ Gamma(r,
    rate=alpha)``, ``A = seasonal_amplitude`` and the peak in the middle of day-of-year
    ``peak_day_of_year`` (default mid-December, so the dip is in mid-June). Simulated
    exactly by thinning: candidates at rate ``lambda (1 + A)`` kept with probability
    ``factor / (1 + A)``. Acquisition itself is not seasonal. Amounts are Gamma-Gamma.

    Parameters
    ----------
    n_customers : int
        Customers acquired over the log.
    seed : int
        Seed of ``np.random.default_rng``.
    start : date-like
        First day of the log.
    n_days : int
        Days observed (default 1096: three years, 2022-01-01 to 2024-12-31).
    acquisition_growth : float
        Yearly growth of the acquisition rate (0.25: each year acquires 25% more), > -1.
    seasonal_amplitude : float
        ``A`` in ``[0, 1)``: peak intensity ``1 + A`` and trough ``1 - A`` times ``lambda``.
    peak_day_of_year : int
        Day of the year (1-366) with the highest intensity.
    r, alpha, s, beta : float
        Pareto/NBD heterogeneity (rates in days; ``lambda`` is the yearly mean rate).
    p, q, v : float
        Gamma-Gamma spend parameters.
    horizons_days : tuple of int
        Horizons the suggested as-of dates must leave room for.

    Returns
    -------
    World
        Four suggested as-of dates 91 days apart ending at ``end - max(horizons)``, so the
        scored windows start in every season; ``truth["model"] == "pareto"`` with
        ``model_exact`` False (the seasonality is not part of Pareto/NBD).
    """
    spend = {"p": p, "q": q, "v": v}
    check_common(n_customers, n_days, horizons_days, spend)
    check_positive(r=r, alpha=alpha, s=s, beta=beta)
    if not 0 <= seasonal_amplitude < 1:
        raise ValueError(f"seasonal_amplitude must be in [0, 1), received {seasonal_amplitude!r}.")
    if not -1 < acquisition_growth:
        raise ValueError(f"acquisition_growth must be > -1, received {acquisition_growth!r}.")
    if not 1 <= peak_day_of_year <= 366:
        raise ValueError(f"peak_day_of_year must be in 1..366, received {peak_day_of_year!r}.")
    t_start = start_day(start)
    rng = np.random.default_rng(seed)
    birth = growing_births(rng, n_customers, n_days, acquisition_growth)
    lam, mu = _pareto_rates(rng, n_customers, r, alpha, s, beta)
    clock = (birth + 1).astype(np.float64)
    with np.errstate(divide="ignore"):
        death = clock + rng.exponential(1.0, n_customers) / mu
    top = 1.0 + seasonal_amplitude
    cand_owner, cand_times = poisson_events(rng, lam * top, clock, np.minimum(death, float(n_days)))
    factor = seasonal_factor(cand_times, t_start, seasonal_amplitude, peak_day_of_year)
    keep = rng.random(cand_times.size) * top < factor
    as_of = suggest_as_of(
        n_days, horizons_days, step=91, count=4, earliest=2 * max(horizons_days) + 28
    )
    return build_world(
        name="continuous_acquisition",
        description=(
            "Customers keep arriving and buy with a December peak and a summer dip, so a "
            "window's inactivity depends on the season as much as on churn."
        ),
        start=t_start,
        n_days=n_days,
        birth_day=birth,
        owner=cand_owner[keep],
        repeat_time=cand_times[keep],
        death_time=death,
        lam=lam,
        dropout=mu,
        spend=spend,
        rng=rng,
        as_of_days=as_of,
        horizons_days=horizons_days,
        truth={
            "seed": seed,
            "n_customers": n_customers,
            "model": "pareto",
            "model_exact": False,
            "params": {"r": r, "alpha": alpha, "s": s, "beta": beta},
            "acquisition_growth": acquisition_growth,
            "seasonality": {
                "amplitude": seasonal_amplitude,
                "peak_day_of_year": peak_day_of_year,
                "period_days": YEAR,
                "form": "1 + amplitude * cos(2 pi (t - t_peak) / period_days)",
            },
        },
    )


def shifting_churn(
    n_customers: int = 30_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 912,
    shift_date: str | pd.Timestamp | None = None,
    churn_multiplier: float = 3.0,
    r: float = 1.0,
    alpha: float = 30.0,
    s: float = 2.0,
    beta: float = 730.0,
    p: float = SPEND["p"],
    q: float = SPEND["q"],
    v: float = SPEND["v"],
    horizons_days: tuple[int, ...] = HORIZONS,
) -> World:
    """Pareto/NBD-like world whose dropout intensity jumps at ``shift_date``.

    Why: a churn model learns the churn rate of its labelled windows. Here the rate
    changes after the last of them, so every labelled window is (almost entirely)
    pre-shift while the scored window is entirely post-shift: scores calibrated on the
    past underestimate churn, and only features that react to the shift can catch it.

    Timeline (defaults): the single suggested as-of date is ``a = end - max(horizons)``
    (2023-12-31). A 91-day backtest at ``a`` trains on snapshots whose labels are known at
    ``a``, the last being the cutoff ``a - 91`` with window ``(a - 91, a]``. The shift is
    at ``a - 28`` (2023-12-03): after that last labelled cutoff (so only its final 28 days,
    and the last 28 days of the 182-day backtest's last window, see it) and before ``a``,
    so both scored windows ``(a, a + 91]`` and ``(a, a + 182]`` lie wholly after it.

    Generative process: birth days uniform over the whole log (steady acquisition, so the
    pre-shift churn rate drifts up only slowly as the dead accumulate: at the defaults
    about 0.51 to 0.61 over the four 91-day windows before the shift, then 0.71 in the
    scored window against 0.65 without the shift); purchases follow a Poisson process with
    ``lambda ~ Gamma(r, rate=alpha)`` while alive; the dropout hazard is
    ``mu ~ Gamma(s, rate=beta)`` before the start of ``shift_date`` and
    ``churn_multiplier * mu`` from then on (lifetimes drawn exactly by inverting the
    piecewise-linear cumulative hazard). Amounts are Gamma-Gamma.

    Parameters
    ----------
    n_customers : int
        Customers acquired over the log.
    seed : int
        Seed of ``np.random.default_rng``.
    start : date-like
        First day of the log.
    n_days : int
        Days observed (default 912: 2.5 years).
    shift_date : date-like, optional
        First day of the new dropout intensity (default: 28 days before the as-of date).
        Must lie inside the log.
    churn_multiplier : float
        Factor on every customer's dropout hazard from ``shift_date`` on (> 1 raises
        churn, < 1 lowers it).
    r, alpha, s, beta : float
        Pareto/NBD heterogeneity before the shift (rates in days).
    p, q, v : float
        Gamma-Gamma spend parameters.
    horizons_days : tuple of int
        Horizons the suggested as-of date must leave room for.

    Returns
    -------
    World
        ``truth`` has ``shift_date``, ``churn_multiplier`` and the pre-shift Pareto/NBD
        ``params`` (``model_exact`` False); ``latent.dropout`` is the pre-shift rate.
    """
    spend = {"p": p, "q": q, "v": v}
    check_common(n_customers, n_days, horizons_days, spend)
    check_positive(r=r, alpha=alpha, s=s, beta=beta, churn_multiplier=churn_multiplier)
    t_start = start_day(start)
    as_of = suggest_as_of(
        n_days, horizons_days, step=182, count=1, earliest=2 * max(horizons_days) + 28
    )
    shift_day = as_of[-1] - 28 if shift_date is None else (start_day(shift_date) - t_start).days
    if not 0 < shift_day < n_days:
        raise ValueError(
            f"shift_date must fall inside the log ({t_start.date()} to "
            f"{(t_start + pd.Timedelta(days=n_days - 1)).date()}), received {shift_date!r}."
        )
    rng = np.random.default_rng(seed)
    birth = uniform_births(rng, n_customers, n_days)
    lam, mu = _pareto_rates(rng, n_customers, r, alpha, s, beta)
    clock = (birth + 1).astype(np.float64)
    hazard = rng.exponential(1.0, n_customers)
    before = mu * np.clip(shift_day - clock, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        death = np.where(
            hazard <= before,
            clock + hazard / mu,
            np.maximum(clock, shift_day) + (hazard - before) / (churn_multiplier * mu),
        )
    owner, times = poisson_events(rng, lam, clock, np.minimum(death, float(n_days)))
    return build_world(
        name="shifting_churn",
        description=(
            f"Dropout intensity jumps x{churn_multiplier:g} after the last labelled window, "
            "so the scored window churns differently from every window a model learned from."
        ),
        start=t_start,
        n_days=n_days,
        birth_day=birth,
        owner=owner,
        repeat_time=times,
        death_time=death,
        lam=lam,
        dropout=mu,
        spend=spend,
        rng=rng,
        as_of_days=as_of,
        horizons_days=horizons_days,
        truth={
            "seed": seed,
            "n_customers": n_customers,
            "model": "pareto",
            "model_exact": False,
            "params": {"r": r, "alpha": alpha, "s": s, "beta": beta},
            "shift_date": t_start + pd.Timedelta(days=shift_day),
            "churn_multiplier": churn_multiplier,
        },
    )
