"""In-memory execution: the whole log is one part, the list is built in memory.

The simplest executor, and the reference the others must match: read and clean the
log, score it with :func:`~churnguard.execution.core.score_part`, decide with
:func:`~churnguard.decision.retention.decide`, write the list, its quarantine file
and the report.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.data import LoadedTransactions, clean_transactions, load_transactions
from churnguard.data.io import write_table
from churnguard.decision.retention import retention_list, rounded_for_csv
from churnguard.execution.core import score_part
from churnguard.execution.outputs import write_quarantine
from churnguard.execution.request import ScoringRequest

__all__ = ["ScoreResult", "load_log", "run_summary", "score_in_memory"]

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    """A scoring run's list (in memory, or its first rows when it was too large) and facts.

    Attributes
    ----------
    retention : DataFrame or None
        The whole list (None for a partitioned run: it is only on disk).
    top : DataFrame
        The first ``request.top`` rows of the list.
    summary : dict
        Headline figures (see :func:`churnguard.decision.retention.retention_summary`).
    """

    retention: pd.DataFrame | None
    top: pd.DataFrame
    summary: dict[str, Any]
    customers: int
    out: Path | None = None
    quarantined: int = 0
    quarantine_file: Path | None = None
    report: Path | None = None
    seconds: float = 0.0
    mode: str = "in memory"
    partitions: int = 1
    details: dict[str, Any] = field(default_factory=dict)


def load_log(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    request: ScoringRequest,
) -> LoadedTransactions:
    """Read and clean a log given as a path, a raw frame or an already cleaned log."""
    if isinstance(transactions, LoadedTransactions):
        return transactions
    if isinstance(transactions, pd.DataFrame):
        return clean_transactions(transactions, request.columns)
    return load_transactions(transactions, request.columns)


def run_summary(summary: dict[str, Any], model: Any, as_of: Any, quarantined: int) -> None:
    """Add the run's facts (date, horizon, model) to a list's summary, in place."""
    summary.update(
        as_of=as_of.isoformat(),
        horizon_days=int(model.horizon_days),
        model_trained_to=model.training_end_.isoformat(),
        value_model=model.purchase_model_.model_name,
        rows_quarantined=quarantined,
    )


def score_in_memory(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    model: Any,
    request: ScoringRequest,
) -> ScoreResult:
    """Score a whole log in memory and write what the request asks for.

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        The log; only transactions on or before the as-of date are used.
    model : ChurnGuardModel
        A fitted model.
    request : ScoringRequest
        The run's options (see :meth:`ScoringRequest.build`).
    """
    start = time.perf_counter()
    loaded = load_log(transactions, request)
    tx = loaded.transactions
    log.info("scoring %d customers' transactions", tx["customer_id"].nunique())
    part = score_part(
        model,
        loaded,
        as_of=request.as_of,
        reasons_limit=request.reasons_limit,
        source=loaded.source,
        currency=request.currency,
    )
    assert part.scored is not None and part.as_of is not None  # require_customers
    retention, summary = retention_list(part.scored, **request.decision_options(model))
    run_summary(summary, model, part.as_of, loaded.n_quarantined)
    result = ScoreResult(
        retention,
        retention.head(request.top),
        summary,
        len(retention),
        quarantined=loaded.n_quarantined,
    )
    if request.out is not None:
        result.out = write_table(rounded_for_csv(retention, request.out), request.out)
        result.quarantine_file = write_quarantine(loaded.quarantine, result.out)
    if request.report is not None:
        from churnguard.report import build_report

        flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        result.report = build_report(
            retention, request.report, summary=flat, currency=request.currency
        )
    result.seconds = time.perf_counter() - start
    return result
