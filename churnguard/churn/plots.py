"""Diagnostic plots of the classifier: reliability, gains/lift, feature importance.

Each function draws one figure, saves it as PNG and returns the path, so training
and ``evaluate`` can log them to MLflow. Figures are built without pyplot, so
importing this module never changes the backend of a notebook or application.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from churnguard.churn.metrics import gains_table, reliability_table

__all__ = ["plot_gains", "plot_importance", "plot_reliability", "plot_reliability_tables"]


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def plot_reliability(
    y_true: Any, probabilities: Mapping[str, Any], path: str | os.PathLike[str], n_bins: int = 10
) -> Path:
    """Reliability diagram: observed churn rate against mean predicted probability.

    Parameters
    ----------
    y_true : array-like of {0, 1}
    probabilities : mapping of str to array-like
        Named probability vectors (e.g. raw and calibrated).
    """
    tables = {
        name: reliability_table(y_true, p, n_bins=n_bins) for name, p in probabilities.items()
    }
    return plot_reliability_tables(tables, path)


def plot_reliability_tables(
    tables: Mapping[str, pd.DataFrame], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Reliability diagram from precomputed :func:`reliability_table` results."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, table in tables.items():
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate")
    heading = "Reliability (quantile bins)" + (f": {title}" if title else "")
    ax.set(xlim=(0, 1), ylim=(0, 1), title=heading)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_gains(y_true: Any, scores: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Cumulative gains and lift of each named score (higher = more likely to churn)."""
    fig = Figure(figsize=(10, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    for name, s in scores.items():
        g = gains_table(y_true, s, n_bins=20)
        x = np.r_[0.0, g["fraction_contacted"].to_numpy()]
        ax1.plot(x, np.r_[0.0, g["fraction_of_churners_captured"].to_numpy()], label=name)
        ax2.plot(g["fraction_contacted"], g["lift"], label=name)
    ax1.set(xlabel="share of customers contacted", ylabel="share of churners captured")
    ax1.set(title="Cumulative gains")
    ax2.axhline(1.0, color="grey", linestyle=":")
    ax2.set(xlabel="share of customers contacted", ylabel="cumulative lift", title="Lift")
    ax1.legend(fontsize=8)
    return _save(fig, path)


def plot_importance(importance: pd.DataFrame, path: str | os.PathLike[str], top: int = 20) -> Path:
    """Horizontal bar chart of the ``top`` features by total gain."""
    data = importance.nlargest(top, "gain").iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(data) + 1.2))
    ax = fig.subplots()
    ax.barh(data["feature"], data["gain"] / data["gain"].sum(), color="#3b6ea8")
    ax.set(xlabel="share of total gain (top features)", title="Global feature importance")
    return _save(fig, path)
