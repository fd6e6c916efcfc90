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

Layout
------
This module is the public face of the worlds: the registry :data:`WORLDS`,
:func:`write_world` and the generators, which live with their kin in private modules
(``_pareto_worlds``: the three worlds with exponential lifetimes; ``_nbd_worlds``:
``no_churn`` and ``bgnbd_world``) on the shared machinery of ``_world`` (:class:`World`,
the argument checks, the draws and the assembly of a log).

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
from pathlib import Path

from churnguard.data._nbd_worlds import bgnbd_world, no_churn
from churnguard.data._pareto_worlds import aging_cohort, continuous_acquisition, shifting_churn
from churnguard.data._world import World
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
