"""Judging a fitted model on one date: its churn probabilities against what followed.

The model scores the customers as of ``as_of`` from the transactions up to that date
only; the outcomes come from the window after it, and the baselines (recency, the
BTYD model's expected purchases and its P(no purchase)) are scored on the same
customers.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard._dates import to_date
from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
from churnguard.churn.metrics import classification_report, compare_scores
from churnguard.evaluation.backtest import observe_outcomes

__all__ = ["EvaluationResult", "evaluate_as_of"]

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Out-of-time metrics of a model and the baselines on one as-of date."""

    comparison: pd.DataFrame
    metrics: dict[str, float]
    as_of: str
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    tracking: dict[str, str] = field(default_factory=dict)
    #: The model's training data reach past ``as_of``: the evaluation is partly in-sample.
    training_end: str | None = None

    @property
    def in_sample(self) -> bool:
        """Whether the model saw data after ``as_of`` (the metrics are then optimistic)."""
        return self.training_end is not None and self.training_end > self.as_of


def evaluate_as_of(model: Any, transactions: pd.DataFrame, as_of: Any) -> EvaluationResult:
    """Score ``transactions`` up to ``as_of`` and compare with the following horizon.

    Parameters
    ----------
    model : ChurnGuardModel
        Ideally trained on data that ends on or before ``as_of``; a warning says when
        it is not (the evaluation is then partly in-sample).
    transactions : DataFrame
        A cleaned log covering ``as_of`` and the horizon after it.
    as_of : date-like
        The scoring date.

    Returns
    -------
    EvaluationResult
        ``scores`` holds ``customer_id``, ``churned``, ``churn_probability`` and each
        baseline's score.
    """
    day: dt.date = to_date(as_of)
    if model.training_end_ > day:
        log.warning(
            "the model was trained on data up to %s, after the as-of date %s: "
            "this evaluation is partly in-sample",
            model.training_end_,
            day,
        )
    # Fails fast, before scoring, when the log does not cover the outcome window.
    observe_outcomes(transactions, pd.Series(dtype=object), day, int(model.horizon_days))
    history = transactions.loc[transactions["date"] < pd.Timestamp(day) + pd.Timedelta(days=1)]
    frame = model.features(history, day)
    outcomes = observe_outcomes(transactions, frame["customer_id"], day, int(model.horizon_days))
    y = outcomes["churned"].to_numpy()
    prob = model.churn_probability(frame, as_of=day)
    baselines = baseline_scores(frame)
    comparison = compare_scores(
        y, {"churnguard": prob, **baselines}, probabilities=("churnguard", *BASELINE_PROBABILITIES)
    ).set_index("score")
    scores = pd.DataFrame(
        {"customer_id": frame["customer_id"].to_numpy(), "churned": y, "churn_probability": prob}
        | baselines
    )
    return EvaluationResult(
        comparison,
        classification_report(y, prob),
        day.isoformat(),
        scores,
        training_end=model.training_end_.isoformat(),
    )
