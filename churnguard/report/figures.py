"""The figures of the HTML retention report, drawn with matplotlib's object API.

Each ``*_figure`` function takes the report's prepared scoring frame (the
scoring contract columns, ``risk_band`` present, ``value_tier``, ``risk_band``
and ``segment`` as text; see :func:`churnguard.report.html.build_report`)
and returns a :class:`matplotlib.figure.Figure` that is not attached to pyplot,
so drawing needs no display and leaks no global figure state. Draw them inside
``matplotlib.rc_context(STYLE)`` to get the report's look.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from churnguard.churn.metrics import gains_table, reliability_table
from churnguard.decision.labels import label as plain_label

__all__ = [
    "MAX_SEGMENTS",
    "STYLE",
    "calibration_figure",
    "clv_figure",
    "cumulative_share",
    "format_compact",
    "format_pct",
    "gains_figure",
    "pareto_figure",
    "segment_figure",
    "tier_risk_figure",
    "top_share",
]

#: Most segments drawn in :func:`segment_figure` (the largest ones); the rest are hidden.
MAX_SEGMENTS = 20

_TIERS, _BANDS = ("vip", "stable", "low"), ("high", "medium", "low")
_TIER_COLOURS = {"vip": "#1f3b73", "stable": "#4f86c6", "low": "#b8c4d6"}
_INK, _MUTED, _ACCENT, _ORANGE, _ALERT = "#1d2733", "#6b7785", "#2f6fb5", "#e08a1e", "#c0392b"

#: matplotlib rc parameters of the report's figures (use with ``matplotlib.rc_context``).
STYLE: dict[Any, Any] = {
    "font.size": 10, "axes.titlesize": 11.5, "axes.titleweight": "bold",
    "axes.titlelocation": "left", "axes.edgecolor": "#9aa5b1", "axes.labelcolor": _INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e3e8ee", "xtick.color": _INK, "ytick.color": _INK, "text.color": _INK,
    "legend.frameon": False,
}  # fmt: skip


# --------------------------------------------------------------------------- formatting
def format_compact(x: float) -> str:
    """A short money-style label: ``1.2M``, ``45.3k``, ``980``, ``3.14``; ``n/a`` if not finite.

    Parameters
    ----------
    x : float
        The number to show.

    Returns
    -------
    str
        Thousands from 10,000 on, millions and billions with one decimal.
    """
    if not np.isfinite(x):
        return "n/a"
    for floor, size, suffix in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(x) >= floor:
            return f"{x / size:,.1f}{suffix}"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.3g}"


def format_pct(x: float, digits: int = 0) -> str:
    """A fraction as a percentage (``0.254`` -> ``25%``); ``n/a`` if not finite.

    Parameters
    ----------
    x : float
        A fraction (1.0 = 100%).
    digits : int, default 0
        Decimals of the percentage.

    Returns
    -------
    str
        The formatted percentage.
    """
    return f"{x:.{digits}%}" if np.isfinite(x) else "n/a"


def _mpl_text(text: Any) -> str:
    # Plain-English labels (VIP, Can't lose); a "$" would switch matplotlib into mathtext.
    return plain_label(text).replace("$", r"\$")


def _axes(ax: Axes, title: str, xlabel: str, ylabel: str, pct: str = "") -> None:
    """Title and labels; ``pct`` names the axes ("x", "y", "xy") shown as 0-100 %."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if "x" in pct:
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if "y" in pct:
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def _order(present: pd.Series, known: tuple[str, ...]) -> list[str]:
    """Labels present in the data: the known ones in their order, then the others sorted."""
    seen = set(present.unique())
    return [k for k in known if k in seen] + sorted(seen - set(known))


# --------------------------------------------------------------------------- concentration
def cumulative_share(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Share of customers (highest value first) and share of total value they hold.

    Parameters
    ----------
    values : pandas.Series
        One value per customer; non-numeric or missing values count as 0.

    Returns
    -------
    x, y : numpy.ndarray
        ``len(values) + 1`` points from (0, 0); ``y`` is all NaN when the total is not
        positive (no concentration to show).
    """
    v = np.sort(pd.to_numeric(values, errors="coerce").fillna(0.0).to_numpy(float))[::-1]
    total = v.sum()
    x = np.arange(v.size + 1) / v.size
    y = np.r_[0.0, np.cumsum(v) / total] if total > 0 else np.full(v.size + 1, np.nan)
    return x, y


def top_share(values: pd.Series, fraction: float = 0.2) -> float:
    """Share of the total value held by the top ``fraction`` of customers.

    Parameters
    ----------
    values : pandas.Series
        One value per customer (see :func:`cumulative_share`).
    fraction : float, default 0.2
        Share of customers, most valuable first (interpolated between customers).

    Returns
    -------
    float
        Between 0 and 1; NaN when the total value is not positive.
    """
    return float(np.interp(fraction, *cumulative_share(values)))


# --------------------------------------------------------------------------- figures
def pareto_figure(frame: pd.DataFrame) -> Figure:
    """Pareto curves of predicted CLV (and historical revenue when present), top 20% marked.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prepared scores with ``predicted_clv``; ``historical_revenue`` is optional.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ax = (fig := Figure(figsize=(9.5, 4.4))).add_subplot()
    curves = [("predicted_clv", "Predicted CLV", _ACCENT)]
    if "historical_revenue" in frame:
        curves.append(("historical_revenue", "Historical revenue", _ORANGE))
    grid, shares = np.linspace(0, 1, 501), []
    for col, label, colour in curves:
        x, y = cumulative_share(frame[col])
        shares.append(float(np.interp(0.2, x, y)))
        ax.plot(grid, np.interp(grid, x, y), color=colour, lw=2.2, label=label)
        ax.plot([0.2], [shares[-1]], "o", color=colour, ms=7)
    # Labels go below concentrated (high) curves and above flat ones, never across them.
    low = min(shares) if np.isfinite(shares).all() else 0.0
    for k, i in enumerate(np.argsort(shares)[::-1]):
        xy = (0.23, low - 0.12 - 0.08 * k) if low >= 0.45 else (0.02, 0.95 - 0.08 * k)
        name = f"{curves[i][1][0].lower()}{curves[i][1][1:]}"
        text = f"Top 20% hold {format_pct(shares[i])} of {name}"
        ax.text(*xy, text, color=curves[i][2], fontweight="bold", va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip
    ax.plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1, label="Equal shares")
    ax.axvline(0.2, color=_MUTED, lw=1, ls=":")
    _axes(ax, "Cumulative share of value", "Share of customers (most valuable first)", "", "xy")
    ax.legend(loc="lower right")
    return fig


def tier_risk_figure(frame: pd.DataFrame) -> Figure:
    """Heatmap of value at risk (and customer counts) by value tier and risk band.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prepared scores with ``value_tier``, ``risk_band`` and ``value_at_risk``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tiers, bands = _order(frame["value_tier"], _TIERS), _order(frame["risk_band"], _BANDS)
    keys = [frame["value_tier"], frame["risk_band"]]
    cells = frame.groupby(keys)["value_at_risk"].agg(["sum", "size"])
    var = cells["sum"].unstack().reindex(index=tiers, columns=bands).fillna(0.0).to_numpy()
    count = cells["size"].unstack().reindex(index=tiers, columns=bands).fillna(0).to_numpy()
    ax = (fig := Figure(figsize=(8.6, 1.5 + 0.9 * len(tiers)))).add_subplot()
    vmax = max(float(var.max()), 1e-12)
    im = ax.imshow(var, cmap="OrRd", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(var):  # a handful of cells, not customers
        label = f"{format_compact(v)}\n{int(count[i, j]):,} customers"
        colour = "white" if v > 0.55 * vmax else _INK
        ax.text(j, i, label, ha="center", va="center", fontsize=10, color=colour)
    ax.set_xticks(range(len(bands)), [f"{_mpl_text(b)} risk" for b in bands])
    ax.set_yticks(range(len(tiers)), [_mpl_text(t) for t in tiers])
    _axes(ax, "Value at risk by value tier and churn risk", "Churn risk band", "Value tier")
    ax.grid(False)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    money = FuncFormatter(lambda v, _: format_compact(v))
    fig.colorbar(im, ax=ax, label="Value at risk", format=money)
    return fig


def clv_figure(frame: pd.DataFrame) -> Figure:
    """Histogram of positive predicted CLV on a log scale, stacked by value tier.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prepared scores with ``predicted_clv`` and ``value_tier``.

    Returns
    -------
    matplotlib.figure.Figure
        With a note instead of bars when no customer has a positive CLV.
    """
    ax = (fig := Figure(figsize=(9.5, 4.0))).add_subplot()
    raw = frame["predicted_clv"]
    positive = raw > 0
    if positive.any():
        # The axis starts at the 1st percentile (at least one cent): a single customer at
        # 1e-13 would otherwise stretch it over 17 decades. Smaller values join the
        # first bar, whose label says so.
        floor = max(float(raw[positive].quantile(0.01)), 0.01)
        clv = raw.clip(lower=floor)
        lo, hi = float(clv[positive].min()), float(clv[positive].max())
        lo, hi = (lo, hi * 1.0001) if hi > lo else (lo / 1.5, lo * 1.5)
        bins = np.geomspace(lo, hi, 40).tolist()
        tiers = _order(frame.loc[positive, "value_tier"], _TIERS)
        data = [clv[positive & (frame["value_tier"] == t)].to_numpy() for t in tiers]
        colours = [_TIER_COLOURS.get(t, "#8e7cc3") for t in tiers]
        ax.hist(data, bins=bins, stacked=True, color=colours, label=[_mpl_text(t) for t in tiers],
                edgecolor="white", linewidth=0.4)  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)  # headroom for the median label
        money = FuncFormatter(lambda v, _: format_compact(v))
        ax.xaxis.set_major_formatter(money)
        # Label minor ticks only when the data spans less than a decade (else they crowd).
        ax.xaxis.set_minor_formatter(money if hi < 10 * lo else NullFormatter())
        median = float(clv[positive].median())
        ax.axvline(median, color=_INK, ls="--", lw=1)
        ax.annotate(f" median {format_compact(median)}", (median, 0.97), va="top",
                    xycoords=("data", "axes fraction"))  # fmt: skip
        ax.legend(title="Value tier", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        below = int((raw[positive] < floor).sum())
        if below:
            ax.annotate(f" {below:,} below {format_compact(floor)} counted here", (lo, 0.9),
                        xycoords=("data", "axes fraction"), fontsize=8)  # fmt: skip
    else:
        ax.text(0.5, 0.5, "No customer has a positive predicted CLV", transform=ax.transAxes)
    _axes(ax, "Customers by predicted CLV", "Predicted CLV (log scale)", "Customers")
    return fig


def segment_figure(frame: pd.DataFrame) -> Figure:
    """Box plots of churn probability per segment (the :data:`MAX_SEGMENTS` largest).

    Parameters
    ----------
    frame : pandas.DataFrame
        Prepared scores with ``segment`` and ``churn_probability``.

    Returns
    -------
    matplotlib.figure.Figure
        Segments ordered by median churn probability, lowest at the bottom.
    """
    sizes = frame["segment"].value_counts()
    sub = frame[frame["segment"].isin(sizes.index[:MAX_SEGMENTS])]
    medians = sub.groupby("segment")["churn_probability"].median().sort_values()
    groups = [sub.loc[sub["segment"] == s, "churn_probability"].to_numpy() for s in medians.index]
    ax = (fig := Figure(figsize=(9.5, 1.4 + 0.42 * len(groups)))).add_subplot()
    box = ax.boxplot(groups, orientation="horizontal", showfliers=False, showmeans=True,
                     patch_artist=True, widths=0.6, medianprops={"color": _ALERT, "lw": 1.8},
                     meanprops={"marker": "D", "markerfacecolor": _INK,
                                "markeredgecolor": "white", "markersize": 5})  # fmt: skip
    for patch in box["boxes"]:
        patch.set(facecolor="#d6e4f5", edgecolor=_ACCENT)
    labels = [f"{_mpl_text(s)} (n={sizes[s]:,})" for s in medians.index]
    ax.set_yticks(range(1, len(groups) + 1), labels)
    xlabel = "Churn probability (box: middle 50%, red line: median, diamond: mean)"
    _axes(ax, "Churn probability by segment", xlabel, "", "x")
    ax.grid(axis="y", visible=False)
    return fig


def gains_figure(y: pd.Series, frame: pd.DataFrame) -> Figure:
    """Cumulative gains (model vs recency) and lift by decile of churn probability.

    Parameters
    ----------
    y : pandas.Series
        Known 0/1 outcomes (1 = churned), both classes present, aligned with ``frame``.
    frame : pandas.DataFrame
        Prepared scores of the same customers (``churn_probability``, optionally
        ``days_since_last``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(10.5, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.25})
    x = np.linspace(0, 1, 101)
    ax1.plot(x, np.minimum(x / float(y.mean()), 1.0), color="#7fb77e", ls="-.", label="Perfect")
    ranked = [("Model: churn probability", frame["churn_probability"], _ACCENT)]
    if "days_since_last" in frame:
        ranked.append(("Baseline: days since last purchase", frame["days_since_last"], _ORANGE))
    for label, score, colour in ranked:
        g = gains_table(y, score, n_bins=100)
        curve = np.r_[0, g["fraction_of_churners_captured"]]
        ax1.plot(np.r_[0, g["fraction_contacted"]], curve, color=colour, lw=2, label=label)
    ax1.plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1, label="Random")
    _axes(ax1, "Cumulative gains", "Share of customers contacted", "Share of churners", "xy")
    ax1.legend(loc="lower right")
    deciles = gains_table(y, frame["churn_probability"], n_bins=10)
    bars = ax2.bar(deciles["bin"], deciles["bin_lift"], color=_ACCENT, width=0.7)
    ax2.bar_label(bars, fmt="%.1f", fontsize=9, padding=2)
    ax2.axhline(1.0, color=_MUTED, ls="--", lw=1)
    ax2.set_xticks(deciles["bin"])
    _axes(ax2, "Lift by decile", "Decile of churn probability (1 = riskiest)", "Lift")
    ax2.grid(axis="x", visible=False)
    return fig


def calibration_figure(y: pd.Series, p: pd.Series) -> Figure:
    """Reliability diagram and the histogram of predictions split by actual outcome.

    Parameters
    ----------
    y : pandas.Series
        Known 0/1 outcomes (1 = churned), both classes present.
    p : pandas.Series
        Predicted churn probabilities of the same customers.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(10.5, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.25})
    table = reliability_table(y, p, n_bins=10, strategy="quantile")
    ax1.plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1, label="Perfect calibration")
    ax1.plot(table["mean_predicted"], table["observed_rate"], "-o", color=_ACCENT, lw=2,
             label="Model (10 equal-count bins)")  # fmt: skip
    _axes(ax1, "Reliability", "Mean predicted churn probability", "Observed churn rate", "xy")
    ax1.legend(loc="upper left")
    bins = np.linspace(0, 1, 21).tolist()
    ax2.hist([p[y == 0], p[y == 1]], bins=bins, stacked=True, color=["#9cc3a5", _ALERT],
             label=["Retained", "Churned"], edgecolor="white")  # fmt: skip
    _axes(ax2, "Predictions by actual outcome", "Predicted churn probability", "Customers", "x")
    ax2.legend(loc="upper right")
    return fig
