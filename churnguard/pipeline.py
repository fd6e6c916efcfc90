"""The batch jobs behind the CLI, usable the same way from Python.

``train_model`` reads a log, fits a :class:`ChurnGuardModel`, saves the model
directory and logs the MLflow run; ``score_transactions`` turns a log and a model
into the prioritised retention list. Each returns a small result object that
says where everything went, so a notebook and a cron job see the same facts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard.data import ColumnMap, LoadedTransactions, load_transactions, write_table
from churnguard.features.engine import to_date
from churnguard.scoring.bundle import load_model, save_model
from churnguard.scoring.model import ChurnGuardModel
from churnguard.scoring.retention import build_retention_list, retention_summary

__all__ = [
    "EvaluationResult",
    "ScoreResult",
    "TrainResult",
    "quarantine_path",
    "resolve_model",
    "evaluate_model",
    "run_backtest",
    "score_transactions",
    "train_model",
]

log = logging.getLogger(__name__)


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


@dataclass
class ScoreResult:
    """A retention list and the facts of the scoring run."""

    retention: pd.DataFrame
    summary: dict[str, Any]
    out: Path | None = None
    quarantined: int = 0
    quarantine_file: Path | None = None
    seconds: float = 0.0


def quarantine_path(output: str | os.PathLike[str]) -> Path:
    """Where the unusable rows of a run go: ``<output>.quarantine.csv`` beside it."""
    out = Path(output)
    if out.suffix:
        return out.with_name(out.stem + ".quarantine.csv")
    return out / "quarantine.csv"


def _load(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    columns: ColumnMap | None,
) -> LoadedTransactions:
    if isinstance(transactions, LoadedTransactions):
        return transactions
    if isinstance(transactions, pd.DataFrame):
        from churnguard.data import clean_transactions

        return clean_transactions(transactions, columns)
    return load_transactions(transactions, columns)


def _write_quarantine(loaded: LoadedTransactions, output: str | os.PathLike[str]) -> Path | None:
    if loaded.n_quarantined == 0:
        return None
    path = quarantine_path(output)
    write_table(loaded.quarantine, path)
    reasons = loaded.quarantine["reason"].value_counts().to_dict()
    log.warning("%d unusable rows set aside in %s: %s", loaded.n_quarantined, path, reasons)
    return path


def train_model(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    model_dir: str | os.PathLike[str] = "models/churnguard",
    *,
    columns: ColumnMap | None = None,
    horizon_days: int = 90,
    track: bool = True,
    experiment: str = "churnguard",
    register_as: str | None = "churnguard",
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
        Registered model name and alias to point at the new version.
    **model_params
        Other :class:`ChurnGuardModel` parameters.
    """
    start = time.perf_counter()
    loaded = _load(transactions, columns)
    log.info("loaded %s", loaded.summary())
    model = ChurnGuardModel(horizon_days=horizon_days, **model_params).fit(loaded.transactions)
    extra = {
        "columns": (columns or ColumnMap()).to_dict(),
        "source": loaded.source,
        "rows_used": len(loaded.transactions),
        "rows_quarantined": loaded.n_quarantined,
    }
    path = save_model(model, model_dir, extra=extra)
    qfile = _write_quarantine(loaded, path)
    tracking: dict[str, str] = {}
    if track:
        from churnguard.tracking import log_training_run

        tracking = log_training_run(
            model,
            path,
            register_as=register_as,
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


def resolve_model(model: str | os.PathLike[str] | ChurnGuardModel) -> ChurnGuardModel:
    """A fitted model from a model directory, an MLflow URI, or a model object."""
    if isinstance(model, ChurnGuardModel):
        return model
    text = str(model)
    if text.startswith(("models:/", "runs:/")) or (":/" in text and not Path(text).exists()):
        from churnguard.scoring.pyfunc import load_churnguard_model

        return load_churnguard_model(text)
    return load_model(text)


def score_transactions(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    model: str | os.PathLike[str] | ChurnGuardModel,
    *,
    out: str | os.PathLike[str] | None = None,
    as_of: Any = None,
    columns: ColumnMap | None = None,
    playbook: str | os.PathLike[str] | None = None,
    segment_rules: str | os.PathLike[str] | None = None,
    capacity: int | None = None,
    budget: float | None = None,
) -> ScoreResult:
    """Score a log as of a date and build the prioritised retention list.

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
    playbook, segment_rules : path, optional
        User-edited playbook and segment rule files.
    capacity, budget : optional
        Budgeted contact list (see :func:`build_retention_list`).
    """
    start = time.perf_counter()
    fitted = resolve_model(model)
    loaded = _load(transactions, columns)
    tx = loaded.transactions
    as_of_date = to_date(as_of) if as_of is not None else to_date(tx["date"].max())
    log.info("scoring %d customers' transactions as of %s", tx["customer_id"].nunique(), as_of_date)
    scored = fitted.score(tx, as_of_date)
    retention = build_retention_list(
        scored, playbook=playbook, segment_rules=segment_rules, capacity=capacity, budget=budget
    )
    summary = retention_summary(retention)
    summary.update(
        as_of=as_of_date.isoformat(),
        horizon_days=int(fitted.horizon_days),
        model_trained_to=fitted.training_end_.isoformat(),
        value_model=fitted.purchase_model_.model_name,
        rows_quarantined=loaded.n_quarantined,
    )
    qfile = None
    out_path = None
    if out is not None:
        out_path = write_table(retention, out)
        qfile = _write_quarantine(loaded, out_path)
    return ScoreResult(
        retention, summary, out_path, loaded.n_quarantined, qfile, time.perf_counter() - start
    )


@dataclass
class EvaluationResult:
    """Out-of-time metrics of a model and the baselines on one as-of date."""

    comparison: pd.DataFrame
    metrics: dict[str, float]
    as_of: str
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    tracking: dict[str, str] = field(default_factory=dict)


def evaluate_model(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    model: str | os.PathLike[str] | ChurnGuardModel,
    as_of: Any,
    *,
    columns: ColumnMap | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    track: bool = True,
) -> EvaluationResult:
    """Score as of ``as_of`` and compare with what happened in the following horizon.

    The log must extend at least ``horizon_days`` past ``as_of``; the outcomes are
    read from it, the features and the baselines (recency, the model's BTYD expected
    purchases and P(no purchase)) only from transactions up to ``as_of``.

    Parameters
    ----------
    transactions : path, DataFrame or LoadedTransactions
        A log covering ``as_of`` and the horizon after it.
    model : path, URI or ChurnGuardModel
        Ideally trained on data that ends on or before ``as_of``; a warning says when
        it is not (the evaluation is then partly in-sample).
    as_of : date-like
        The scoring date.
    out_dir : path, optional
        Where metrics (JSON/CSV), gains and reliability tables and plots are written.
    track : bool
        Log the evaluation as an MLflow run.
    """
    from churnguard.churn.baselines import BASELINE_PROBABILITIES, baseline_scores
    from churnguard.churn.metrics import (
        classification_report,
        compare_scores,
        gains_table,
        reliability_table,
    )
    from churnguard.churn.plots import plot_gains, plot_reliability
    from churnguard.evaluation.backtest import observe_outcomes

    fitted = resolve_model(model)
    loaded = _load(transactions, columns)
    tx = loaded.transactions
    day = to_date(as_of)
    if fitted.training_end_ > day:
        log.warning(
            "the model was trained on data up to %s, after the as-of date %s: "
            "this evaluation is partly in-sample",
            fitted.training_end_,
            day,
        )
    history = tx.loc[tx["date"] < pd.Timestamp(day) + pd.Timedelta(days=1)]
    # Fails fast, before scoring, when the log does not cover the outcome window.
    observe_outcomes(tx, pd.Series(dtype=object), day, int(fitted.horizon_days))
    frame = fitted.features(history, day)
    outcomes = observe_outcomes(tx, frame["customer_id"], day, int(fitted.horizon_days))
    y = outcomes["churned"].to_numpy()
    prob = fitted.churn_probability(frame)
    baselines = baseline_scores(frame)
    comparison = compare_scores(
        y,
        {"churnguard": prob, **baselines},
        probabilities=("churnguard", *BASELINE_PROBABILITIES),
    ).set_index("score")
    metrics = classification_report(y, prob)
    result = EvaluationResult(comparison, metrics, day.isoformat())
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        comparison.to_csv(folder / "metrics.csv")
        (folder / "metrics.json").write_text(
            pd.Series({**metrics, "as_of": day.isoformat()}).to_json(indent=2)
        )
        gains_table(y, prob).to_csv(folder / "gains.csv", index=False)
        reliability_table(y, prob).to_csv(folder / "reliability.csv", index=False)
        result.files = [
            plot_gains(y, {"churnguard": prob, **baselines}, folder / "gains.png"),
            plot_reliability(
                y,
                {"churnguard": prob, "BTYD P(no purchase)": baselines["btyd_p_no_purchase"]},
                folder / "reliability.png",
            ),
        ]
        result.out_dir = folder
    if track:
        from churnguard.tracking import log_evaluation_run

        result.tracking = log_evaluation_run(comparison, metrics, day.isoformat(), result.out_dir)
    return result


def run_backtest(
    transactions: str | os.PathLike[str] | pd.DataFrame | LoadedTransactions,
    as_of: list[Any],
    horizon_days: int | list[int] = 90,
    *,
    columns: ColumnMap | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    track: bool = True,
    progress: Any = None,
    **model_params: Any,
) -> Any:
    """Backtest churnguard on a log: train as of each date, score, observe the next window.

    See :func:`churnguard.evaluation.backtest`; this reads and cleans the log first
    (unusable rows are counted and written to ``<out_dir>/quarantine.csv``).

    Returns
    -------
    churnguard.evaluation.BacktestResult
    """
    from churnguard.evaluation.backtest import backtest

    loaded = _load(transactions, columns)
    result = backtest(
        loaded.transactions,
        as_of,
        horizon_days,
        model_params=model_params,
        out_dir=out_dir,
        track=track,
        progress=progress,
    )
    if out_dir is not None:
        qfile = _write_quarantine(loaded, Path(out_dir))
        if qfile is not None:
            result.files.append(qfile)
    return result
