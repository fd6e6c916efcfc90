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

from churnguard.data import LoadedTransactions, ScannedTransactions, scan_transactions
from churnguard.data.io import write_table
from churnguard.decision.retention import list_inputs, retention_list, rounded_for_csv
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
) -> ScannedTransactions | LoadedTransactions:
    """Read and clean a log given as a path, a raw frame or an already cleaned log.

    A path or a raw frame is scanned (:func:`churnguard.data.scan_transactions`) and
    its rows stay in Arrow: at 10M rows a pandas copy of the log would cost ~1 GB and
    several seconds, and scoring only needs the per-customer features built from it.
    """
    if isinstance(transactions, LoadedTransactions):
        return transactions
    cmap = request.columns
    if isinstance(transactions, pd.DataFrame):
        return scan_transactions(transactions, cmap)
    encoding = cmap.encoding if cmap is not None else None
    return scan_transactions(transactions, cmap, encoding=encoding)


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
    if isinstance(loaded, ScannedTransactions):
        customers, n_bad = loaded.customers, loaded.rows_quarantined
    else:
        customers = loaded.transactions["customer_id"].nunique()
        n_bad = loaded.n_quarantined
    source, quarantine = loaded.source, loaded.quarantine
    log.info("scoring %d customers' transactions", customers)
    part = score_part(
        model,
        loaded,
        as_of=request.as_of,
        reasons_limit=request.reasons_limit,
        source=source,
        currency=request.currency,
    )
    del loaded  # the log's rows: scoring kept only the customers' features
    assert part.scored is not None and part.as_of is not None  # require_customers
    as_of, scored = part.as_of, part.scored
    del part
    scored = scored[list_inputs(scored.columns)]  # the features are no longer needed
    retention, summary = retention_list(scored, **request.decision_options(model))
    del scored
    run_summary(summary, model, as_of, n_bad)
    result = ScoreResult(
        retention,
        retention.head(request.top),
        summary,
        len(retention),
        quarantined=n_bad,
    )
    if request.out is not None:
        result.out = write_table(rounded_for_csv(retention, request.out), request.out)
        result.quarantine_file = write_quarantine(quarantine, result.out)
    if request.report is not None:
        from churnguard.report import build_report

        flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        result.report = build_report(
            retention, request.report, summary=flat, currency=request.currency
        )
    result.seconds = time.perf_counter() - start
    return result
