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
    read from it. Baselines (recency, BG/NBD expected purchases, BG/NBD 1 - P(alive))
    are fitted on transactions up to ``as_of`` only.

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
    from churnguard.churn.metrics import gains_table, reliability_table
    from churnguard.churn.plots import plot_gains, plot_reliability
    from churnguard.exceptions import InsufficientHistoryError
    from churnguard.features import label_window, make_labels
    from churnguard.scoring.model import evaluation_report

    fitted = resolve_model(model)
    loaded = _load(transactions, columns)
    tx = loaded.transactions
    day = to_date(as_of)
    _, window_end = label_window(day, int(fitted.horizon_days), int(fitted.gap_days))
    last = to_date(tx["date"].max())
    if window_end > last:
        raise InsufficientHistoryError(
            f"evaluating as of {day} needs outcomes up to {window_end}, "
            f"but the log ends on {last}; "
            f"choose an --as-of on or before {last - (window_end - day)}."
        )
    if fitted.training_end_ > day:
        log.warning(
            "the model was trained on data up to %s, after the as-of date %s: "
            "this evaluation is partly in-sample",
            fitted.training_end_,
            day,
        )
    frame = fitted.features(tx, day)
    labels = make_labels(
        tx, frame["customer_id"], day, int(fitted.horizon_days), int(fitted.gap_days)
    )
    frame["churned"] = labels["churned"].to_numpy()
    baseline = fitted.bgnbd_baseline_frame(frame)
    report = evaluation_report(fitted.classifier_, frame, baseline, fitted.feature_names_)
    metrics = {**report.metrics, "as_of": day.isoformat()}
    result = EvaluationResult(report.comparison, report.metrics, day.isoformat())
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        ev = report.evaluation
        y = ev["churned"].to_numpy()
        report.comparison.to_csv(folder / "metrics.csv")
        (folder / "metrics.json").write_text(pd.Series(metrics).to_json(indent=2))
        gains_table(y, ev["churn_probability"]).to_csv(folder / "gains.csv", index=False)
        reliability_table(y, ev["churn_probability"]).to_csv(
            folder / "reliability.csv", index=False
        )
        scores = {"churnguard": ev["churn_probability"]}
        scores |= {
            str(c).removeprefix("baseline_"): ev[c]
            for c in ev.columns
            if str(c).startswith("baseline_")
        }
        result.files = [
            plot_gains(y, scores, folder / "gains.png"),
            plot_reliability(
                y,
                {"calibrated": ev["churn_probability"], "raw LightGBM": ev["raw_probability"]},
                folder / "reliability.png",
            ),
        ]
        result.out_dir = folder
    if track:
        from churnguard.tracking import log_evaluation_run

        result.tracking = log_evaluation_run(
            report.comparison, report.metrics, day.isoformat(), result.out_dir
        )
    return result
