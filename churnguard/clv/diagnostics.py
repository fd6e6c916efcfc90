"""Diagnostic plots for purchase models (Fader-Hardie style), saved to files.

Each ``plot_*`` function draws on its own Agg-backed figure (no pyplot global state, no
display needed), saves it to ``path`` and returns the path. The numbers behind each plot
come from a ``*_table``/``*_matrix`` function, so they can be checked or reported
without a picture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.clv.purchase import PurchaseModel, check_rfm
from churnguard.clv.selection import holdout_array
from churnguard.exceptions import InputDataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DAYS_PER_UNIT",
    "calibration_holdout_table",
    "cumulative_tracking_table",
    "p_alive_matrix",
    "plot_calibration_holdout",
    "plot_cumulative_tracking",
    "plot_p_alive_matrix",
]

#: Days per model time unit for RFM frames built with daily dates.
DAYS_PER_UNIT: dict[str, float] = {"D": 1.0, "W": 7.0, "H": 1.0 / 24.0}


def _figure(figsize: tuple[float, float]) -> Figure:
    """An Agg-backed figure; matplotlib is imported here, not with the module: scoring
    and training import this package and draw nothing (about 0.4 s saved)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=110)
    return out


def calibration_holdout_table(
    calibration_rfm: pd.DataFrame,
    holdout_purchases: np.ndarray | pd.Series,
    purchase_model: PurchaseModel,
    holdout_length: float,
    *,
    max_bucket: int = 7,
) -> pd.DataFrame:
    """Mean actual vs predicted holdout purchases by calibration frequency.

    Parameters
    ----------
    calibration_rfm : pandas.DataFrame
        Calibration RFM frame (frequency, recency, T).
    holdout_purchases : array_like
        Actual holdout repeat purchases, aligned row by row with ``calibration_rfm``.
    purchase_model : PurchaseModel
        Model fitted on ``calibration_rfm``.
    holdout_length : float
        Holdout length in the frame's time unit.
    max_bucket : int
        Frequencies >= this share the last bucket (labelled e.g. "7+").

    Returns
    -------
    pandas.DataFrame
        Index ``frequency_bucket`` ("0", "1", ..., "7+"); columns n_customers, actual,
        predicted (means per customer).
    """
    arr = check_rfm(calibration_rfm, caller="calibration_holdout_table")
    actual = holdout_array(holdout_purchases, len(arr["T"]))
    predicted = purchase_model.expected_purchases_arrays(
        float(holdout_length), arr["frequency"], arr["recency"], arr["T"]
    )
    bucket = np.minimum(arr["frequency"], max_bucket).astype(int)
    labels = [str(i) for i in range(max_bucket)] + [f"{max_bucket}+"]
    table = (
        pd.DataFrame({"bucket": bucket, "actual": actual, "predicted": predicted})
        .groupby("bucket")
        .agg(
            n_customers=("actual", "size"),
            actual=("actual", "mean"),
            predicted=("predicted", "mean"),
        )
        .reindex(range(max_bucket + 1))
    )
    table.index = pd.Index(labels, name="frequency_bucket")
    table["n_customers"] = table["n_customers"].fillna(0).astype(int)
    return table


def plot_calibration_holdout(
    calibration_rfm: pd.DataFrame,
    holdout_purchases: np.ndarray | pd.Series,
    purchase_model: PurchaseModel,
    path: str | os.PathLike[str],
    *,
    holdout_length: float | None = None,
    max_bucket: int = 7,
) -> Path:
    """Plot mean actual vs predicted holdout purchases by calibration frequency (0..7+).

    Parameters
    ----------
    calibration_rfm, holdout_purchases, purchase_model
        As in `calibration_holdout_table`.
    path : str or os.PathLike
        Output image (format from the extension, e.g. ``.png``).
    holdout_length : float, optional
        Holdout length in the frame's time unit. Defaults to the ``duration_holdout``
        column that ``lifetimes.utils.calibration_and_holdout_data`` adds.
    max_bucket : int
        Frequencies >= this share the last bucket.

    Returns
    -------
    pathlib.Path
        The saved file.
    """
    if holdout_length is None:
        if "duration_holdout" not in calibration_rfm.columns:
            raise InputDataError(
                "plot_calibration_holdout needs holdout_length (in the frame's time unit); pass "
                "it, or include the duration_holdout column from calibration_and_holdout_data."
            )
        holdout_length = float(calibration_rfm["duration_holdout"].iloc[0])
    table = calibration_holdout_table(
        calibration_rfm, holdout_purchases, purchase_model, holdout_length, max_bucket=max_bucket
    )
    fig = _figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(table.index, table["actual"], marker="o", label="actual")
    ax.plot(table.index, table["predicted"], marker="s", linestyle="--", label="model")
    ax.set_xlabel("repeat purchases in calibration period")
    ax.set_ylabel(f"mean purchases in holdout ({holdout_length:g} periods)")
    ax.set_title(f"{purchase_model.model_name}: calibration vs holdout")
    ax.legend()
    return _save(fig, path)


def cumulative_tracking_table(
    transactions: pd.DataFrame,
    purchase_model: PurchaseModel,
    *,
    calibration_end: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    customer_col: str = "customer_id",
    date_col: str = "date",
    time_unit: str = "W",
) -> pd.DataFrame:
    """Daily cumulative actual vs expected repeat purchases of a customer cohort.

    Expected repeat purchases by day ``e`` are ``sum_i E[X(e - birth_i)]`` over customers
    born by ``e`` (Fader-Hardie's tracking plot), using the model's unconditional
    ``expected_purchases_new``. Actual ones count repeat purchase *occasions*: several
    transactions by one customer on one day count once, as in the RFM frame.

    Parameters
    ----------
    transactions : pandas.DataFrame
        Transaction log with ``customer_col`` and ``date_col`` (datetime-like).
    purchase_model : PurchaseModel
        Fitted model whose time unit is ``time_unit``.
    calibration_end : str or Timestamp, optional
        If given, only customers whose first purchase is on or before it (the cohort the
        model was calibrated on) are tracked.
    end : str or Timestamp, optional
        Last day tracked (default: last transaction date).
    customer_col, date_col : str
        Column names in ``transactions``.
    time_unit : {"W", "D", "H"}
        The model's time unit (days are converted with 7, 1 or 1/24).

    Returns
    -------
    pandas.DataFrame
        Index ``date`` (daily from the first purchase); columns actual, expected.
    """
    if not isinstance(transactions, pd.DataFrame):
        raise TypeError(
            f"transactions must be a DataFrame, received {type(transactions).__name__}."
        )
    missing = [c for c in (customer_col, date_col) if c not in transactions.columns]
    if missing:
        raise InputDataError(
            f"cumulative_tracking_table: transactions lack column(s) {missing}; received "
            f"{list(map(str, transactions.columns))}. Pass customer_col= / date_col=."
        )
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, got {time_unit!r}.")
    days = pd.to_datetime(transactions[date_col]).dt.normalize()
    if days.isna().any():
        raise InputDataError(f"cumulative_tracking_table: column '{date_col}' has missing dates.")
    occasions = (
        pd.DataFrame({"c": transactions[customer_col].to_numpy(), "d": days.to_numpy()})
        .drop_duplicates()
        .sort_values(["c", "d"])
    )
    birth = occasions.groupby("c", sort=False)["d"].transform("min")
    if calibration_end is not None:
        occasions = occasions[birth <= pd.Timestamp(calibration_end)]
        birth = birth[occasions.index]
    if occasions.empty:
        raise InputDataError("cumulative_tracking_table: no customer to track in this window.")
    start = occasions["d"].min()
    last = pd.Timestamp(end).normalize() if end is not None else occasions["d"].max()
    grid = pd.date_range(start, last, freq="D")
    is_first = occasions["d"].eq(birth)
    births = occasions.loc[is_first, "d"].value_counts().reindex(grid, fill_value=0)
    repeats = occasions.loc[~is_first, "d"].value_counts().reindex(grid, fill_value=0)
    ages = np.arange(len(grid)) / DAYS_PER_UNIT[time_unit]
    per_customer = purchase_model.expected_purchases_new(ages)
    # expected[e] = sum_b births[b] * E[X(e - b)]: a convolution, computed per age not per customer
    expected = np.convolve(births.to_numpy(dtype=float), per_customer)[: len(grid)]
    return pd.DataFrame(
        {"actual": repeats.cumsum().to_numpy(dtype=float), "expected": expected},
        index=pd.Index(grid, name="date"),
    )


def plot_cumulative_tracking(
    transactions: pd.DataFrame,
    purchase_model: PurchaseModel,
    calibration_end: str | pd.Timestamp,
    path: str | os.PathLike[str],
    *,
    end: str | pd.Timestamp | None = None,
    customer_col: str = "customer_id",
    date_col: str = "date",
    time_unit: str = "W",
) -> Path:
    """Plot cumulative (top) and per-period (bottom) actual vs expected repeat purchases.

    Parameters
    ----------
    transactions : pandas.DataFrame
        Transaction log with ``customer_col`` and ``date_col``.
    purchase_model : PurchaseModel
        Model fitted on the calibration period.
    calibration_end : str or Timestamp
        End of calibration: marks the plot and fixes the tracked cohort.
    path : str or os.PathLike
        Output image.
    end, customer_col, date_col, time_unit
        As in `cumulative_tracking_table`.

    Returns
    -------
    pathlib.Path
        The saved file.
    """
    table = cumulative_tracking_table(
        transactions,
        purchase_model,
        calibration_end=calibration_end,
        end=end,
        customer_col=customer_col,
        date_col=date_col,
        time_unit=time_unit,
    )
    period_days = max(int(round(DAYS_PER_UNIT[time_unit])), 1)
    per_period = table.iloc[period_days - 1 :: period_days].diff()
    fig = _figure(figsize=(9, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(table.index, table["actual"], label="actual")
    top.plot(table.index, table["expected"], linestyle="--", label=purchase_model.model_name)
    top.set_ylabel("cumulative repeat purchases")
    top.set_title("Tracking repeat purchases")
    bottom.plot(per_period.index, per_period["actual"], label="actual")
    bottom.plot(per_period.index, per_period["expected"], linestyle="--", label="model")
    bottom.set_ylabel(f"repeat purchases per {time_unit}")
    for ax in (top, bottom):
        ax.axvline(pd.Timestamp(calibration_end), color="grey", linestyle=":")
        ax.legend()
    fig.autofmt_xdate()
    return _save(fig, path)


def p_alive_matrix(
    purchase_model: PurchaseModel,
    max_frequency: int | None = None,
    max_recency: int | None = None,
) -> pd.DataFrame:
    """P(alive) for every (recency, frequency) pair of customers aged ``T = max_recency``.

    Parameters
    ----------
    purchase_model : PurchaseModel
        Fitted model.
    max_frequency : int, optional
        Largest frequency (default: largest seen in fit).
    max_recency : int, optional
        Largest recency, also the customers' age T (default: largest T seen in fit).

    Returns
    -------
    pandas.DataFrame
        Index recency 0..max_recency, columns frequency 0..max_frequency (the layout of
        lifetimes' ``conditional_probability_alive_matrix``).
    """
    limits = []
    for name, given, seen in (
        ("max_frequency", max_frequency, purchase_model.max_frequency_),
        ("max_recency", max_recency, purchase_model.max_T_),
    ):
        value = given if given is not None else seen
        if value is None or not np.isfinite(value) or value < 1:
            raise ValueError(
                f"{name} must be an integer >= 1; pass it explicitly (a model built with "
                f"from_params has seen no data). Received {given!r}."
            )
        limits.append(int(value))
    n_freq, n_rec = limits
    rec, freq = np.meshgrid(np.arange(n_rec + 1.0), np.arange(n_freq + 1.0), indexing="ij")
    values = purchase_model.p_alive_arrays(freq.ravel(), rec.ravel(), np.full(freq.size, n_rec))
    return pd.DataFrame(
        values.reshape(rec.shape),
        index=pd.RangeIndex(n_rec + 1, name="recency"),
        columns=pd.RangeIndex(n_freq + 1, name="frequency"),
    )


def plot_p_alive_matrix(
    purchase_model: PurchaseModel,
    path: str | os.PathLike[str],
    max_frequency: int | None = None,
    max_recency: int | None = None,
) -> Path:
    """Heatmap of P(alive) over frequency (x) and recency (y) at ``T = max_recency``.

    Parameters
    ----------
    purchase_model : PurchaseModel
        Fitted model.
    path : str or os.PathLike
        Output image.
    max_frequency, max_recency : int, optional
        As in `p_alive_matrix`.

    Returns
    -------
    pathlib.Path
        The saved file.
    """
    matrix = p_alive_matrix(purchase_model, max_frequency, max_recency)
    fig = _figure(figsize=(7, 5.5))
    ax = fig.add_subplot()
    image = ax.imshow(
        matrix.to_numpy(), origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis"
    )
    fig.colorbar(image, ax=ax, label="P(alive)")
    ax.set_xlabel("frequency (repeat purchases)")
    ax.set_ylabel("recency (age at last purchase)")
    ax.set_title(f"{purchase_model.model_name}: P(alive) at T = {matrix.index[-1]}")
    return _save(fig, path)
