"""Judging churnguard out of time: backtests and value metrics."""

from churnguard.evaluation.backtest import (
    BacktestResult,
    BacktestRun,
    backtest,
    observe_outcomes,
    score_as_of,
)
from churnguard.evaluation.value_metrics import (
    VALUE_METRICS,
    compare_values,
    decile_table,
    normalized_gini,
    top_share,
    value_report,
)

__all__ = [
    "VALUE_METRICS",
    "BacktestResult",
    "BacktestRun",
    "backtest",
    "compare_values",
    "decile_table",
    "normalized_gini",
    "observe_outcomes",
    "score_as_of",
    "top_share",
    "value_report",
]
