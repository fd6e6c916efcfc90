"""Self-contained HTML retention report built from a scored customer table.

One file a manager can open offline or attach to an e-mail: inline CSS, plots
embedded as base64 PNG (matplotlib's Agg canvas, no display needed), no
JavaScript and no external URL. It answers the questions of the retention
meeting: how concentrated is the value (Pareto, 20/60/20 tiers), where is the
value at risk (tier x risk), how good is the model when outcomes are known
(lift, gains, calibration), and who to call first (the contact list).
This module builds the page; the figures are drawn by
:mod:`churnguard.report.figures`.
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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from churnguard.churn.metrics import compare_scores
from churnguard.data.io import atomic_path
from churnguard.decision.labels import COLUMN_LABELS, money
from churnguard.decision.labels import labels as plain_labels
from churnguard.exceptions import InputDataError, ParameterTypeError
from churnguard.report.figures import (
    MAX_SEGMENTS,
    STYLE,
    calibration_figure,
    clv_figure,
    format_compact,
    format_pct,
    gains_figure,
    pareto_figure,
    segment_figure,
    tier_risk_figure,
    top_share,
)

__all__ = ["REQUIRED_COLUMNS", "RISK_BAND_THRESHOLDS", "build_report", "report_from_list"]

#: Columns of the scoring contract the report needs.
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    "customer_id priority churn_probability p_alive expected_purchases predicted_clv "
    "value_at_risk value_tier segment action reasons".split()
)
#: ``risk_band`` derived when absent: low below 0.3, medium below 0.6, high from 0.6 on.
RISK_BAND_THRESHOLDS: tuple[float, float] = (0.3, 0.6)

_CONTACT_COLUMNS = tuple(
    "priority customer_id value_tier risk_band segment churn_probability value_if_retained "
    "predicted_clv value_at_risk expected_net_benefit action reasons".split()
)
_NUMERIC = {
    "priority",
    "churn_probability",
    "p_alive",
    "predicted_clv",
    "value_if_retained",
    "value_at_risk",
}
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


def _table(
    frame: pd.DataFrame, table_id: str, numeric: set[str], headers: Mapping[str, str] | None = None
) -> str:
    # Spaced headers can wrap, leaving the width to the free-text columns. Cells keep the
    # column's code as their class; the heading is the plain-English label.
    names = headers or {}
    head = "".join(
        f"<th>{_esc(names.get(str(c), str(c).replace('_', ' ')))}</th>" for c in frame.columns
    )
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


# --------------------------------------------------------------------------- inputs
def _prepare(scores: Any) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        raise ParameterTypeError(
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
    frame["p_alive"] = pd.to_numeric(frame["p_alive"], errors="coerce")  # NaN: unknown
    for col in ("churn_probability", "predicted_clv", "value_at_risk"):
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
        raise ParameterTypeError(
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


# --------------------------------------------------------------------------- sections
def _kpis(frame: pd.DataFrame, currency: str = "") -> str:
    equity, at_risk = float(frame["predicted_clv"].sum()), float(frame["value_at_risk"].sum())
    high = int((frame["risk_band"] == "high").sum())
    cards = [
        ("Customers", f"{len(frame):,}"),
        ("Customer equity (sum of predicted CLV)", currency + format_compact(equity)),
        ("Total value at risk", currency + format_compact(at_risk)),
        (
            "Value at risk as share of equity",
            format_pct(at_risk / equity if equity > 0 else np.nan, 1),
        ),
        ("Share of CLV held by the top 20%", format_pct(top_share(frame["predicted_clv"]))),
    ]
    if "historical_revenue" in frame:
        cards.append(("Share of revenue held by the top 20%", format_pct(top_share(frame[
            "historical_revenue"]))))  # fmt: skip
    cards.append(("High-risk customers", f"{high:,} ({format_pct(high / len(frame))})"))
    contacted = frame["contact"] if "contact" in frame else pd.Series(True, frame.index)
    if "contact" in frame:
        cards.append(("Customers to contact", f"{int(contacted.sum()):,}"))
        covered = float(frame.loc[contacted, "value_at_risk"].sum())
        cards.append(("Value at risk covered by contacts", currency + format_compact(covered)))
    if "expected_net_benefit" in frame:
        benefit = pd.to_numeric(frame["expected_net_benefit"], errors="coerce")
        if "contact" in frame:
            net = float(benefit[contacted].sum())
            cards.append(("Expected net benefit of contacts", currency + format_compact(net)))
        else:
            # No campaign was chosen (no --capacity or --budget): summing every customer's
            # benefit would count contacts nobody would make. Those that pay are shown.
            worth = benefit > 0
            cards.append(("Customers worth a contact (net benefit > 0)", f"{int(worth.sum()):,}"))
            cards.append((
                "Expected net benefit of contacting them",
                currency + format_compact(float(benefit[worth].sum())),
            ))  # fmt: skip
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
        f"(1 = churned); observed churn rate {format_pct(float(y.mean()), 1)}."
    )
    if y.nunique() < 2:
        note += " All of them have the same outcome, so ranking metrics are undefined."
        return _section("section-model-evaluation", "Model evaluation", "", note)
    model = "model: churn_probability"
    recency = (
        {"baseline: days since last purchase": sub["days_since_last"]}
        if ("days_since_last" in sub)
        else {}
    )
    named = {
        **recency,
        model: sub["churn_probability"],
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
    body += _png(gains_figure(y, sub), "plot-gains", alt)
    alt = "Reliability diagram: observed churn rate against predicted churn probability"
    body += _png(calibration_figure(y, sub["churn_probability"]), "plot-calibration", alt)
    return _section("section-model-evaluation", "Model evaluation", body, note)


def _contact_list(frame: pd.DataFrame, top_n: int, currency: str = "") -> str:
    pool = frame[frame["contact"]] if "contact" in frame else frame
    shown = pool.sort_values("priority", kind="stable").head(top_n)
    shown = shown[[c for c in _CONTACT_COLUMNS if c in shown]].copy()
    for col in ("churn_probability", "p_alive"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1%}")
    for col in ("value_tier", "risk_band", "segment"):
        if col in shown:
            shown[col] = plain_labels(shown[col])
    for col in ("predicted_clv", "value_if_retained", "value_at_risk", "expected_net_benefit"):
        if col in shown:
            shown[col] = [money(v, currency, 2) for v in shown[col]]

    scope = "customers flagged for contact" if "contact" in frame else "scored customers"
    note = f"Top {len(shown):,} of {len(pool):,} {scope}, by priority (1 = first)."
    if shown.empty:
        return _section("section-contact-list", "Contact list", "", "No customer to contact.")
    table = _table(shown, "contact-list", _NUMERIC | {"expected_net_benefit"}, COLUMN_LABELS)
    return _section("section-contact-list", "Contact list", table, note)


def _plots(frame: pd.DataFrame) -> str:
    non_positive = int((frame["predicted_clv"] <= 0).sum())
    hidden = max(frame["segment"].nunique() - MAX_SEGMENTS, 0)
    specs = [
        ("pareto", "Value concentration", pareto_figure,
         "Pareto curve: cumulative share of value against share of customers, top 20% marked",
         "Customers sorted from most to least valuable; the dotted line marks the top 20%."),
        ("tier-risk", "Where the value at risk sits", tier_risk_figure,
         "Heatmap of value at risk by value tier and churn risk band, with customer counts",
         "Each cell: total value at risk (churn probability × value if retained) and customers."),
        ("clv-distribution", "Predicted customer lifetime value", clv_figure,
         "Histogram of predicted CLV on a log scale, stacked by value tier",
         f"{non_positive:,} customer(s) with a CLV of zero or less are not on the log scale."
         if non_positive else ""),
        ("segment-churn", "Churn risk by segment", segment_figure,
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
    currency: str = "",
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
    currency : str
        Prefix of money amounts (``$``).

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
        raise ParameterTypeError(
            f"top_n must be a positive int (rows to show); received {top_n!r}."
        )
    if summary is not None and not isinstance(summary, Mapping):
        raise ParameterTypeError(
            f"summary must be a mapping of label to value; received {type(summary)}."
        )
    frame = _prepare(scores)
    labels = None if outcomes is None else _align_outcomes(outcomes, frame)
    with matplotlib.rc_context(STYLE):
        body = "".join(
            [
                _summary(summary) if summary else "",
                _kpis(frame, currency),
                _plots(frame),
                "" if labels is None else _evaluation(frame, labels),
                _contact_list(frame, int(top_n), currency),
            ]
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<header><h1>{_esc(title)}</h1><p class="meta">{len(frame):,} customers · '
        f"generated {stamp}</p></header>{body}<footer>Value at risk = churn probability × "
        "value if retained. Value tiers: top 20% (VIP), middle 60% (stable), bottom 20% (low) of "
        "the reference base by value score (by default value if retained and revenue so far)."
        "</footer></main></body></html>\n"
    )
    target = Path(out)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # mkstemp makes the file private; a report is meant to be shared
    return target


def report_from_list(
    retention: str | os.PathLike[str],
    out: str | os.PathLike[str],
    summary: Mapping[str, Any] | None = None,
    *,
    outcomes: str | os.PathLike[str] | None = None,
    top_n: int = 25,
    currency: str = "",
) -> Path:
    """The report of a retention list written to a file (CSV or Parquet).

    Only the columns the report draws are read back, so it also serves lists never
    held in memory whole (partitioned scoring). ``outcomes`` is an optional table of
    ``customer_id`` and ``churned`` (1/0) that adds the evaluation section.
    """
    from churnguard.data.io import read_columns, read_table

    wanted = [*REQUIRED_COLUMNS, "value_if_retained", "historical_revenue", "risk_band",
              "growth_candidate", "contact", "expected_net_benefit"]  # fmt: skip
    present = [c for c in wanted if c in read_columns(retention)]
    frame = read_table(retention, present, string_columns=("customer_id",))
    labels = None
    if outcomes is not None:
        table = read_table(outcomes, string_columns=("customer_id",))
        if "customer_id" not in table or "churned" not in table:
            raise InputDataError(
                f"outcomes file '{outcomes}' needs the columns customer_id and churned (1/0); "
                f"it has {list(table.columns)}."
            )
        labels = table.set_index("customer_id")["churned"]
    flat = {k: v for k, v in (summary or {}).items() if not isinstance(v, dict)}
    return build_report(
        frame, out, outcomes=labels, summary=flat or None, top_n=top_n, currency=currency
    )
