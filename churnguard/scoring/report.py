"""Self-contained HTML retention report built from a scored customer table.

One file a manager can open offline or attach to an e-mail: inline CSS, plots
embedded as base64 PNG (matplotlib's Agg canvas, no display needed), no
JavaScript and no external URL. It answers the questions of the retention
meeting: how concentrated is the value (Pareto, 20/60/20 tiers), where is the
value at risk (tier x risk), how good is the model when outcomes are known
(lift, gains, calibration), and who to call first (the contact list).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from churnguard.churn.metrics import compare_scores, gains_table, reliability_table
from churnguard.data.io import atomic_path
from churnguard.exceptions import InputDataError

__all__ = ["REQUIRED_COLUMNS", "RISK_BAND_THRESHOLDS", "build_report"]

#: Columns of the scoring contract the report needs.
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    "customer_id priority churn_probability p_alive expected_purchases predicted_clv "
    "value_at_risk value_tier segment action reasons".split()
)
#: ``risk_band`` derived when absent: low below 0.3, medium below 0.6, high from 0.6 on.
RISK_BAND_THRESHOLDS: tuple[float, float] = (0.3, 0.6)

_TIERS, _BANDS = ("vip", "stable", "low"), ("high", "medium", "low")
_TIER_COLOURS = {"vip": "#1f3b73", "stable": "#4f86c6", "low": "#b8c4d6"}
_INK, _MUTED, _ACCENT, _ORANGE, _ALERT = "#1d2733", "#6b7785", "#2f6fb5", "#e08a1e", "#c0392b"
_CONTACT_COLUMNS = tuple(
    "priority customer_id value_tier risk_band segment churn_probability p_alive "
    "predicted_clv value_at_risk expected_net_benefit action reasons".split()
)
_NUMERIC = {"priority", "churn_probability", "p_alive", "predicted_clv", "value_at_risk"}
_MAX_SEGMENTS = 20
_STYLE: dict[Any, Any] = {
    "font.size": 10, "axes.titlesize": 11.5, "axes.titleweight": "bold",
    "axes.titlelocation": "left", "axes.edgecolor": "#9aa5b1", "axes.labelcolor": _INK,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e3e8ee", "xtick.color": _INK, "ytick.color": _INK, "text.color": _INK,
    "legend.frameon": False,
}  # fmt: skip
_CSS = """
body{margin:0;background:#f4f6f9;color:#1d2733;font:14px/1.5 "Segoe UI",Helvetica,Arial,
sans-serif}main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
header{border-bottom:3px solid #2f6fb5;margin-bottom:18px}h1{margin:0 0 4px;font-size:26px}
h2{font-size:18px;margin:0 0 4px}.meta,.note{color:#6b7785;margin:2px 0 10px}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;
margin:0 0 18px}.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));
gap:12px}.kpi{border:1px solid #dde3ea;border-left:4px solid #2f6fb5;border-radius:6px;
padding:8px 12px}.kpi .v{font-size:22px;font-weight:600}.kpi .l{color:#6b7785;font-size:12px}
img{display:block;max-width:100%;height:auto;margin:8px auto}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:5px 8px;
border-bottom:1px solid #e6eaef;text-align:left;vertical-align:top}th{background:#eef2f7}
tbody tr:nth-child(even){background:#f9fbfd}td.n{text-align:right;white-space:nowrap}
.wrap{overflow-x:auto}td.reasons{min-width:240px}td.action{min-width:130px}
table.summary{width:auto}.summary th{background:none}
footer{color:#6b7785;font-size:12px}
"""


# --------------------------------------------------------------------------- formatting
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _compact(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    for floor, size, suffix in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(x) >= floor:
            return f"{x / size:,.1f}{suffix}"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.3g}"


def _pct(x: float, digits: int = 0) -> str:
    return f"{x:.{digits}%}" if np.isfinite(x) else "n/a"


def _mpl_text(text: Any) -> str:
    # A "$" in a segment name would switch matplotlib into mathtext.
    return str(text).replace("$", r"\$")


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "; ".join(map(str, value))
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.2f}" if np.isfinite(value) else "—"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return "—" if value is None or value is pd.NA else str(value)


def _png(fig: Figure, img_id: str, alt: str) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # The default PNG metadata carries matplotlib's web address; the report must have none.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img id="{_esc(img_id)}" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _section(sid: str, heading: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{_esc(note)}</p>' if note else ""
    return f'<section id="{sid}"><h2>{_esc(heading)}</h2>{note_html}{body}</section>'


def _table(frame: pd.DataFrame, table_id: str, numeric: set[str]) -> str:
    # Spaced headers can wrap, leaving the width to the free-text columns.
    head = "".join(f"<th>{_esc(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    # At most top_n rows: formatting cell by cell is rendering, not per-customer work.
    cells = frame.apply(
        lambda col: (
            f'<td class="{"n" if col.name in numeric else _esc(col.name)}">'
            + col.map(lambda v: _esc(_cell(v)))
            + "</td>"
        )
    )
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in cells.to_numpy().tolist())
    return (
        f'<div class="wrap"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


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


# --------------------------------------------------------------------------- inputs
def _prepare(scores: Any) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(
            f"scores must be a pandas DataFrame with the scoring contract columns; received "
            f"{type(scores).__name__}. Load the scores file with churnguard.data.io.read_table."
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise InputDataError(
            f"scores lacks column(s) {missing}; expected the scoring contract "
            f"{list(REQUIRED_COLUMNS)}; received {list(scores.columns)}. Pass the output of "
            "the scoring step unchanged."
        )
    if scores.empty:
        raise InputDataError("scores has no rows; expected at least one scored customer.")
    frame = scores.copy()
    dupes = frame["customer_id"][frame["customer_id"].duplicated()]
    if not dupes.empty:
        raise InputDataError(
            f"scores has {dupes.size} duplicated customer_id value(s), e.g. "
            f"{dupes.head(3).tolist()}; expected one row per customer. Deduplicate first."
        )
    for col in ("churn_probability", "p_alive", "predicted_clv", "value_at_risk"):
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            raise InputDataError(
                f"scores['{col}'] has {int(values.isna().sum())} missing or non-numeric "
                f"value(s); expected a number for every customer (first bad customer_id: "
                f"{frame.loc[values.isna(), 'customer_id'].iloc[0]!r}). Re-run scoring."
            )
        frame[col] = values.astype(float)
    p = frame["churn_probability"]
    if ((p < 0) | (p > 1)).any():
        raise InputDataError(
            f"scores['churn_probability'] must lie within [0, 1]; received values from "
            f"{p.min():.4g} to {p.max():.4g}. Pass probabilities, not percentages."
        )
    if "risk_band" not in frame:
        low, high = RISK_BAND_THRESHOLDS
        frame["risk_band"] = np.select([p >= high, p >= low], ["high", "medium"], "low")
    for col in ("value_tier", "risk_band", "segment"):
        frame[col] = frame[col].astype(str)
    for col in ("contact", "growth_candidate"):
        if col in frame:
            frame[col] = frame[col].fillna(False).astype(bool)
    return frame


def _align_outcomes(outcomes: Any, frame: pd.DataFrame) -> pd.Series:
    """Outcome per row of ``frame`` (NaN where unknown), matched by customer_id or index."""
    if not isinstance(outcomes, pd.Series):
        raise TypeError(
            f"outcomes must be a pandas Series of 0/1 churn labels indexed by customer_id (or "
            f"like scores); received {type(outcomes).__name__}."
        )
    if outcomes.index.has_duplicates:
        raise InputDataError(
            "outcomes has duplicated index labels; expected one label per customer. "
            "Deduplicate it first."
        )
    by_id = pd.Series(outcomes.reindex(frame["customer_id"].to_numpy()).to_numpy(), frame.index)
    by_index = outcomes.reindex(frame.index)
    aligned = by_id if by_id.notna().sum() >= by_index.notna().sum() else by_index
    if aligned.notna().sum() == 0:
        raise InputDataError(
            f"outcomes matches no scored customer: its index (e.g. {outcomes.index[:3].tolist()})"
            f" is neither scores.index nor customer_id (e.g. {frame['customer_id'][:3].tolist()})."
            " Index outcomes by customer_id."
        )
    known = pd.to_numeric(aligned, errors="coerce").astype(float)
    bad = aligned.notna() & ~known.isin([0.0, 1.0])
    if bad.any():
        raise InputDataError(
            f"outcomes must be 0/1 churn labels (1 = churned); found {int(bad.sum())} other "
            f"value(s), e.g. {aligned[bad].head(3).tolist()}. Map them to 0/1."
        )
    return known


# --------------------------------------------------------------------------- figures
def _cumulative_share(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Share of customers (highest value first) and share of total value they hold."""
    v = np.sort(pd.to_numeric(values, errors="coerce").fillna(0.0).to_numpy(float))[::-1]
    total = v.sum()
    x = np.arange(v.size + 1) / v.size
    y = np.r_[0.0, np.cumsum(v) / total] if total > 0 else np.full(v.size + 1, np.nan)
    return x, y


def _top_share(values: pd.Series, fraction: float = 0.2) -> float:
    return float(np.interp(fraction, *_cumulative_share(values)))


def _pareto_figure(frame: pd.DataFrame) -> Figure:
    ax = (fig := Figure(figsize=(9.5, 4.4))).add_subplot()
    curves = [("predicted_clv", "Predicted CLV", _ACCENT)]
    if "historical_revenue" in frame:
        curves.append(("historical_revenue", "Historical revenue", _ORANGE))
    grid, shares = np.linspace(0, 1, 501), []
    for col, label, colour in curves:
        x, y = _cumulative_share(frame[col])
        shares.append(float(np.interp(0.2, x, y)))
        ax.plot(grid, np.interp(grid, x, y), color=colour, lw=2.2, label=label)
        ax.plot([0.2], [shares[-1]], "o", color=colour, ms=7)
    # Labels go below concentrated (high) curves and above flat ones, never across them.
    low = min(shares) if np.isfinite(shares).all() else 0.0
    for k, i in enumerate(np.argsort(shares)[::-1]):
        xy = (0.23, low - 0.12 - 0.08 * k) if low >= 0.45 else (0.02, 0.95 - 0.08 * k)
        text = f"Top 20% hold {_pct(shares[i])} of {curves[i][1][0].lower()}{curves[i][1][1:]}"
        ax.text(*xy, text, color=curves[i][2], fontweight="bold", va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip
    ax.plot([0, 1], [0, 1], ls="--", color="#9aa5b1", lw=1, label="Equal shares")
    ax.axvline(0.2, color=_MUTED, lw=1, ls=":")
    _axes(ax, "Cumulative share of value", "Share of customers (most valuable first)", "", "xy")
    ax.legend(loc="lower right")
    return fig


def _order(present: pd.Series, known: tuple[str, ...]) -> list[str]:
    seen = set(present.unique())
    return [k for k in known if k in seen] + sorted(seen - set(known))


def _tier_risk_figure(frame: pd.DataFrame) -> Figure:
    tiers, bands = _order(frame["value_tier"], _TIERS), _order(frame["risk_band"], _BANDS)
    keys = [frame["value_tier"], frame["risk_band"]]
    cells = frame.groupby(keys)["value_at_risk"].agg(["sum", "size"])
    var = cells["sum"].unstack().reindex(index=tiers, columns=bands).fillna(0.0).to_numpy()
    count = cells["size"].unstack().reindex(index=tiers, columns=bands).fillna(0).to_numpy()
    ax = (fig := Figure(figsize=(8.6, 1.5 + 0.9 * len(tiers)))).add_subplot()
    vmax = max(float(var.max()), 1e-12)
    im = ax.imshow(var, cmap="OrRd", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(var):  # a handful of cells, not customers
        label = f"{_compact(v)}\n{int(count[i, j]):,} customers"
        colour = "white" if v > 0.55 * vmax else _INK
        ax.text(j, i, label, ha="center", va="center", fontsize=10, color=colour)
    ax.set_xticks(range(len(bands)), [f"{_mpl_text(b)} risk" for b in bands])
    ax.set_yticks(range(len(tiers)), [_mpl_text(t) for t in tiers])
    _axes(ax, "Value at risk by value tier and churn risk", "Churn risk band", "Value tier")
    ax.grid(False)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    fig.colorbar(im, ax=ax, label="Value at risk", format=FuncFormatter(lambda v, _: _compact(v)))
    return fig


def _clv_figure(frame: pd.DataFrame) -> Figure:
    ax = (fig := Figure(figsize=(9.5, 4.0))).add_subplot()
    clv = frame["predicted_clv"]
    positive = clv > 0
    if positive.any():
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
        money = FuncFormatter(lambda v, _: _compact(v))
        ax.xaxis.set_major_formatter(money)
        # Label minor ticks only when the data spans less than a decade (else they crowd).
        ax.xaxis.set_minor_formatter(money if hi < 10 * lo else NullFormatter())
        median = float(clv[positive].median())
        ax.axvline(median, color=_INK, ls="--", lw=1)
        ax.annotate(f" median {_compact(median)}", (median, 0.97), va="top",
                    xycoords=("data", "axes fraction"))  # fmt: skip
        ax.legend(title="Value tier", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "No customer has a positive predicted CLV", transform=ax.transAxes)
    _axes(ax, "Customers by predicted CLV", "Predicted CLV (log scale)", "Customers")
    return fig


def _segment_figure(frame: pd.DataFrame) -> Figure:
    sizes = frame["segment"].value_counts()
    sub = frame[frame["segment"].isin(sizes.index[:_MAX_SEGMENTS])]
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


def _gains_figure(y: pd.Series, frame: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(10.5, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.25})
    x = np.linspace(0, 1, 101)
    ax1.plot(x, np.minimum(x / float(y.mean()), 1.0), color="#7fb77e", ls="-.", label="Perfect")
    ranked = [("Model: churn probability", frame["churn_probability"], _ACCENT),
              ("Baseline: 1 − P(alive)", 1.0 - frame["p_alive"], _ORANGE)]  # fmt: skip
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


def _calibration_figure(y: pd.Series, p: pd.Series) -> Figure:
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


# --------------------------------------------------------------------------- sections
def _kpis(frame: pd.DataFrame) -> str:
    equity, at_risk = float(frame["predicted_clv"].sum()), float(frame["value_at_risk"].sum())
    high = int((frame["risk_band"] == "high").sum())
    cards = [
        ("Customers", f"{len(frame):,}"),
        ("Customer equity (sum of predicted CLV)", _compact(equity)),
        ("Total value at risk", _compact(at_risk)),
        ("Value at risk as share of equity", _pct(at_risk / equity if equity > 0 else np.nan, 1)),
        ("Share of CLV held by the top 20%", _pct(_top_share(frame["predicted_clv"]))),
    ]
    if "historical_revenue" in frame:
        cards.append(("Share of revenue held by the top 20%", _pct(_top_share(frame[
            "historical_revenue"]))))  # fmt: skip
    cards.append(("High-risk customers", f"{high:,} ({_pct(high / len(frame))})"))
    contacted = frame["contact"] if "contact" in frame else pd.Series(True, frame.index)
    if "contact" in frame:
        cards.append(("Customers to contact", f"{int(contacted.sum()):,}"))
        covered = float(frame.loc[contacted, "value_at_risk"].sum())
        cards.append(("Value at risk covered by contacts", _compact(covered)))
    if "expected_net_benefit" in frame:
        net = pd.to_numeric(frame.loc[contacted, "expected_net_benefit"], errors="coerce").sum()
        cards.append(("Expected net benefit of contacts", _compact(float(net))))
    if "growth_candidate" in frame:
        cards.append(("Growth candidates", f"{int(frame['growth_candidate'].sum()):,}"))
    body = "".join(
        f'<div class="kpi"><div class="v">{_esc(v)}</div><div class="l">{_esc(k)}</div></div>'
        for k, v in cards
    )
    return _section("section-kpis", "Headline figures", f'<div class="kpis">{body}</div>')


def _summary(summary: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(_cell(v))}</td></tr>" for k, v in summary.items()
    )
    body = f'<table id="summary-table" class="summary"><tbody>{rows}</tbody></table>'
    return _section("section-summary", "Run summary", body)


def _evaluation(frame: pd.DataFrame, outcomes: pd.Series) -> str:
    known = outcomes.notna()
    y, sub = outcomes[known].astype(int), frame[known]
    note = (
        f"Evaluated on {int(known.sum()):,} of {len(frame):,} customers with a known outcome "
        f"(1 = churned); observed churn rate {_pct(float(y.mean()), 1)}."
    )
    if y.nunique() < 2:
        note += " All of them have the same outcome, so ranking metrics are undefined."
        return _section("section-model-evaluation", "Model evaluation", "", note)
    model = "model: churn_probability"
    named = {
        model: sub["churn_probability"],
        "baseline: 1 − p_alive": 1.0 - sub["p_alive"],
        "contact order: value_at_risk": sub["value_at_risk"],
    }
    table = compare_scores(y, named, probabilities=[model])
    table = table.drop(columns=["base_rate", "n", "is_probability"]).round(3)
    body = _table(table, "metrics-table", set(table.columns) - {"score"})
    body += (
        '<p class="note">ROC AUC and PR AUC (average precision) measure ranking; Brier, log '
        "loss and ECE (expected calibration error, 10 equal-count bins) measure calibration "
        "and apply to probabilities only. Top-decile lift: churn rate in the riskiest 10% "
        "over the base rate.</p>"
    )
    alt = "Cumulative gains curve and lift by decile of churn probability"
    body += _png(_gains_figure(y, sub), "plot-gains", alt)
    alt = "Reliability diagram: observed churn rate against predicted churn probability"
    body += _png(_calibration_figure(y, sub["churn_probability"]), "plot-calibration", alt)
    return _section("section-model-evaluation", "Model evaluation", body, note)


def _contact_list(frame: pd.DataFrame, top_n: int) -> str:
    pool = frame[frame["contact"]] if "contact" in frame else frame
    shown = pool.sort_values("priority", kind="stable").head(top_n)
    shown = shown[[c for c in _CONTACT_COLUMNS if c in shown]].copy()
    for col in ("churn_probability", "p_alive"):
        shown[col] = shown[col].map("{:.1%}".format)
    scope = "customers flagged for contact" if "contact" in frame else "scored customers"
    note = f"Top {len(shown):,} of {len(pool):,} {scope}, by priority (1 = first)."
    if shown.empty:
        return _section("section-contact-list", "Contact list", "", "No customer to contact.")
    table = _table(shown, "contact-list", _NUMERIC | {"expected_net_benefit"})
    return _section("section-contact-list", "Contact list", table, note)


def _plots(frame: pd.DataFrame) -> str:
    non_positive = int((frame["predicted_clv"] <= 0).sum())
    hidden = max(frame["segment"].nunique() - _MAX_SEGMENTS, 0)
    specs = [
        ("pareto", "Value concentration", _pareto_figure,
         "Pareto curve: cumulative share of value against share of customers, top 20% marked",
         "Customers sorted from most to least valuable; the dotted line marks the top 20%."),
        ("tier-risk", "Where the value at risk sits", _tier_risk_figure,
         "Heatmap of value at risk by value tier and churn risk band, with customer counts",
         "Each cell: total value at risk (churn probability × predicted CLV) and customers."),
        ("clv-distribution", "Predicted customer lifetime value", _clv_figure,
         "Histogram of predicted CLV on a log scale, stacked by value tier",
         f"{non_positive:,} customer(s) with a CLV of zero or less are not on the log scale."
         if non_positive else ""),
        ("segment-churn", "Churn risk by segment", _segment_figure,
         "Box plot of churn probability for each customer segment",
         f"The {hidden} smallest segment(s) are not shown." if hidden else ""),
    ]  # fmt: skip
    return "".join(
        _section(f"section-{key}", heading, _png(make(frame), f"plot-{key}", alt), note)
        for key, heading, make, alt, note in specs
    )


def build_report(
    scores: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    outcomes: pd.Series | None = None,
    summary: Mapping[str, Any] | None = None,
    title: str = "churnguard retention report",
    top_n: int = 25,
) -> Path:
    """Write a self-contained HTML retention report and return its path.

    Parameters
    ----------
    scores : pandas.DataFrame
        Scored customers with the columns of :data:`REQUIRED_COLUMNS`; optional
        ``historical_revenue``, ``risk_band`` (derived from ``churn_probability`` with
        :data:`RISK_BAND_THRESHOLDS` when absent), ``growth_candidate``, ``contact`` and
        ``expected_net_benefit`` are used when present. Not modified.
    out : path-like
        Destination file (e.g. ``report.html``); folders are created. Written atomically:
        a temporary file in the same folder is renamed onto ``out``.
    outcomes : pandas.Series, optional
        Actual churn labels (1 = churned), indexed by customer_id or like ``scores``
        (whichever matches more customers; NaN = unknown). Adds the model evaluation
        section (metrics table, gains/lift and reliability plots) on the known labels.
    summary : mapping, optional
        Headline facts of the run (as_of, model, n_customers, ...), shown at the top.
    title : str, default "churnguard retention report"
        Page title and heading.
    top_n : int, default 25
        Rows of the contact list shown: rows with ``contact`` true when that column
        exists (else all), ordered by ``priority`` (1 first).

    Returns
    -------
    pathlib.Path
        ``out`` as a path.

    Raises
    ------
    TypeError
        ``scores``, ``outcomes``, ``summary`` or ``top_n`` of the wrong type.
    churnguard.exceptions.InputDataError
        Missing columns, duplicated customer_id, missing numbers, probabilities outside
        [0, 1], or outcomes that match no customer or are not 0/1.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
        raise TypeError(f"top_n must be a positive int (rows to show); received {top_n!r}.")
    if summary is not None and not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping of label to value; received {type(summary)}.")
    frame = _prepare(scores)
    labels = None if outcomes is None else _align_outcomes(outcomes, frame)
    with matplotlib.rc_context(_STYLE):
        body = "".join(
            [
                _summary(summary) if summary else "",
                _kpis(frame),
                _plots(frame),
                "" if labels is None else _evaluation(frame, labels),
                _contact_list(frame, int(top_n)),
            ]
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<header><h1>{_esc(title)}</h1><p class="meta">{len(frame):,} customers · '
        f"generated {stamp}</p></header>{body}<footer>Value at risk = churn probability × "
        "predicted CLV. Value tiers: top 20% (vip), middle 60% (stable), bottom 20% (low)."
        "</footer></main></body></html>\n"
    )
    target = Path(out)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # mkstemp makes the file private; a report is meant to be shared
    return target
