"""The jobs behind the CLI, usable the same way from Python.

Each job reads a log, runs one stage of churnguard and says where everything went, so a
notebook and a cron job see the same facts:

* :func:`train_model`: fit a :class:`~churnguard.model.ChurnGuardModel`, save the model
  folder, log the MLflow run;
* :func:`score_transactions`: the prioritised retention list, in memory or in bounded
  memory (:mod:`churnguard.execution`), with its report;
* :func:`evaluate_model`: a model's churn probabilities against what followed a date;
* :func:`run_backtest`: train, score and observe at several dates;
* :func:`build_features`: the point-in-time feature table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.data import ColumnMap, LoadedTransactions, clean_transactions, load_transactions
from churnguard.data.io import check_not_input, table_format
from churnguard.evaluation import BacktestResult, EvaluationResult, backtest, evaluate_as_of
from churnguard.exceptions import InputDataError
from churnguard.execution import ScoreResult, ScoringRequest, score_in_memory, write_quarantine
from churnguard.execution.outputs import quarantine_path
from churnguard.execution.request import DEFAULT_REASONS_LIMIT
from churnguard.features import FeaturesResult, build_features
from churnguard.model import ChurnGuardModel, save_model
from churnguard.tracking.registry import resolve_model

__all__ = [
    "EvaluationResult",
    "FeaturesResult",
    "ScoreResult",
    "TrainResult",
    "build_features",
    "evaluate_model",
    "quarantine_path",
    "resolve_model",
    "run_backtest",
    "score_transactions",
    "train_model",
]

log = logging.getLogger(__name__)

Log = str | os.PathLike[str] | pd.DataFrame | LoadedTransactions


@dataclass
class TrainResult:
    """Where a training run went and what it measured."""

    model: ChurnGuardModel
    model_dir: Path
    metrics: dict[str, float]
    tracking: dict[str, str] = field(default_factory=dict)
    quarantined: int = 0
    quarantine_file: Path | None = None
    seconds: float = 0.0


def _load(transactions: Log, columns: ColumnMap | None) -> LoadedTransactions:
    if isinstance(transactions, LoadedTransactions):
        return transactions
    if isinstance(transactions, pd.DataFrame):
        return clean_transactions(transactions, columns)
    return load_transactions(transactions, columns)


def train_model(
    transactions: Log,
    model_dir: str | os.PathLike[str] = "models/churnguard",
    *,
    columns: ColumnMap | None = None,
    horizon_days: int = 90,
    track: bool = True,
    experiment: str = "churnguard",
    register_as: str | None = None,
    alias: str | None = None,
    **model_params: Any,
) -> TrainResult:
    """Train on every transaction of a log and save the model directory.

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        The log (CSV/Parquet path or raw frame) or an already cleaned one.
    model_dir : path
        Where the model bundle is written (atomically).
    columns : ColumnMap, optional
        The log's column names.
    horizon_days : int
        Churn = no purchase within this many days.
    track : bool
        Log the run (and the pyfunc model) to MLflow.
    register_as, alias : str, optional
        Register the model under this name (nothing is registered by default: the
        registry is yours to manage) and point ``alias`` at the new version; an alias
        alone registers under ``churnguard``.
    **model_params
        Other :class:`ChurnGuardModel` parameters.
    """
    start = time.perf_counter()
    loaded = _load(transactions, columns)
    log.info("loaded %s", loaded.summary())
    warmup = None
    if track:
        from churnguard.tracking.warmup import warm_up_tracking

        # MLflow's imports and store set-up overlap the fit (see the module).
        warmup = warm_up_tracking(experiment)
    try:
        model = ChurnGuardModel(horizon_days=horizon_days, **model_params).fit(loaded.transactions)
        extra = {
            "columns": (columns or ColumnMap()).to_dict(),
            "source": loaded.source,
            "rows_used": len(loaded.transactions),
            "rows_quarantined": loaded.n_quarantined,
        }
        path = save_model(model, model_dir, extra=extra)
    except BaseException:
        if warmup is not None:
            warmup.discard()  # no run will be logged: leave no store behind
        raise
    qfile = write_quarantine(loaded.quarantine, path)
    tracking: dict[str, str] = {}
    if track:
        from churnguard.tracking import log_training_run

        if warmup is not None:
            warmup.wait()
        tracking = log_training_run(
            model,
            path,
            experiment=experiment,
            register_as=register_as or ("churnguard" if alias else None),
            alias=alias,
            tags={"churnguard.source": loaded.source},
        )
    return TrainResult(
        model,
        path,
        dict(model.metrics_),
        tracking,
        loaded.n_quarantined,
        qfile,
        time.perf_counter() - start,
    )


def score_transactions(
    transactions: Log,
    model: str | os.PathLike[str] | ChurnGuardModel,
    *,
    out: str | os.PathLike[str] | None = None,
    as_of: Any = None,
    columns: ColumnMap | None = None,
    playbook: Any = None,
    segment_rules: Any = None,
    capacity: int | None = None,
    budget: float | None = None,
    report: str | os.PathLike[str] | None = None,
    top: int = 10,
    reasons_limit: int | None = DEFAULT_REASONS_LIMIT,
    partitions: int | None = None,
    max_memory_gb: float | None = None,
    workers: int | None = None,
    progress: Callable[[Any], None] | None = None,
    currency: str = "",
    recompute_reference: bool = False,
) -> ScoreResult:
    """Score a log as of a date and build the prioritised retention list.

    Every option is checked, and the playbook and segment rules are read, before the
    log is (see :class:`~churnguard.execution.ScoringRequest`). With ``partitions``,
    ``max_memory_gb`` or ``workers``, a Parquet log is scored in bounded memory
    (:func:`churnguard.execution.partitioned.score_parquet_partitioned`); the list is
    the same. A Parquet log too large to score comfortably in memory (see
    :func:`churnguard.execution.partitioned.needs_partitions`: about 3M rows, fewer
    when memory is short) is scored that way without being asked, and a log line
    says so.

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        The log; only transactions on or before ``as_of`` are used.
    model : path, URI or ChurnGuardModel
        A model directory, ``models:/name@alias`` / ``runs:/`` URI, or a fitted model.
    out : path, optional
        Where to write the list (``.csv`` or ``.parquet``, atomically).
    as_of : date-like, optional
        Scoring date; default the last date in the log.
    playbook, segment_rules : Playbook, SegmentRules or path, optional
        User-edited playbook and segment rule files.
    capacity, budget : optional
        Budgeted contact list (see :func:`churnguard.decision.decide`).
    report : path, optional
        Also write the HTML report here.
    top : int
        Rows of the list kept in :attr:`ScoreResult.top`.
    reasons_limit : int, optional
        Reasons for the customers with the highest value at risk only (see
        :meth:`ChurnGuardModel.predict`); None for everyone.
    partitions, max_memory_gb, workers : optional
        Bounded-memory execution of a Parquet log.
    progress : callable, optional
        Called after each partition of a partitioned run.
    currency : str
        Prefix of money amounts in the reasons, the console and the report (``$``).
    recompute_reference : bool
        Measure tiers, risk bands and RFM scores against the scored customers instead
        of the model's reference base (the training base): then scoring a subset
        ranks it among itself.
    """
    request = ScoringRequest.build(
        as_of=as_of,
        columns=columns,
        playbook=playbook,
        segment_rules=segment_rules,
        capacity=capacity,
        budget=budget,
        out=out,
        report=report,
        top=top,
        reasons_limit=reasons_limit,
        partitions=partitions,
        max_memory_gb=max_memory_gb,
        workers=workers,
        currency=currency,
        recompute_reference=recompute_reference,
    )
    given = transactions if isinstance(transactions, str | os.PathLike) else None
    check_not_input(request.out, given)
    check_not_input(request.report, given, option="--report")
    auto = not request.execution.partitioned and request.out is not None
    if auto and given is not None and _too_big_for_memory(given):
        from churnguard.execution.partitioned import score_parquet_partitioned

        return score_parquet_partitioned(given, resolve_model(model), request, progress=progress)
    if request.execution.partitioned:
        if given is None or table_format(given) != "parquet":
            raise InputDataError(
                "--partitions, --max-memory and --workers score a Parquet log in bounded "
                f"memory; {given or 'a frame'} is not a .parquet file. Convert it (e.g. "
                "duckdb -c \"COPY (FROM 'log.csv') TO 'log.parquet'\") or drop those options."
            )
        from churnguard.execution.partitioned import score_parquet_partitioned

        fitted = resolve_model(model)
        return score_parquet_partitioned(given, fitted, request, progress=progress)
    return score_in_memory(transactions, resolve_model(model), request)


def _too_big_for_memory(path: str | os.PathLike[str]) -> bool:
    """Whether a Parquet log should be scored partitioned although no option asked (logged)."""
    if table_format(path) != "parquet":
        return False
    import pyarrow.parquet as pq

    from churnguard.execution.partitioned import needs_partitions

    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError):
        return False  # unreadable: the scan says why
    if not needs_partitions(rows):
        return False
    log.info(
        "%s rows: scoring in bounded memory, partition by partition (--partitions, "
        "--max-memory and --workers choose how)",
        f"{rows:,}",
    )
    return True


def evaluate_model(
    transactions: Log,
    model: str | os.PathLike[str] | ChurnGuardModel,
    as_of: Any,
    *,
    columns: ColumnMap | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    track: bool = True,
) -> EvaluationResult:
    """Score as of ``as_of`` and compare with what happened in the following horizon.

    See :func:`churnguard.evaluation.evaluate_as_of`; this reads the log and writes
    the files and the MLflow run.

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        A log covering ``as_of`` and the horizon after it.
    model : path, URI or ChurnGuardModel
        Ideally trained on data that ends on or before ``as_of``.
    as_of : date-like
        The scoring date.
    out_dir : path, optional
        Where metrics (JSON/CSV), gains and reliability tables and plots are written.
    track : bool
        Log the evaluation as an MLflow run.
    """
    from churnguard.churn.metrics import gains_table, reliability_table
    from churnguard.churn.plots import plot_gains, plot_reliability

    fitted = resolve_model(model)
    loaded = _load(transactions, columns)
    result = evaluate_as_of(fitted, loaded.transactions, as_of)
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        scores = result.scores
        y = scores["churned"].to_numpy()
        prob = scores["churn_probability"]
        result.comparison.to_csv(folder / "metrics.csv")
        (folder / "metrics.json").write_text(
            pd.Series({**result.metrics, "as_of": result.as_of}).to_json(indent=2)
        )
        gains_table(y, prob).to_csv(folder / "gains.csv", index=False)
        reliability_table(y, prob).to_csv(folder / "reliability.csv", index=False)
        named = {c: scores[c] for c in scores.columns if c not in ("customer_id", "churned")}
        result.files = [
            plot_gains(y, named, folder / "gains.png"),
            plot_reliability(
                y,
                {"churnguard": prob, "BTYD P(no purchase)": scores["btyd_p_no_purchase"]},
                folder / "reliability.png",
            ),
        ]
        qfile = write_quarantine(loaded.quarantine, folder)
        if qfile is not None:
            result.files.append(qfile)
        result.out_dir = folder
    if track:
        from churnguard.tracking import log_evaluation_run

        result.tracking = log_evaluation_run(
            result.comparison, result.metrics, result.as_of, result.out_dir
        )
    return result


def run_backtest(
    transactions: Log,
    as_of: list[Any],
    horizon_days: int | list[int] = 90,
    *,
    columns: ColumnMap | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    track: bool = True,
    progress: Callable[[Any], None] | None = None,
    **model_params: Any,
) -> BacktestResult:
    """Backtest churnguard on a log: train as of each date, score, observe the next window.

    See :func:`churnguard.evaluation.backtest`; this reads and cleans the log first
    (unusable rows are counted and written to ``<out_dir>/quarantine.csv``) and logs
    the backtest as one MLflow run when ``track``.
    """
    loaded = _load(transactions, columns)
    result = backtest(
        loaded.transactions,
        as_of,
        horizon_days,
        model_params=model_params,
        out_dir=out_dir,
        progress=progress,
    )
    if out_dir is not None:
        qfile = write_quarantine(loaded.quarantine, Path(out_dir))
        if qfile is not None:
            result.files.append(qfile)
    if track:
        from churnguard.tracking import log_backtest_run

        result.tracking = log_backtest_run(result)
    return result
