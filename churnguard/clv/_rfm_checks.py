"""Validation of the inputs every CLV model shares: RFM frames, customer ids, horizons.

`check_rfm` is the one gate an RFM frame passes before any model sees it (columns, dtypes,
finite non-negative values, whole-number frequencies, recency within ``T``), so every
model, comparison and value function rejects bad data with the same message.
`customer_id_column` and `check_horizon` do the same for the id column and for prediction
horizons. `check_rfm` and `customer_id_column` are re-exported from
`churnguard.clv.purchase`, where they were defined first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from churnguard.exceptions import InputDataError

__all__ = ["check_horizon", "check_rfm", "customer_id_column"]

_RFM_COLUMNS = ("frequency", "recency", "T")
# Float noise from date arithmetic may put recency a hair above T; beyond this it is an error.
_RECENCY_TOLERANCE = 1e-9


def check_rfm(
    rfm: pd.DataFrame, columns: Sequence[str] = _RFM_COLUMNS, *, caller: str = "the model"
) -> dict[str, np.ndarray]:
    """Validate an RFM frame and return the requested columns as positional float arrays.

    Parameters
    ----------
    rfm : pandas.DataFrame
        One row per customer, columns as ``lifetimes.utils.summary_data_from_transaction_data``
        defines them.
    columns : sequence of str
        Required columns, any of frequency, recency, T, monetary_value.
    caller : str
        Named in error messages.

    Returns
    -------
    dict of str to numpy.ndarray
        The columns as float arrays (the index is dropped on purpose: callers work by row).

    Raises
    ------
    TypeError
        If ``rfm`` is not a DataFrame.
    churnguard.exceptions.InputDataError
        Missing column, no rows, non-numeric/NaN/negative values, non-integer frequency,
        recency > T, or recency != 0 with frequency 0.
    """
    if not isinstance(rfm, pd.DataFrame):
        raise TypeError(
            f"{caller} expects an RFM pandas DataFrame, received {type(rfm).__name__}. "
            "Build one with churnguard.features or "
            "lifetimes.utils.summary_data_from_transaction_data."
        )
    missing = [c for c in columns if c not in rfm.columns]
    if missing:
        raise InputDataError(
            f"{caller}: the RFM frame is missing column(s) {missing}; expected {list(columns)}, "
            f"received {list(map(str, rfm.columns))}. Rename the columns (e.g. x -> frequency, "
            "t_x -> recency, zbar -> monetary_value) or rebuild the frame."
        )
    if len(rfm) == 0:
        raise InputDataError(f"{caller}: the RFM frame has no rows; pass at least one customer.")
    arrays: dict[str, np.ndarray] = {}
    for col in columns:
        series = rfm[col]
        if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
            raise InputDataError(
                f"{caller}: column '{col}' must be numeric, received dtype {series.dtype}. "
                "Convert it with pd.to_numeric."
            )
        values = series.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputDataError(
                f"{caller}: column '{col}' has {int(bad.sum())} missing or infinite value(s) "
                f"(first at row {int(np.argmax(bad))}); every customer needs a finite value."
            )
        if (values < 0).any():
            raise InputDataError(
                f"{caller}: column '{col}' has negative values (min {values.min():g}); "
                "frequency, recency, T and monetary_value are all >= 0."
            )
        arrays[col] = values
    if "frequency" in arrays:
        freq = arrays["frequency"]
        if (freq != np.round(freq)).any():
            raise InputDataError(
                f"{caller}: frequency must count repeat purchase occasions (whole numbers); "
                f"received e.g. {freq[freq != np.round(freq)][0]:g}."
            )
    if "recency" in arrays and "T" in arrays:
        rec, age = arrays["recency"], arrays["T"]
        over = rec > age + _RECENCY_TOLERANCE
        if over.any():
            i = int(np.argmax(over))
            raise InputDataError(
                f"{caller}: recency exceeds T for {int(over.sum())} customer(s) (first at row {i}: "
                f"recency={rec[i]:g}, T={age[i]:g}). Recency is the age at the last purchase, so "
                "it cannot exceed T; check that both use the same time unit and end date."
            )
        if "frequency" in arrays:
            ghost = (arrays["frequency"] == 0) & (rec != 0)
            if ghost.any():
                raise InputDataError(
                    f"{caller}: {int(ghost.sum())} customer(s) have frequency 0 but recency != 0; "
                    "with no repeat purchase the recency must be 0."
                )
    return arrays


def customer_id_column(rfm: pd.DataFrame, *, caller: str) -> np.ndarray:
    """Return the customer_id column as given (never cast), or explain how to provide it."""
    if "customer_id" not in rfm.columns:
        raise InputDataError(
            f"{caller}: the RFM frame has no customer_id column; received "
            f"{list(map(str, rfm.columns))}. If the id is the index, call rfm.reset_index() "
            "(and rename the column to customer_id) first."
        )
    return rfm["customer_id"].to_numpy()


def check_horizon(t: float, name: str = "t") -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of time units, received {type(t).__name__}.")
    if not math.isfinite(float(t)) or t < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0 (in the model's time unit), got {t}."
        )
    return float(t)
