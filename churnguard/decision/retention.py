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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churnguard.decision._ranks import lexsort_ties_by_id
from churnguard.decision.playbook import Playbook, contact_summary, select_contacts
from churnguard.decision.reference import DecisionReference
from churnguard.decision.segments import (
    SegmentRules,
    assign_segments,
    load_segment_rules,
    rename_segments,
)
from churnguard.decision.tiers import TIERS, concentration
from churnguard.exceptions import ParameterTypeError

__all__ = [
    "CONTRACT_COLUMNS",
    "DECIMAL_COLUMNS",
    "DECISION_INPUTS",
    "WIN_BACK_SEGMENT",
    "SUPPORTING_COLUMNS",
    "ColumnSource",
    "Decision",
    "FrameSource",
    "ParquetSource",
    "assemble_list",
    "MONEY_COLUMNS",
    "PROBABILITY_COLUMNS",
    "build_retention_list",
    "decide",
    "list_inputs",
    "retention_list",
    "retention_summary",
    "rounded_for_csv",
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
    "value_if_retained",
    "value_at_risk",
    "value_tier",
    "segment",
    "action",
    "reasons",
]
#: The supporting columns that follow the contract columns, in this order (when present).
SUPPORTING_COLUMNS = [
    "risk_band",
    "ranked_by",
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
    "expected_purchases expected_spend predicted_clv value_if_retained churn_probability "
    "value_at_risk mean_gap_days returned_amount"
).split()
#: Money columns of the list, rounded to cents in CSV outputs.
MONEY_COLUMNS = (
    "predicted_clv",
    "value_if_retained",
    "value_at_risk",
    "expected_net_benefit",
    "unit_cost",
    "historical_revenue",
    "expected_spend",
)
#: Probability-like columns of the list, rounded to 4 decimals in CSV outputs.
PROBABILITY_COLUMNS = ("churn_probability", "p_alive", "save_rate", "growth_score")
#: Other decimal columns rounded to 4 decimals in CSV outputs.
DECIMAL_COLUMNS = ("expected_purchases",)

#: Segment of the win-back track (lapsed customers who used to be among the best).
WIN_BACK_SEGMENT = "win_back"
_TIER_ORDER = list(reversed(TIERS))  # category codes: 0 low, 1 stable, 2 vip
_RANKED_BY = ("contact decision", "value at risk")
# What a reference measured on the scored base itself needs.
_REFERENCE_INPUTS = (
    "days_since_last frequency monetary_value churn_probability recency T expected_purchases "
    "returned_amount"
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
    reference: DecisionReference | None = None,
    playbook: Playbook | str | os.PathLike[str] | None = None,
    segment_rules: SegmentRules | str | os.PathLike[str] | None = None,
    tier_weights: Mapping[str, float] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
    sorted_by_id: bool = True,
    write_to: str | os.PathLike[str] | None = None,
) -> Decision:
    """Compute the decision columns of every customer, a few input columns at a time.

    Parameters
    ----------
    source : ColumnSource
        One row per scored customer with :data:`DECISION_INPUTS`.
    reference : DecisionReference, optional
        The stored reference base (the model's, learned at training): tiers, risk
        bands, RFM scores and the look-alike score are measured against it, so a
        customer gets the same answer whatever else is scored with them. None measures
        them against the customers of ``source`` themselves.
    playbook, segment_rules : object or path, optional
        Loaded or to be loaded; the packaged defaults when omitted.
    tier_weights : mapping, optional
        Weights of the value score when the reference is measured on ``source``.
    capacity, budget : optional
        Limit the ``contact`` flag to at most ``capacity`` customers and/or a total
        unit cost of ``budget``, in order of expected net benefit; the list is then
        ordered by that decision (contacted customers first).
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
        growth_score, growth_candidate, contact (with a limit), priority and
        ranked_by; ``summary``: :func:`retention_summary` of the list.
    """
    book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
    rules = (
        segment_rules
        if isinstance(segment_rules, SegmentRules)
        else load_segment_rules(segment_rules)
    )
    names = source.names
    history = "margin_total" if "margin_total" in names else "total_spend"
    if reference is None:
        wanted = [*(tier_weights or {}), "value_if_retained", "predicted_clv",
                  "total_spend", history, *_REFERENCE_INPUTS]  # fmt: skip
        cols = [c for c in dict.fromkeys(wanted) if c in names]
        reference = DecisionReference.fit(source.frame(cols), tier_weights=tier_weights)
    ref = reference
    res: dict[str, Any] = {}
    tier_codes = ref.tier_codes(source.frame(list(ref.tier_weights)))
    res["value_tier"] = pd.Categorical.from_codes(
        np.asarray(tier_codes), categories=pd.Index(_TIER_ORDER), ordered=True
    )
    growth_cols = [c for c in ref.growth_cdfs if c in names]
    growth = ref.growth_scores(source.frame(growth_cols)) if growth_cols else None
    rfm_cols = ["days_since_last", "frequency", "monetary_value", "total_spend", "returned_amount"]
    scores = ref.rfm(source.frame([c for c in rfm_cols if c in names]))
    res.update({c: scores[c].to_numpy() for c in scores.columns})
    segment = assign_segments(scores, rules)
    del scores
    churn, at_risk = _column(source, "churn_probability"), _column(source, "value_at_risk")
    edges = ref.risk_edges(book.risk_bands)
    band_codes = np.where(churn >= edges[1], 2, np.where(churn >= edges[0], 1, 0))
    revenue = _column(source, history).astype(float)
    no_value = revenue <= 0
    win_back = np.zeros(len(churn), dtype=bool)
    if book.win_back is not None:
        gap = (
            _column(source, "mean_gap_days")
            if "mean_gap_days" in names
            else np.full(len(churn), np.nan)
        )
        lapsed = book.win_back.lapsed(_column(source, "days_since_last"), gap)
        win_back = (band_codes == 2) & (revenue >= ref.vip_revenue) & lapsed & ~no_value
    res["segment"] = rename_segments(segment, win_back, WIN_BACK_SEGMENT)
    inputs = pd.DataFrame(
        {
            "value_tier": res["value_tier"],
            "churn_probability": churn,
            "value_at_risk": at_risk,
            "segment": res["segment"],
            "win_back": win_back,
            "no_value": no_value,
        },
        copy=False,
    )
    actions = book.assign(inputs, risk_edges=edges)
    del inputs
    for col in actions.columns:
        values = actions[col]
        res[col] = pd.Categorical(values) if col == "action" else values.array
    del actions, segment
    res["growth_score"] = growth if growth is not None else np.full(len(churn), np.nan)
    with np.errstate(invalid="ignore"):
        res["growth_candidate"] = (
            (tier_codes == 1) & (res["growth_score"] > 0.5) & (band_codes != 2) & ~no_value
        )
    ids = None if sorted_by_id else pd.Series(_column(source, "customer_id")).astype(str)
    contact = None
    if capacity is not None or budget is not None:
        frame = source.frame(["customer_id"]).assign(
            expected_net_benefit=res["expected_net_benefit"], unit_cost=res["unit_cost"]
        )
        contact = select_contacts(frame, capacity=capacity, budget=budget).to_numpy()
        res["contact"] = contact
        del frame
    order = _priority_order(churn, at_risk, np.asarray(res["expected_net_benefit"]), contact, ids)
    n = len(churn)
    priority = np.empty(n, dtype=np.int64)
    priority[order] = np.arange(1, n + 1)
    res["priority"] = priority
    if contact is not None:
        res["ranked_by"] = pd.Categorical.from_codes(
            np.where(contact, 0, 1).astype(np.int8), categories=pd.Index(_RANKED_BY)
        )
    kept = {c: res[c] for c in ("value_tier", "risk_band", "contact", "unit_cost", "save_rate",
                                "segment") if c in res}  # fmt: skip
    if write_to is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(pd.DataFrame(res, copy=False), preserve_index=False)
        pq.write_table(table, write_to)
        del table, priority
        res = {}
        pa.default_memory_pool().release_unused()  # the table's Arrow copy
    # The summary from a lean frame in priority order (its float sums depend on the order).
    # Each input is released as its ordered copy is made: at 5M customers every float
    # column is 40 MB, and this is the stage's peak.
    del growth, revenue
    lean: dict[str, Any] = {
        "customer_id": np.zeros(n, dtype=np.int8),  # only counted
        "predicted_clv": _column(source, "predicted_clv")[order],
        "historical_revenue": _column(source, "total_spend")[order],
    }
    lean["churn_probability"] = churn[order]
    del churn
    lean["value_at_risk"] = at_risk[order]
    del at_risk
    for col in list(kept):
        values = kept.pop(col)
        lean[col] = values.take(order) if isinstance(values, pd.Categorical) else values[order]
        del values
    summary = retention_summary(pd.DataFrame(lean, copy=False))
    summary["decision"] = ref.describe(book.risk_bands) | {
        "ordered_by": "contact decision, then value at risk"
        if contact is not None
        else "value at risk",
    }
    return Decision(res, summary)


def _priority_order(
    churn: np.ndarray,
    at_risk: np.ndarray,
    net_benefit: np.ndarray,
    contact: np.ndarray | None,
    ids: pd.Series | None,
) -> np.ndarray:
    """Row positions, first to last in the list.

    Without a contact decision: value at risk, then churn probability, both descending,
    then customer_id. With one: the contacted customers first, in the order they were
    chosen (expected net benefit, descending), then the others as above; so priority 1
    is always the first customer to call.
    """
    tie = None if ids is None else ids.to_numpy()
    if contact is None:
        return lexsort_ties_by_id((-churn, -at_risk), tie)
    key = np.where(contact, -net_benefit, 0.0)
    return lexsort_ties_by_id((-churn, -at_risk, key, ~contact), tie)


def build_retention_list(
    scored: pd.DataFrame,
    *,
    playbook: Playbook | str | os.PathLike[str] | None = None,
    segment_rules: SegmentRules | str | os.PathLike[str] | None = None,
    tier_weights: Mapping[str, float] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
    reference: DecisionReference | None = None,
) -> pd.DataFrame:
    """Turn scored customers into the prioritised retention list (see :func:`decide`).

    Parameters
    ----------
    scored : DataFrame
        Output of :meth:`ChurnGuardModel.predict` (features, value outputs,
        ``churn_probability``, ``value_at_risk``, ``reasons``). Not modified.
    playbook, segment_rules, tier_weights, capacity, budget, reference
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
        reference=reference,
    )
    return retention


def list_inputs(columns: Iterable[str]) -> list[str]:
    """The scored columns the decision steps and the list read, in the order given.

    A scoring run can keep only these (no features) once the scores are computed: at a
    million customers the features are ~300 MB the list never reads.
    """
    wanted = {*DECISION_INPUTS, "margin_total", *CONTRACT_COLUMNS, *SUPPORTING_COLUMNS}
    return [c for c in columns if c in wanted]


def retention_list(scored: pd.DataFrame, **options: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The retention list of :func:`build_retention_list` and its summary (one pass).

    ``options`` are those of :func:`decide`.
    """
    if not isinstance(scored, pd.DataFrame):
        raise ParameterTypeError(f"scored must be a pandas DataFrame; got {type(scored).__name__}.")
    # A new index without copying the columns (reset_index would copy every scored
    # column: ~500 MB at a million customers).
    df = scored.copy(deep=False)
    df.index = pd.RangeIndex(len(df))
    in_order = bool(df["customer_id"].astype(str).is_monotonic_increasing)
    decision = decide(FrameSource(df), sorted_by_id=in_order, **options)
    return assemble_list(df, decision.columns), decision.summary


def assemble_list(scored: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """The list's columns from the scored rows and their decision columns, by priority.

    Each column is put in priority order as it is taken, so the list is built once
    (building it, then reordering it, held two copies: ~600 MB at a million customers).
    """
    order = np.argsort(np.asarray(columns["priority"]), kind="stable")
    out = {}
    for col in CONTRACT_COLUMNS + SUPPORTING_COLUMNS:
        if col in columns:
            values = columns[col]
        elif col == "historical_revenue":
            values = scored["total_spend"].to_numpy()
        elif col in scored.columns:
            values = scored[col].to_numpy()
        else:
            continue
        if col in ("value_tier", "segment", "action", "risk_band"):
            values = pd.Series(values).astype(str).to_numpy(dtype=object)
        elif col in ("r_score", "f_score", "m_score", "rfm_score"):
            values = np.asarray(values).astype(np.int64)  # one-byte codes while deciding
        out[col] = np.asarray(values)[order]
    return pd.DataFrame(out)


def rounded_for_csv(
    retention: pd.DataFrame, path: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """The list as a CSV reader wants it: money to cents, probabilities to 4 decimals.

    A spreadsheet of ``0.7553718264`` and ``302.94571`` is harder to read and no more
    true; Parquet outputs keep full precision (``path`` with another extension returns
    the frame unchanged).
    """
    if path is not None and Path(path).suffix.lower() != ".csv":
        return retention
    out = retention.copy()
    for col in MONEY_COLUMNS:
        if col in out:
            out[col] = out[col].round(2)
    for col in (*PROBABILITY_COLUMNS, *DECIMAL_COLUMNS):
        if col in out:
            out[col] = out[col].round(4)
    return out


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
