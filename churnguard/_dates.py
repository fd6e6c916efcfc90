"""Dates and time units shared by every stage.

One place for turning what users and files give (text, ``datetime``, ``Timestamp``) into
calendar days, and for the length of the buy-till-you-die models' time units.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from churnguard.exceptions import ParameterError

__all__ = ["DAYS_PER_UNIT", "YEAR_DAYS", "to_date"]

#: Days per model time unit: recency and T in days ("D") or weeks ("W").
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0}
#: A year as 52 weeks: the same weekdays a year earlier, where a weekly or fortnightly
#: grid of dates lands (the season's level, the drift check's year-ago windows).
YEAR_DAYS = 364


def to_date(value: Any) -> dt.date:
    """Coerce a date-like value (``str``, ``datetime``, ``Timestamp``) to ``datetime.date``."""
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        raise ParameterError(f"expected a date such as '2024-03-31'; got {value!r}.")
    return ts.date()
