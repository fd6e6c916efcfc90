"""From scores to a decision: the prioritised retention list, in one implementation.

:func:`decide` takes the per-customer output of :meth:`ChurnGuardModel.predict` and adds
what a CRM team acts on: value tier (20/60/20), RFM segment, risk band, the playbook's
action with its cost and expected net benefit, growth candidates, an optional budgeted
contact flag, and ``priority`` (1 = highest value at risk). Every executor (in memory,
partitioned, Spark) calls it: the in-memory one on the scored frame, the partitioned one
on a slim per-customer Parquet file read a few columns at a time (see
:class:`ColumnSource`), so the decision steps exist once, in one order.

What is kept between steps is compact: one-byte codes for tiers, scores, segments,
bands and actions, and the handful of float columns of the list (~150 bytes per
customer at the peak, against ~1.3 KB for a frame of every scored column).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churnguard.decision._ranks import percentile_rank
from churnguard.decision.growth import (
    DEFAULT_GROWTH_FEATURES,
    flag_growth_candidates,
    look_alike_scores,
)
from churnguard.decision.playbook import Playbook, contact_summary, select_contacts
from churnguard.decision.segments import (
    SegmentRules,
    assign_segments,
    load_segment_rules,
    rfm_scores,
)
from churnguard.decision.tiers import assign_value_tiers, concentration
from churnguard.exceptions import ParameterTypeError

__all__ = [
    "CONTRACT_COLUMNS",
    "DECISION_INPUTS",
    "SUPPORTING_COLUMNS",
    "ColumnSource",
    "Decision",
    "FrameSource",
    "ParquetSource",
    "assemble_list",
    "build_retention_list",
    "decide",
    "retention_list",
    "retention_summary",
    "tier_risk_matrix",
]

#: The columns every retention list starts with, in this order (the CLI contract).
CONTRACT_COLUMNS = [
    "customer_id",
    "priority",
    "churn_probability",
    "p_alive",
    "expected_purchases",
    "predicted_clv",
    "value_at_risk",
    "value_tier",
    "segment",
    "action",
    "reasons",
]
#: The supporting columns that follow the contract columns, in this order (when present).
SUPPORTING_COLUMNS = [
    "risk_band",
    "expected_net_benefit",
    "unit_cost",
    "save_rate",
    "growth_score",
    "growth_candidate",
    "contact",
    "historical_revenue",
    "expected_spend",
    "frequency",
    "days_since_last",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
]
#: Scored columns the decision steps read (``margin_total`` too when the log has margins).
DECISION_INPUTS = (
    "customer_id frequency recency T monetary_value total_spend days_since_last p_alive "
    "expected_purchases expected_spend predicted_clv churn_probability value_at_risk"
).split()
# Columns of the list copied from the scored customers rather than computed here.
_FROM_SCORES = ("historical_revenue", "expected_spend", "frequency", "days_since_last")


class ColumnSource(Protocol):
    """Per-customer columns, read on demand (one row per customer, fixed order)."""

    names: set[str]

    def frame(self, columns: list[str]) -> pd.DataFrame:
        """The given columns as a frame, in row order."""
        ...


class FrameSource:
    """Columns of a frame already in memory."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self.names = set(map(str, frame.columns))

    def frame(self, columns: list[str]) -> pd.DataFrame:
        return self._frame[columns]


class ParquetSource:
    """Columns of a Parquet file, read only when asked and released after use.

    At millions of customers the Arrow copy would otherwise double every read, so each
    Arrow column is freed as it is converted and freed memory goes back to the OS.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.names = set(pq.read_schema(self.path).names)

    def frame(self, columns: list[str]) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        text = {
            pa.string(): pd.StringDtype("pyarrow"),
            pa.large_string(): pd.StringDtype("pyarrow"),
        }
        table = pq.read_table(self.path, columns=columns)
        out = table.to_pandas(types_mapper=text.get, self_destruct=True, split_blocks=True)
        del table
        pa.default_memory_pool().release_unused()
        return out


def _column(source: ColumnSource, name: str) -> np.ndarray:
    return source.frame([name])[name].to_numpy()


@dataclass
class Decision:
    """The decision columns of every customer (row order of the source) and the summary."""

    columns: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def decide(
    source: ColumnSource,
    *,
    playbook: Playbook | str | os.PathLike[str] | None = None,
    segment_rules: SegmentRules | str | os.PathLike[str] | None = None,
    tier_weights: Mapping[str, float] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
    sorted_by_id: bool = True,
    write_to: str | os.PathLike[str] | None = None,
) -> Decision:
    """Compute the whole-base decision columns, a few input columns at a time.

    Parameters
    ----------
    source : ColumnSource
        One row per scored customer with :data:`DECISION_INPUTS`.
    playbook, segment_rules : object or path, optional
        Loaded or to be loaded; the packaged defaults when omitted.
    tier_weights : mapping, optional
        Weights of the value score behind the tiers (see
        :func:`churnguard.decision.tiers.value_score`).
    capacity, budget : optional
        Limit the ``contact`` flag to at most ``capacity`` customers and/or a total
        unit cost of ``budget``, in order of expected net benefit.
    sorted_by_id : bool
        Whether the rows are in ``customer_id`` order: then ties are broken by row
        position without reading the ids (the partitioned path's slim file is sorted).
    write_to : path, optional
        Write the decision columns to this Parquet file (row order of the source) and
        release them before the summary is computed, instead of returning them: at
        millions of customers the columns and the summary's lean frame need not be held
        at the same time.

    Returns
    -------
    Decision
        ``columns``: value_tier, r/f/m/rfm scores, segment, the playbook's columns,
        growth_score, growth_candidate, contact (with a limit) and priority;
        ``summary``: :func:`retention_summary` of the list.
    """
    book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
    rules = (
        segment_rules
        if isinstance(segment_rules, SegmentRules)
        else load_segment_rules(segment_rules)
    )
    names = source.names
    # Ties are broken by id: by row position when the rows are in id order, else with ids.
    tie = [] if sorted_by_id else ["customer_id"]
    history = ["margin_total"] if "margin_total" in names else []
    value_cols = ["predicted_clv", "total_spend", *history]
    if tier_weights:
        value_cols = list(dict.fromkeys([*tier_weights, *tie]))
    tier = assign_value_tiers(source.frame([*value_cols, *tie]), weights=tier_weights)
    res: dict[str, Any] = {"value_tier": tier.array}
    # The look-alike matrix first, while little else is held, filled one input column
    # at a time rather than from a frame of them all.
    features = [c for c in DEFAULT_GROWTH_FEATURES if c in names]
    x = np.empty((len(tier), len(features)))
    for j, col in enumerate(features):
        x[:, j] = percentile_rank(_column(source, col))
    growth = pd.Series(look_alike_scores(x, (tier == "vip").to_numpy()), name="growth_score")
    del x
    scores = rfm_scores(source.frame(["days_since_last", "frequency", "monetary_value", *tie]))
    small = pd.DataFrame({c: scores[c].to_numpy().astype(np.int8) for c in scores.columns})
    del scores
    res.update({c: small[c].to_numpy() for c in small.columns})
    segment = assign_segments(small, rules)
    res["segment"] = segment.array
    del small
    churn, at_risk = _column(source, "churn_probability"), _column(source, "value_at_risk")
    inputs = {"churn_probability": churn, "value_at_risk": at_risk, "value_tier": tier.array}
    actions = book.assign(pd.DataFrame(dict(inputs, segment=segment.array), copy=False))
    for col in actions.columns:
        values = actions[col]
        res[col] = pd.Categorical(values) if col == "action" else values.array
    del actions, segment
    res["growth_score"] = growth.to_numpy()
    res["growth_candidate"] = flag_growth_candidates(
        pd.DataFrame({"value_tier": tier.array, "churn_probability": churn}, copy=False),
        risk_thresholds=book.thresholds,
        scores=growth,
    ).to_numpy()
    del growth
    ids = _column(source, "customer_id") if not sorted_by_id else None
    if capacity is not None or budget is not None:
        frame = source.frame(["customer_id"]).assign(
            expected_net_benefit=res["expected_net_benefit"], unit_cost=res["unit_cost"]
        )
        res["contact"] = select_contacts(frame, capacity=capacity, budget=budget).to_numpy()
        del frame
    # Value at risk, then churn probability, both descending, then customer_id.
    n = len(tier)
    keys = (
        (-churn, -at_risk)
        if ids is None
        else (pd.Series(ids).astype(str).to_numpy(), -churn, -at_risk)
    )
    order = np.lexsort(keys)
    priority = np.empty(n, dtype=np.int64)
    priority[order] = np.arange(1, n + 1)
    res["priority"] = priority
    kept = {c: res[c] for c in ("value_tier", "risk_band", "contact", "unit_cost", "save_rate")
            if c in res}  # fmt: skip
    if write_to is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(pd.DataFrame(res, copy=False), preserve_index=False)
        pq.write_table(table, write_to)
        del table, priority
        res = {}
        pa.default_memory_pool().release_unused()  # the table's Arrow copy
    # The summary from a lean frame in priority order (its float sums depend on the order).
    lean: dict[str, Any] = {
        "customer_id": np.zeros(n, dtype=np.int8),  # only counted
        "predicted_clv": _column(source, "predicted_clv")[order],
        "historical_revenue": _column(source, "total_spend")[order],
        "churn_probability": churn[order],
        "value_at_risk": at_risk[order],
    }
    for col, values in kept.items():
        lean[col] = values.take(order) if isinstance(values, pd.Categorical) else values[order]
    summary = retention_summary(pd.DataFrame(lean, copy=False))
    return Decision(res, summary)


def build_retention_list(
    scored: pd.DataFrame,
    *,
    playbook: Playbook | str | os.PathLike[str] | None = None,
    segment_rules: SegmentRules | str | os.PathLike[str] | None = None,
    tier_weights: Mapping[str, float] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
) -> pd.DataFrame:
    """Turn scored customers into the prioritised retention list (see :func:`decide`).

    Parameters
    ----------
    scored : DataFrame
        Output of :meth:`ChurnGuardModel.predict` (features, value outputs,
        ``churn_probability``, ``value_at_risk``, ``reasons``). Not modified.
    playbook, segment_rules, tier_weights, capacity, budget
        As in :func:`decide`.

    Returns
    -------
    DataFrame
        :data:`CONTRACT_COLUMNS` then the supporting columns, sorted by ``priority``.
    """
    retention, _ = retention_list(
        scored,
        playbook=playbook,
        segment_rules=segment_rules,
        tier_weights=tier_weights,
        capacity=capacity,
        budget=budget,
    )
    return retention


def retention_list(scored: pd.DataFrame, **options: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The retention list of :func:`build_retention_list` and its summary (one pass).

    ``options`` are those of :func:`decide`.
    """
    if not isinstance(scored, pd.DataFrame):
        raise ParameterTypeError(f"scored must be a pandas DataFrame; got {type(scored).__name__}.")
    df = scored.reset_index(drop=True)
    in_order = bool(df["customer_id"].astype(str).is_monotonic_increasing)
    decision = decide(FrameSource(df), sorted_by_id=in_order, **options)
    return assemble_list(df, decision.columns), decision.summary


def assemble_list(scored: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """The list's columns from the scored rows and their decision columns, by priority."""
    out = {}
    for col in CONTRACT_COLUMNS + SUPPORTING_COLUMNS:
        if col in columns:
            out[col] = np.asarray(columns[col]) if col != "value_tier" else columns[col]
        elif col == "historical_revenue":
            out[col] = scored["total_spend"].to_numpy()
        elif col in scored.columns:
            out[col] = scored[col].to_numpy()
    frame = pd.DataFrame(out)
    for col in ("value_tier", "segment", "action", "risk_band"):
        if col in frame:
            frame[col] = frame[col].astype(str).to_numpy(dtype=object)
    for col in ("r_score", "f_score", "m_score", "rfm_score"):
        if col in frame:  # one-byte codes while deciding, whole numbers in the list
            frame[col] = frame[col].astype(np.int64)
    order = np.argsort(frame["priority"].to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def retention_summary(retention: pd.DataFrame) -> dict[str, Any]:
    """Headline figures of a retention list: equity, risk, concentration, contacts."""
    conc = concentration(retention, value_cols=("historical_revenue", "predicted_clv"))
    summary: dict[str, Any] = {
        "customers": len(retention),
        "customer_equity": float(retention["predicted_clv"].sum()),
        "value_at_risk": float(retention["value_at_risk"].sum()),
        "mean_churn_probability": float(retention["churn_probability"].mean()),
        "concentration": conc,
        "tier_risk": tier_risk_matrix(retention).to_dict(orient="index"),
    }
    if "contact" in retention:
        summary["contacts"] = contact_summary(retention.loc[retention["contact"].astype(bool)])
    return summary


def tier_risk_matrix(retention: pd.DataFrame) -> pd.DataFrame:
    """Customers and value at risk per value tier x risk band."""
    grouped = retention.groupby(["value_tier", "risk_band"], observed=True)
    table = grouped.agg(customers=("customer_id", "size"), value_at_risk=("value_at_risk", "sum"))
    table.index = [f"{t}/{r}" for t, r in table.index]
    return table
