"""Judging churnguard out of time: one date (:func:`evaluate_as_of`) or a backtest."""

from churnguard.evaluation.backtest import (
    BacktestResult,
    BacktestRun,
    backtest,
    observe_outcomes,
    score_as_of,
)
from churnguard.evaluation.evaluate import EvaluationResult, evaluate_as_of

__all__ = [
    "BacktestResult",
    "BacktestRun",
    "EvaluationResult",
    "backtest",
    "evaluate_as_of",
    "observe_outcomes",
    "score_as_of",
]
