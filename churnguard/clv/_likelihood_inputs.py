"""Inputs of the purchase-model likelihoods: parameter and data checks, pattern grouping.

What every function of `churnguard.clv._likelihood` does before it computes anything, and
what the fitters (`churnguard.clv._fitting`) and `PurchaseModel` reuse: the parameter names
of each model (`MODEL_PARAMS`), validation of a model key with its parameters
(`check_model`) and of ``(x, tx, T)`` arrays (`check_arrays`), and the grouping of customers
into their unique ``(x, tx, T)`` patterns (`unique_rows`, `on_patterns`): customer bases have
far fewer patterns than customers, so costly row-wise work runs once per pattern.

Kept apart from the likelihood formulas so that those read as the mathematics alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from churnguard.exceptions import InputDataError

__all__ = [
    "MODEL_PARAMS",
    "check_arrays",
    "check_model",
    "on_patterns",
    "unique_rows",
]

#: Parameter names of each model, as in ``PurchaseModel.params_``.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "mbgnbd": ("r", "alpha", "a", "b"),
    "pareto": ("r", "alpha", "s", "beta"),
}

# Below this many rows, grouping into patterns costs more than it saves.
_MIN_ROWS_FOR_PATTERNS = 2_000
# Float noise from date arithmetic may put recency a hair above T; beyond this it is an error.
_RECENCY_TOLERANCE = 1e-9


def check_model(model: str, params: Mapping[str, float]) -> dict[str, float]:
    if model not in MODEL_PARAMS:
        raise ValueError(
            f"model must be one of {sorted(MODEL_PARAMS)}, received {model!r}. "
            "Use 'bgnbd' (BG/NBD), 'pareto' (Pareto/NBD) or 'mbgnbd' (MBG/NBD)."
        )
    names = MODEL_PARAMS[model]
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"{model} needs parameters {list(names)}, missing {missing}.")
    values = {k: float(params[k]) for k in names}
    if not all(math.isfinite(v) and v > 0 for v in values.values()):
        raise ValueError(f"parameters must be finite and > 0, received {values}.")
    return values


def check_arrays(
    x: np.ndarray | float, tx: np.ndarray | float, T: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcast ``x, tx, T`` to float arrays, rejecting bad values.

    Parameters
    ----------
    x, tx, T : array_like
        Repeat purchases, recency, age (broadcast together).

    Returns
    -------
    tuple of numpy.ndarray
        The three arrays (``tx`` clipped to ``T`` where float noise put it a hair above).

    Raises
    ------
    churnguard.exceptions.InputDataError
        NaN/infinite or negative values, shapes that do not broadcast, or recency > T.
    """
    try:
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, tx, T)))
    except ValueError as exc:
        raise InputDataError(
            f"frequency, recency and T must broadcast to one shape: {exc}"
        ) from None
    for name, values in zip(("frequency", "recency", "T"), arrays, strict=True):
        # two reductions instead of elementwise masks: NaN fails `>= 0`, inf fails `< inf`
        if values.size and not (values.min() >= 0 and values.max() < np.inf):
            if not np.isfinite(values).all():
                raise InputDataError(f"{name} has missing or infinite values; all must be finite.")
            raise InputDataError(f"{name} has negative values (min {values.min():g}); use >= 0.")
    freq, rec, age = arrays
    over = rec > age
    if over.any():
        if (rec[over] > age[over] + _RECENCY_TOLERANCE).any():
            raise InputDataError(
                "recency exceeds T for some customers; recency is the age at the last purchase, "
                "so it cannot exceed T (check both use the same time unit and end date)."
            )
        rec = np.minimum(rec, age)
    return freq, rec, age


def unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Group rows of equal-length 1-d arrays into unique combinations by hashing (no sort).

    Parameters
    ----------
    *columns : numpy.ndarray
        One-dimensional arrays of equal length, e.g. ``x, tx, T``.

    Returns
    -------
    codes : numpy.ndarray
        Index of every row's combination (``int64``), so ``unique[codes]`` restores the rows.
    uniques : tuple of numpy.ndarray
        The unique combinations, one array per column, in order of first appearance.
    """
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column)
        # Fold the column's codes into one key; re-number first if the product could overflow.
        if key.max(initial=0) > np.iinfo(np.int64).max // (len(uniques) + 1):
            key, _ = pd.factorize(key)
        key = key * len(uniques) + codes
    codes, _ = pd.factorize(key)
    # factorize numbers combinations by first appearance, so first rows in row order match codes
    first = np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())
    return codes.astype(np.int64), tuple(column[first] for column in columns)


def on_patterns(
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    tx: np.ndarray,
    T: np.ndarray,
    *,
    costly: bool,
) -> np.ndarray:
    """Apply a row-wise ``func`` once per unique pattern and broadcast back to ``x``'s shape."""
    shape = x.shape
    flat = [np.ascontiguousarray(v).ravel() for v in (x, tx, T)]
    # Closed forms cost a few logs per row, about what the hashing costs: only worth it when
    # the per-row cost is high (quadrature) and there are enough rows to repeat.
    if not costly or flat[0].size < _MIN_ROWS_FOR_PATTERNS:
        return np.asarray(func(*flat)).reshape(shape)
    codes, (ux, utx, uT) = unique_rows(*flat)
    if len(ux) > 0.7 * flat[0].size:
        return np.asarray(func(*flat)).reshape(shape)
    return np.asarray(func(ux, utx, uT))[codes].reshape(shape)
