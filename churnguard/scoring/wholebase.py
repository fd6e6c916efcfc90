"""Whole-base columns of a partitioned scoring run, from a slim per-customer file.

Tiers (20/60/20), RFM quintiles and segments, playbook actions, the look-alike
growth score, budgeted contacts and priorities depend on every customer, so
:func:`churnguard.scoring.batch.score_parquet_partitioned` computes them after
all partitions are scored, from one Parquet file of the ~14 columns they need.
Each column group is computed by the same public function
:func:`~churnguard.scoring.retention.build_retention_list` calls, reading only
its input columns, so the values are identical. What is kept between steps is
compact: one-byte codes for tiers, scores, segments, bands and actions, and the
handful of float columns of the list (~60 bytes per customer at the peak, against
~1.3 KB for ``build_retention_list`` on the whole frame).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard.scoring.playbook import Playbook, select_contacts
from churnguard.scoring.retention import retention_summary
from churnguard.scoring.segments import assign_segments, load_segment_rules, rfm_scores
from churnguard.scoring.tiers import (
    DEFAULT_GROWTH_FEATURES,
    _percentile_rank,
    assign_value_tiers,
    flag_growth_candidates,
    look_alike_scores,
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


def _column(path: Path, name: str) -> np.ndarray:
    return _read(path, [name])[name].to_numpy()


def whole_base_columns(
    slim: Path,
    out: Path,
    *,
    playbook: str | os.PathLike[str] | Playbook | None,
    segment_rules: str | os.PathLike[str] | None,
    capacity: int | None,
    budget: float | None,
) -> dict[str, Any]:
    """The whole-base columns of :func:`build_retention_list`, a few input columns at a time.

    ``slim`` holds one row per customer sorted by ``customer_id``; the new columns
    are written to ``out`` in the same row order (compact dtypes). Returns
    :func:`retention_summary` of the list, computed in priority order like the
    in-memory list's so that its sums are the same to the last bit.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = set(pq.read_schema(slim).names)
    # Rows are in customer_id order (DuckDB's binary order of text is Python's), so
    # breaking ties by row position is breaking them by id, without reading the ids.
    value = ["predicted_clv", "total_spend"] + (["margin_total"] if "margin_total" in names else [])
    tier = assign_value_tiers(_read(slim, value))
    res: dict[str, Any] = {"value_tier": tier.array}
    # The look-alike matrix first, while little else is held; it is growth_candidates'
    # matrix, filled one input column at a time rather than from a frame of them all.
    features = [c for c in DEFAULT_GROWTH_FEATURES if c in names]
    x = np.empty((len(tier), len(features)))
    for j, col in enumerate(features):
        x[:, j] = _percentile_rank(_column(slim, col))
    growth = pd.Series(look_alike_scores(x, (tier == "vip").to_numpy()), name="growth_score")
    del x
    scores = rfm_scores(_read(slim, ["days_since_last", "frequency", "monetary_value"]))
    small = pd.DataFrame({c: scores[c].to_numpy().astype(np.int8) for c in scores.columns})
    del scores
    res.update({c: small[c].to_numpy() for c in small.columns})
    segment = assign_segments(small, load_segment_rules(segment_rules))
    res["segment"] = segment.array
    del small
    book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
    churn, at_risk = _column(slim, "churn_probability"), _column(slim, "value_at_risk")
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
    if capacity is not None or budget is not None:
        frame = _read(slim, ["customer_id"]).assign(
            expected_net_benefit=res["expected_net_benefit"], unit_cost=res["unit_cost"]
        )
        res["contact"] = select_contacts(frame, capacity=capacity, budget=budget).to_numpy()
        del frame
    # build_retention_list's order: value at risk, then churn probability, both descending,
    # then customer_id; rows are sorted by customer_id and lexsort is stable, so the row
    # position breaks the remaining ties.
    n = len(tier)
    order = np.lexsort((-churn, -at_risk))
    priority = np.empty(n, dtype=np.int64)
    priority[order] = np.arange(1, n + 1)
    res["priority"] = priority
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(res, copy=False), preserve_index=False), out)
    kept = {c: res[c] for c in ("value_tier", "risk_band", "contact", "unit_cost", "save_rate")
            if c in res}  # fmt: skip
    del res, priority
    pa.default_memory_pool().release_unused()  # the table's Arrow copy
    # The summary from a lean frame in priority order (its float sums depend on the order).
    # The two value columns are read again rather than kept since the tiers: at millions
    # of customers a second read of two columns is cheaper than holding them throughout.
    lean: dict[str, Any] = {
        "customer_id": np.zeros(n, dtype=np.int8),  # only counted
        "predicted_clv": _column(slim, "predicted_clv")[order],
        "historical_revenue": _column(slim, "total_spend")[order],
        "churn_probability": churn[order],
        "value_at_risk": at_risk[order],
    }
    del churn, at_risk
    for col, values in kept.items():
        lean[col] = values.take(order) if isinstance(values, pd.Categorical) else values[order]
    del kept
    return retention_summary(pd.DataFrame(lean, copy=False))
