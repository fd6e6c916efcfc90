"""Whole-base columns of a partitioned scoring run, from a slim per-customer file.

Tiers (20/60/20), RFM quintiles and segments, playbook actions, the look-alike
growth score, budgeted contacts and priorities depend on every customer, so
:func:`churnguard.scoring.batch.score_parquet_partitioned` computes them after
all partitions are scored, from one Parquet file of the ~14 columns they need.
Each column group is computed by the same public function
:func:`~churnguard.scoring.retention.build_retention_list` calls, reading only
its input columns and keeping compact dtypes (~200 bytes per customer at the
peak; ``build_retention_list`` itself on that frame needs ~1.3 KB).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.scoring.playbook import Playbook, select_contacts
from churnguard.scoring.segments import assign_segments, load_segment_rules, rfm_scores
from churnguard.scoring.tiers import (
    DEFAULT_GROWTH_FEATURES,
    assign_value_tiers,
    flag_growth_candidates,
    growth_candidates,
)

__all__ = ["whole_base_columns"]


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    table = pq.read_table(path, columns=columns)
    # Free each Arrow column as it is converted, and hand freed memory back to the
    # OS: at millions of customers the Arrow copy would otherwise double every read.
    frame = table.to_pandas(types_mapper=text.get, self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    return frame


def whole_base_columns(
    slim: Path,
    out: Path,
    *,
    playbook: str | os.PathLike[str] | Playbook | None,
    segment_rules: str | os.PathLike[str] | None,
    capacity: int | None,
    budget: float | None,
) -> pd.DataFrame:
    """The whole-base columns of :func:`build_retention_list`, a few input columns at a time.

    ``slim`` holds one row per customer sorted by ``customer_id``; the new columns
    are written to ``out`` in the same row order (compact dtypes), and the frame
    :func:`retention_summary` needs is returned in priority order. Each step calls
    the same public function as ``build_retention_list`` with the columns it reads,
    so the values are identical; only the final ordering is restated here.
    """
    import pyarrow.parquet as pq

    names = set(pq.read_schema(slim).names)
    # Rows are in customer_id order (DuckDB's binary order of text is Python's), so
    # breaking ties by row position is breaking them by id, without reading the ids.
    value = ["predicted_clv", "total_spend"] + (["margin_total"] if "margin_total" in names else [])
    res = pd.DataFrame({"value_tier": assign_value_tiers(_read(slim, value)).astype("category")})
    scores = rfm_scores(_read(slim, ["days_since_last", "frequency", "monetary_value"]))
    for col in scores.columns:
        res[col] = scores[col].to_numpy().astype("int8")
    res["segment"] = assign_segments(res, load_segment_rules(segment_rules)).to_numpy()
    book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
    risk = _read(slim, ["churn_probability", "value_at_risk"])
    actions = book.assign(risk.assign(value_tier=res["value_tier"], segment=res["segment"]))
    for col in actions.columns:
        values = actions[col]
        res[col] = values.astype("category") if col == "action" else values.to_numpy()
    del actions, scores
    growth = _read(slim, [c for c in DEFAULT_GROWTH_FEATURES if c in names])
    growth["value_tier"] = res["value_tier"].to_numpy()  # in place: assign() would copy
    growth["churn_probability"] = risk["churn_probability"].to_numpy()
    score = growth_candidates(growth)
    res["growth_score"] = score.to_numpy()
    res["growth_candidate"] = flag_growth_candidates(
        growth, risk_thresholds=book.thresholds, scores=score
    )
    del growth
    if capacity is not None or budget is not None:
        ids = _read(slim, ["customer_id"])
        frame = ids.assign(
            expected_net_benefit=res["expected_net_benefit"], unit_cost=res["unit_cost"]
        )
        res["contact"] = select_contacts(frame, capacity=capacity, budget=budget).to_numpy()
    # build_retention_list's order: value at risk, then churn probability, both descending,
    # then customer_id; rows are sorted by customer_id, so the position breaks the ties.
    n = len(res)
    order = np.lexsort(
        (np.arange(n), -risk["churn_probability"].to_numpy(), -risk["value_at_risk"].to_numpy())
    )
    priority = np.empty(n, dtype=np.int64)
    priority[order] = np.arange(1, n + 1)
    res["priority"] = priority
    res.to_parquet(out, index=False)
    money = _read(slim, ["predicted_clv", "total_spend"])
    summary = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "predicted_clv": money["predicted_clv"].to_numpy(),
            "historical_revenue": money["total_spend"].to_numpy(),
            "churn_probability": risk["churn_probability"].to_numpy(),
            "value_at_risk": risk["value_at_risk"].to_numpy(),
            "value_tier": res["value_tier"].astype(str).to_numpy(),
            "risk_band": res["risk_band"],
        }
    )
    if "contact" in res:
        summary = summary.assign(
            **{c: res[c].to_numpy() for c in ("contact", "unit_cost", "save_rate")}
        )
    return summary.iloc[order].reset_index(drop=True)
