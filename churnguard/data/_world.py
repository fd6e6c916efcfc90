"""The machinery of the simulated worlds: the :class:`World` they return and the draws.

Why a module of its own: every world of :mod:`churnguard.data.simulate` follows the same
conventions (continuous time in days from the start of the log, the acquisition purchase
on the birth day, Gamma-Gamma spend, as-of dates that leave a fully observed window;
see that module's docstring) and is assembled the same way. The argument checks, the
vectorised draws (births, Poisson purchase events, seasonality, spend), the suggested
as-of dates and the assembly into a sorted log with its latent truth
(:func:`build_world`) live here once; the worlds themselves only say what they stress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "HORIZONS",
    "SPEND",
    "YEAR",
    "FloatArray",
    "IntArray",
    "World",
    "build_world",
    "check_acquisition",
    "check_common",
    "check_positive",
    "growing_births",
    "poisson_events",
    "seasonal_factor",
    "start_day",
    "suggest_as_of",
    "uniform_births",
]

#: Array types of the draws.
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Default Gamma-Gamma spend parameters (close to the CDNOW estimates of FHL 2005).
SPEND = {"p": 6.0, "q": 3.8, "v": 15.0}
#: Default churn horizons (days) the suggested as-of dates leave room for.
HORIZONS = (91, 182)
#: Days per year: the period of the seasonality and of the acquisition growth.
YEAR = 365.25


@dataclass
class World:
    """A simulated transaction log and the truth that generated it.

    Attributes
    ----------
    name : str
        Generator name (a key of :data:`churnguard.data.simulate.WORLDS`).
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


def check_positive(**values: float) -> None:
    """Refuse a rate, shape or scale that is not a finite number > 0."""
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, received {value!r}.")


def check_common(
    n_customers: int, n_days: int, horizons_days: tuple[int, ...], spend: dict[str, float]
) -> None:
    """Refuse the arguments every world takes when out of range."""
    if int(n_customers) != n_customers or n_customers < 1:
        raise ValueError(f"n_customers must be a positive integer, received {n_customers!r}.")
    if int(n_days) != n_days or n_days < 2:
        raise ValueError(f"n_days must be an integer >= 2, received {n_days!r}.")
    if not horizons_days or any(int(h) != h or h < 1 for h in horizons_days):
        raise ValueError(
            f"horizons_days must be positive integers (e.g. (91, 182)), received {horizons_days!r}."
        )
    check_positive(**spend)
    if spend["q"] <= 1:
        raise ValueError(f"q must be > 1 so mean spend is finite, received {spend['q']!r}.")


def check_acquisition(acquisition_days: int, n_days: int) -> None:
    """Refuse an acquisition period that is not a whole number of days inside the log."""
    if int(acquisition_days) != acquisition_days or not 1 <= acquisition_days <= n_days:
        raise ValueError(
            f"acquisition_days must be an integer in 1..n_days ({n_days}), "
            f"received {acquisition_days!r}."
        )


def start_day(start: str | pd.Timestamp) -> pd.Timestamp:
    """``start`` as a timezone-naive midnight."""
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


def uniform_births(rng: np.random.Generator, n: int, days: int) -> IntArray:
    """Birth days spread uniformly over ``[0, days)``."""
    return rng.integers(0, days, n).astype(np.int64)


def growing_births(rng: np.random.Generator, n: int, days: int, growth: float) -> IntArray:
    """Birth days with acquisition intensity proportional to ``(1 + growth) ** years``."""
    u = rng.random(n)
    k = np.log1p(growth) / YEAR
    if abs(k) < 1e-12:
        t = u * days
    else:
        t = np.log1p(u * np.expm1(k * days)) / k
    return np.minimum(np.floor(t), days - 1).astype(np.int64)


def poisson_events(
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


def seasonal_factor(
    t: FloatArray, start: pd.Timestamp, amplitude: float, peak_day_of_year: int
) -> FloatArray:
    """Multiplier ``1 + A cos(2 pi (t - t_peak) / 365.25)``: mean 1 over a year."""
    peak = pd.Timestamp(year=start.year, month=1, day=1) + pd.Timedelta(days=peak_day_of_year - 1)
    t_peak = (peak - start).days + 0.5
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (t - t_peak) / YEAR)


def _spend(
    rng: np.random.Generator, n: int, owner: IntArray, p: float, q: float, v: float
) -> tuple[FloatArray, FloatArray]:
    """Gamma-Gamma amounts for every transaction and each customer's mean spend."""
    nu = rng.gamma(q, 1.0 / v, n)
    amount = rng.gamma(p, 1.0, owner.size) / nu[owner]
    return np.maximum(np.round(amount, 2), 0.01), p / nu


def suggest_as_of(
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


def build_world(
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
