"""Seeded simulated worlds with a known truth, for backtesting churn and value models.

Each generator returns a :class:`World`: a canonical transaction log (``customer_id``
zero-padded text, ``date`` ``datetime64[ns]``, ``amount`` float, sorted by customer and
date), the as-of dates a backtest should score at, the generating parameters and the
per-customer latent truth (birth, death, purchase rate, mean spend). Every world stresses
one thing:

``aging_cohort``
    One cohort acquired in a quarter and followed for 2.5 years (CDNOW-like): the share of
    inactive customers rises as the cohort ages, so early windows understate later churn.
``continuous_acquisition``
    Customers keep arriving; purchase intensity has a December peak and a summer dip, so
    a window's inactivity depends on the season as much as on churn.
``no_churn``
    Nobody ever leaves; every quiet spell is chance. A BTYD fit puts its dropout at the
    boundary, and churn scores should only track purchase rates.
``shifting_churn``
    Dropout intensity triples shortly before the as-of date, after the last fully
    labelled window, so the scored window churns more than any window seen in training.
``bgnbd_world``
    Exactly BG/NBD with Gamma-Gamma spend and known parameters: the Bayes-optimal churn
    score and customer value can be computed and compared with any model.

Common conventions
------------------
Time runs continuously in days from the start of ``start`` (day ``d`` is ``[d, d + 1)``);
the log covers days ``0 .. n_days - 1`` and ``end = start + n_days - 1``. A customer's
first (acquisition) purchase is on their birth day ``d0``, and their clock starts at the
*end* of that day (time ``d0 + 1``): repeat purchases and death happen at continuous
times after it, and a purchase at time ``t`` is logged on day ``floor(t)``. So the age at
the end of cutoff day ``c`` is exactly ``c - d0``, the ``T`` of
:func:`churnguard.features.rfm_summary` with ``time_unit="D"``, and recency in the log
exceeds the continuous recency by less than a day. Two repeat purchases of one customer
can fall on the same day (rare at the default rates); churnguard's features count them
as one purchase occasion with their amounts summed. ``truth["same_day_repeats"]`` says
how many such purchases each world has.

Spend follows Gamma-Gamma (Fader, Hardie & Lee 2005) in every world: customer ``i`` has
``nu_i ~ Gamma(shape=q, rate=v)`` and each transaction's amount is
``z ~ Gamma(shape=p, rate=nu_i)`` (mean spend ``p / nu_i``), independent of the purchase
process; amounts are rounded to cents (at least 0.01). Where the purchase process is
BTYD, a BTYD x Gamma-Gamma model is therefore the truth.

All draws are vectorised and come from ``np.random.default_rng(seed)``, so a world is a
pure function of its arguments.

Examples
--------
>>> world = bgnbd_world(n_customers=2000, seed=1)
>>> world.transactions.columns.tolist()
['customer_id', 'date', 'amount']
>>> world.truth["model"], sorted(world.truth["params"])
('bgnbd', ['a', 'alpha', 'b', 'r'])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from churnguard.data.io import write_table

__all__ = [
    "WORLDS",
    "World",
    "aging_cohort",
    "bgnbd_world",
    "continuous_acquisition",
    "no_churn",
    "shifting_churn",
    "write_world",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Default Gamma-Gamma spend parameters (close to the CDNOW estimates of FHL 2005).
_SPEND = {"p": 6.0, "q": 3.8, "v": 15.0}
_HORIZONS = (91, 182)
_YEAR = 365.25


@dataclass
class World:
    """A simulated transaction log and the truth that generated it.

    Attributes
    ----------
    name : str
        Generator name (a key of :data:`WORLDS`).
    description : str
        One sentence: what the world stresses.
    transactions : pandas.DataFrame
        ``customer_id`` (zero-padded text), ``date`` (``datetime64[ns]``), ``amount``
        (float), sorted by ``customer_id`` then ``date``. Every customer has at least one
        transaction (the acquisition purchase).
    start, end : pandas.Timestamp
        First and last day of the observed log.
    suggested_as_of : list of pandas.Timestamp
        As-of (scoring) dates for backtests, oldest first; each leaves a fully observed
        window of ``max(suggested_horizons_days)`` days after it inside the log.
    suggested_horizons_days : tuple of int
        Churn horizons the as-of dates are meant for.
    truth : dict
        Generating parameters. Always ``seed``, ``n_customers``, ``n_days``, ``time_unit``
        (``"D"``: rates per day, scales in days), ``model`` (the BTYD model the purchase
        and dropout process follows: ``"bgnbd"``, ``"pareto"`` or ``"nbd"``),
        ``model_exact`` (whether the log is exactly that model up to flooring to days),
        ``params`` (its parameters in days, usable with
        ``churnguard.clv.PurchaseModel.from_params(params, model)`` for ``bgnbd`` and
        ``pareto``), ``spend_model`` (``"gamma-gamma"``), ``spend_params`` (``p, q, v``,
        usable with ``churnguard.clv.SpendModel.from_params``), ``same_day_repeats`` and
        the world's own knobs.
    latent : pandas.DataFrame
        One row per customer, in ``customer_id`` order: ``customer_id``, ``birth`` (date of
        the acquisition purchase), ``death`` (date of death, ``NaT`` if alive at ``end``),
        ``lambda_per_day`` (purchase rate; before seasonality in the seasonal world),
        ``dropout`` (dropout rate per day for exponential lifetimes, or the BG/NBD
        death probability after each repeat purchase; 0 in ``no_churn``) and
        ``mean_spend`` (expected amount per transaction, ``p / nu``).
    """

    name: str
    description: str
    transactions: pd.DataFrame = field(repr=False)
    start: pd.Timestamp
    end: pd.Timestamp
    suggested_as_of: list[pd.Timestamp]
    suggested_horizons_days: tuple[int, ...]
    truth: dict[str, Any] = field(repr=False)
    latent: pd.DataFrame = field(repr=False)

    @property
    def n_customers(self) -> int:
        """Number of customers in the log."""
        return len(self.latent)


# --------------------------------------------------------------------------- helpers


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, received {value!r}.")


def _check_common(
    n_customers: int, n_days: int, horizons_days: tuple[int, ...], spend: dict[str, float]
) -> None:
    if int(n_customers) != n_customers or n_customers < 1:
        raise ValueError(f"n_customers must be a positive integer, received {n_customers!r}.")
    if int(n_days) != n_days or n_days < 2:
        raise ValueError(f"n_days must be an integer >= 2, received {n_days!r}.")
    if not horizons_days or any(int(h) != h or h < 1 for h in horizons_days):
        raise ValueError(
            f"horizons_days must be positive integers (e.g. (91, 182)), received {horizons_days!r}."
        )
    _check_positive(**spend)
    if spend["q"] <= 1:
        raise ValueError(f"q must be > 1 so mean spend is finite, received {spend['q']!r}.")


def _check_acquisition(acquisition_days: int, n_days: int) -> None:
    if int(acquisition_days) != acquisition_days or not 1 <= acquisition_days <= n_days:
        raise ValueError(
            f"acquisition_days must be an integer in 1..n_days ({n_days}), "
            f"received {acquisition_days!r}."
        )


def _start(start: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(start)
    if ts.tz is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def _ids(n: int) -> npt.NDArray[np.object_]:
    width = max(6, len(str(n - 1)))
    return np.char.zfill(np.arange(n).astype(str), width).astype(object)


def _day_dates(start: pd.Timestamp, days: npt.NDArray[Any]) -> npt.NDArray[np.datetime64]:
    base = start.to_datetime64().astype("datetime64[ns]")
    return base + days.astype("timedelta64[D]").astype("timedelta64[ns]")


def _death_dates(
    start: pd.Timestamp, death_time: FloatArray, n_days: int
) -> npt.NDArray[np.datetime64]:
    """Dates of deaths inside the log; NaT for customers alive at its end."""
    inside = death_time < n_days
    days = np.where(inside, np.floor(np.where(inside, death_time, 0.0)), 0).astype(np.int64)
    out = _day_dates(start, days)
    out[~inside] = np.datetime64("NaT")
    return out


def _uniform_births(rng: np.random.Generator, n: int, days: int) -> IntArray:
    """Birth days spread uniformly over ``[0, days)``."""
    return rng.integers(0, days, n).astype(np.int64)


def _growing_births(rng: np.random.Generator, n: int, days: int, growth: float) -> IntArray:
    """Birth days with acquisition intensity proportional to ``(1 + growth) ** years``."""
    u = rng.random(n)
    k = np.log1p(growth) / _YEAR
    if abs(k) < 1e-12:
        t = u * days
    else:
        t = np.log1p(u * np.expm1(k * days)) / k
    return np.minimum(np.floor(t), days - 1).astype(np.int64)


def _poisson_events(
    rng: np.random.Generator, rate: FloatArray, t0: FloatArray, t1: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Events of independent homogeneous Poisson processes on ``[t0, t1)``.

    Returns the owner (customer index, non-decreasing) and the time of every event.
    """
    length = np.clip(t1 - t0, 0.0, None)
    counts = rng.poisson(rate * length)
    owner = np.repeat(np.arange(len(rate), dtype=np.int64), counts)
    times = t0[owner] + rng.random(owner.size) * length[owner]
    return owner, times


def _seasonal_factor(
    t: FloatArray, start: pd.Timestamp, amplitude: float, peak_day_of_year: int
) -> FloatArray:
    """Multiplier ``1 + A cos(2 pi (t - t_peak) / 365.25)``: mean 1 over a year."""
    peak = pd.Timestamp(year=start.year, month=1, day=1) + pd.Timedelta(days=peak_day_of_year - 1)
    t_peak = (peak - start).days + 0.5
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (t - t_peak) / _YEAR)


def _spend(
    rng: np.random.Generator, n: int, owner: IntArray, p: float, q: float, v: float
) -> tuple[FloatArray, FloatArray]:
    """Gamma-Gamma amounts for every transaction and each customer's mean spend."""
    nu = rng.gamma(q, 1.0 / v, n)
    amount = rng.gamma(p, 1.0, owner.size) / nu[owner]
    return np.maximum(np.round(amount, 2), 0.01), p / nu


def _suggest_as_of(
    n_days: int, horizons_days: tuple[int, ...], *, step: int, count: int, earliest: int
) -> list[int]:
    """As-of days ``n_days - 1 - max(h) - k * step`` (k < count) that are >= ``earliest``."""
    latest = n_days - 1 - max(horizons_days)
    days = [latest - k * step for k in range(count) if latest - k * step >= earliest]
    if not days:
        raise ValueError(
            f"a {n_days}-day log leaves no as-of date with a fully observed "
            f"{max(horizons_days)}-day window and enough labelled history before it "
            f"(the as-of date must be on or after day {earliest}); increase n_days."
        )
    return sorted(days)


def _build(
    *,
    name: str,
    description: str,
    start: pd.Timestamp,
    n_days: int,
    birth_day: IntArray,
    owner: IntArray,
    repeat_time: FloatArray,
    death_time: FloatArray,
    lam: FloatArray,
    dropout: FloatArray,
    spend: dict[str, float],
    rng: np.random.Generator,
    as_of_days: list[int],
    horizons_days: tuple[int, ...],
    truth: dict[str, Any],
) -> World:
    """Assemble the sorted log, the latent frame and the truth into a :class:`World`."""
    n = len(birth_day)
    all_owner = np.concatenate([np.arange(n, dtype=np.int64), owner])
    all_day = np.concatenate([birth_day, np.floor(repeat_time).astype(np.int64)])
    amount, mean_spend = _spend(rng, n, all_owner, spend["p"], spend["q"], spend["v"])
    order = np.lexsort((all_day, all_owner))
    all_owner, all_day, amount = all_owner[order], all_day[order], amount[order]
    same_day = int(
        np.count_nonzero((all_owner[1:] == all_owner[:-1]) & (all_day[1:] == all_day[:-1]))
    )
    ids = _ids(n)
    transactions = pd.DataFrame(
        {
            "customer_id": ids[all_owner],
            "date": _day_dates(start, all_day),
            "amount": amount.astype(np.float64),
        }
    )
    latent = pd.DataFrame(
        {
            "customer_id": ids,
            "birth": _day_dates(start, birth_day),
            "death": _death_dates(start, death_time, n_days),
            "lambda_per_day": lam,
            "dropout": dropout,
            "mean_spend": mean_spend,
        }
    )
    full_truth: dict[str, Any] = {
        "n_days": n_days,
        "time_unit": "D",
        **truth,
        "spend_model": "gamma-gamma",
        "spend_params": dict(spend),
        "same_day_repeats": same_day,
    }
    return World(
        name=name,
        description=description,
        transactions=transactions,
        start=start,
        end=start + pd.Timedelta(days=n_days - 1),
        suggested_as_of=[start + pd.Timedelta(days=d) for d in as_of_days],
        suggested_horizons_days=tuple(int(h) for h in horizons_days),
        truth=full_truth,
        latent=latent,
    )


def _pareto_rates(
    rng: np.random.Generator, n: int, r: float, alpha: float, s: float, beta: float
) -> tuple[FloatArray, FloatArray]:
    """Pareto/NBD heterogeneity: ``lambda ~ Gamma(r, alpha)``, ``mu ~ Gamma(s, beta)`` (rates)."""
    return rng.gamma(r, 1.0 / alpha, n), rng.gamma(s, 1.0 / beta, n)


# --------------------------------------------------------------------------- worlds


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
    p: float = _SPEND["p"],
    q: float = _SPEND["q"],
    v: float = _SPEND["v"],
    horizons_days: tuple[int, ...] = _HORIZONS,
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
    _check_common(n_customers, n_days, horizons_days, spend)
    _check_positive(r=r, alpha=alpha, s=s, beta=beta)
    _check_acquisition(acquisition_days, n_days)
    t_start = _start(start)
    rng = np.random.default_rng(seed)
    birth = _uniform_births(rng, n_customers, acquisition_days)
    lam, mu = _pareto_rates(rng, n_customers, r, alpha, s, beta)
    clock = (birth + 1).astype(np.float64)
    with np.errstate(divide="ignore"):
        death = clock + rng.exponential(1.0, n_customers) / mu
    owner, times = _poisson_events(rng, lam, clock, np.minimum(death, float(n_days)))
    as_of = _suggest_as_of(
        n_days,
        horizons_days,
        step=182,
        count=3,
        earliest=acquisition_days + max(horizons_days),
    )
    return _build(
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
    p: float = _SPEND["p"],
    q: float = _SPEND["q"],
    v: float = _SPEND["v"],
    horizons_days: tuple[int, ...] = _HORIZONS,
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
    _check_common(n_customers, n_days, horizons_days, spend)
    _check_positive(r=r, alpha=alpha, s=s, beta=beta)
    if not 0 <= seasonal_amplitude < 1:
        raise ValueError(f"seasonal_amplitude must be in [0, 1), received {seasonal_amplitude!r}.")
    if not -1 < acquisition_growth:
        raise ValueError(f"acquisition_growth must be > -1, received {acquisition_growth!r}.")
    if not 1 <= peak_day_of_year <= 366:
        raise ValueError(f"peak_day_of_year must be in 1..366, received {peak_day_of_year!r}.")
    t_start = _start(start)
    rng = np.random.default_rng(seed)
    birth = _growing_births(rng, n_customers, n_days, acquisition_growth)
    lam, mu = _pareto_rates(rng, n_customers, r, alpha, s, beta)
    clock = (birth + 1).astype(np.float64)
    with np.errstate(divide="ignore"):
        death = clock + rng.exponential(1.0, n_customers) / mu
    top = 1.0 + seasonal_amplitude
    cand_owner, cand_times = _poisson_events(
        rng, lam * top, clock, np.minimum(death, float(n_days))
    )
    factor = _seasonal_factor(cand_times, t_start, seasonal_amplitude, peak_day_of_year)
    keep = rng.random(cand_times.size) * top < factor
    as_of = _suggest_as_of(
        n_days, horizons_days, step=91, count=4, earliest=2 * max(horizons_days) + 28
    )
    return _build(
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
                "period_days": _YEAR,
                "form": "1 + amplitude * cos(2 pi (t - t_peak) / period_days)",
            },
        },
    )


def no_churn(
    n_customers: int = 30_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2022-01-01",
    n_days: int = 912,
    acquisition_days: int = 365,
    r: float = 2.0,
    alpha: float = 90.0,
    p: float = _SPEND["p"],
    q: float = _SPEND["q"],
    v: float = _SPEND["v"],
    horizons_days: tuple[int, ...] = _HORIZONS,
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
    _check_common(n_customers, n_days, horizons_days, spend)
    _check_positive(r=r, alpha=alpha)
    _check_acquisition(acquisition_days, n_days)
    t_start = _start(start)
    rng = np.random.default_rng(seed)
    birth = _uniform_births(rng, n_customers, acquisition_days)
    lam = rng.gamma(r, 1.0 / alpha, n_customers)
    clock = (birth + 1).astype(np.float64)
    owner, times = _poisson_events(rng, lam, clock, np.full(n_customers, float(n_days)))
    as_of = _suggest_as_of(n_days, horizons_days, step=182, count=2, earliest=max(horizons_days))
    return _build(
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
    p: float = _SPEND["p"],
    q: float = _SPEND["q"],
    v: float = _SPEND["v"],
    horizons_days: tuple[int, ...] = _HORIZONS,
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
    _check_common(n_customers, n_days, horizons_days, spend)
    _check_positive(r=r, alpha=alpha, s=s, beta=beta, churn_multiplier=churn_multiplier)
    t_start = _start(start)
    as_of = _suggest_as_of(
        n_days, horizons_days, step=182, count=1, earliest=2 * max(horizons_days) + 28
    )
    shift_day = as_of[-1] - 28 if shift_date is None else (_start(shift_date) - t_start).days
    if not 0 < shift_day < n_days:
        raise ValueError(
            f"shift_date must fall inside the log ({t_start.date()} to "
            f"{(t_start + pd.Timedelta(days=n_days - 1)).date()}), received {shift_date!r}."
        )
    rng = np.random.default_rng(seed)
    birth = _uniform_births(rng, n_customers, n_days)
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
    owner, times = _poisson_events(rng, lam, clock, np.minimum(death, float(n_days)))
    return _build(
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
    p: float = _SPEND["p"],
    q: float = _SPEND["q"],
    v: float = _SPEND["v"],
    horizons_days: tuple[int, ...] = _HORIZONS,
) -> World:
    """Exactly BG/NBD purchases with Gamma-Gamma spend and known parameters.

    Why: with the true model known, the Bayes-optimal churn score (P(no purchase in the
    window | x, t_x, T) under the true parameters) and expected value can be computed
    for every customer, giving a ceiling to compare fitted models and classifiers with,
    and a check that a BG/NBD fit recovers its own parameters.

    Generative process (Fader, Hardie & Lee 2005, time in days): birth days uniform over
    the first ``acquisition_days`` (so ``T`` varies); the acquisition purchase starts the
    clock (at the end of the birth day, see the module notes). While alive, repeat
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
    _check_common(n_customers, n_days, horizons_days, spend)
    _check_positive(r=r, alpha=alpha, a=a, b=b)
    _check_acquisition(acquisition_days, n_days)
    t_start = _start(start)
    rng = np.random.default_rng(seed)
    birth = _uniform_births(rng, n_customers, acquisition_days)
    lam = rng.gamma(r, 1.0 / alpha, n_customers)
    death_prob = np.clip(rng.beta(a, b, n_customers), 1e-12, 1.0)
    dies_after = rng.geometric(death_prob).astype(np.int64)
    clock = (birth + 1).astype(np.float64)
    owner, times = _poisson_events(rng, lam, clock, np.full(n_customers, float(n_days)))
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
    as_of = _suggest_as_of(
        n_days, horizons_days, step=182, count=2, earliest=acquisition_days + max(horizons_days)
    )
    return _build(
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


#: Generators by name; each is ``f(n_customers=..., seed=0, **knobs) -> World``.
WORLDS: dict[str, Callable[..., World]] = {
    "aging_cohort": aging_cohort,
    "continuous_acquisition": continuous_acquisition,
    "no_churn": no_churn,
    "shifting_churn": shifting_churn,
    "bgnbd_world": bgnbd_world,
}


def write_world(world: World, path: str | os.PathLike[str]) -> Path:
    """Write a world's transaction log as CSV or Parquet (by extension), atomically.

    Dates are written as ISO dates (``2022-01-31``), so the file loads back with
    :func:`churnguard.data.load_transactions` into the same log.

    Parameters
    ----------
    world : World
        The world to write.
    path : path-like
        ``.csv`` or ``.parquet`` destination.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    frame = world.transactions.assign(date=world.transactions["date"].dt.strftime("%Y-%m-%d"))
    return write_table(frame, path)
