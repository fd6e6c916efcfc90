"""Validation of frames, columns and numbers, worded the same way in every stage.

Shared by the decision layer (tiers, segments, playbook, retention list) and the report,
so a missing column or a bad threshold reads alike wherever it is found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_numeric_dtype

from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError

__all__ = [
    "check_number",
    "check_thresholds",
    "require_columns",
    "require_frame",
    "require_numeric",
    "round_half_up",
]


def require_frame(df: object, func: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ParameterTypeError(
            f"{func}() expects a pandas DataFrame with one row per customer; "
            f"received {type(df).__name__}. Build the frame with churnguard's feature "
            "builder or pd.DataFrame(...)."
        )
    return df


def require_columns(df: pd.DataFrame, columns: Sequence[str], *, func: str, hint: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        cols = [str(c) for c in df.columns]
        shown = ", ".join(cols[:25]) + (", ..." if len(cols) > 25 else "")
        raise InputDataError(
            f"{func}() needs column(s) {missing}, but the frame has [{shown}]. {hint}"
        )


def require_numeric(df: pd.DataFrame, columns: Sequence[str], *, func: str, hint: str) -> None:
    """Check that ``columns`` exist, are numeric and hold no missing values."""
    require_columns(df, columns, func=func, hint=hint)
    for col in columns:
        if not is_numeric_dtype(df[col]):
            raise ParameterTypeError(
                f"{func}(): column '{col}' must be numeric; received dtype {df[col].dtype}. "
                "Convert it with pd.to_numeric(df[col])."
            )
        n_missing = int(df[col].isna().sum())
        if n_missing:
            raise InputDataError(
                f"{func}(): column '{col}' has {n_missing} missing value(s); expected a value "
                "for every customer. Fill them (e.g. 0 for a customer with no spend) or drop "
                "those customers first."
            )


def round_half_up(x: float) -> int:
    # Python's round() is banker's rounding (round(2.5) == 2); counts of customers
    # should move up at .5 so that 12.5 customers means 13, as a reader expects.
    return int(math.floor(x + 0.5))


def check_number(value: object, name: str, *, low: float, high: float, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ParameterTypeError(
            f"{name} must be a number; received {value!r} ({type(value).__name__})."
        )
    if not low <= float(value) <= high:
        raise ParameterError(
            f"{name} must be in [{low}, {high}]; received {value}. Use e.g. {example}."
        )
    return float(value)


def check_thresholds(thresholds: object) -> tuple[float, float]:
    """Validate risk-band edges ``0 <= low < high <= 1``."""
    if not isinstance(thresholds, Sequence) or len(thresholds) != 2:
        raise ParameterTypeError(
            f"risk thresholds must be two numbers, e.g. (0.3, 0.6); got {thresholds!r}."
        )
    lo, hi = (
        check_number(t, "a risk threshold", low=0.0, high=1.0, example="0.3") for t in thresholds
    )
    if not lo < hi:
        raise ParameterError(
            f"risk thresholds must be increasing (low < high); received ({lo}, {hi})."
        )
    return lo, hi
