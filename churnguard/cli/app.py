"""The ``churnguard`` commands: each parses its options and calls one public function.

Every command exits 0 on success and 2 with a one-paragraph message when the input is
wrong (churnguard's own errors and OS errors); anything else is a bug and shows its
traceback. ``CHURNGUARD_DEBUG=1`` shows tracebacks for input errors too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from churnguard import __version__
from churnguard.cli._console import console, print_list, print_summary, run, setup_logging
from churnguard.cli._options import (
    TransactionsOpt,
    column_options,
    parse_date,
    parse_dates,
    parse_days,
)

__all__ = ["app"]

# Flags take no value; typer's rich help would still print a "<bool>" type beside them.
_display_type = TyperOption.display_type_rich


def _flag_without_type(self: TyperOption, ctx: Any) -> str | None:
    return None if getattr(self, "is_flag", False) else _display_type(self, ctx)


TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]

app = typer.Typer(
    name="churnguard",
    help="Which customers are you about to lose, what is each worth, and who to call first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MlflowOpt = Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")]
DriftOpt = Annotated[
    bool,
    typer.Option(
        "--drift-correction/--no-drift-correction",
        help="Correct churn and CLV for a dropout change seen in the last 28 days "
        "(else only warn).",
    ),
]


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    log_format: Annotated[
        str, typer.Option(help="Log lines as text or json (one object per line).")
    ] = "text",
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            help="Write CSV cells exactly as they are: no leading ' on cells a spreadsheet "
            "would run as a formula (=, +, -, @). Only for CSVs read by programs.",
        ),
    ] = False,
) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json.", param_hint="--log-format")
    setup_logging(verbose, log_format)
    if raw_csv:
        from churnguard.data.io import formulas_escaped

        # Undone when the command ends (tests run many commands in one process).
        ctx.with_resource(formulas_escaped(False))
    if version:
        typer.echo(f"churnguard {__version__}")
        raise typer.Exit()


@app.command()
@column_options
def train(
    transactions: TransactionsOpt,
    columns: Any = None,
    horizon_days: Annotated[
        int, typer.Option(help="Churned = no purchase within this many days.")
    ] = 90,
    model_dir: Annotated[Path, typer.Option(help="Where the model bundle is written.")] = Path(
        "models/churnguard"
    ),
    value_model: Annotated[str, typer.Option(help="auto, bgnbd, pareto or mbgnbd.")] = "auto",
    max_snapshots: Annotated[int, typer.Option(help="Most recent training snapshots used.")] = 24,
    snapshot_step_days: Annotated[int, typer.Option(help="Days between training snapshots.")] = 14,
    drift_correction: DriftOpt = True,
    mlflow: MlflowOpt = True,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Register the model in MLflow under this name (default: not registered).",
        ),
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="MLflow alias for the new version, e.g. champion (registers it)."),
    ] = None,
) -> None:
    """Train on every transaction of a log and save the model."""
    from churnguard.pipeline import train_model

    result = run(
        train_model,
        transactions,
        model_dir,
        columns=columns,
        horizon_days=horizon_days,
        track=mlflow,
        register_as=register,
        alias=alias,
        value_model=value_model,
        max_snapshots=max_snapshots,
        snapshot_step_days=snapshot_step_days,
        drift_correction=drift_correction,
    )
    m = result.metrics
    line = f"model saved to {result.model_dir} ({result.seconds:.0f} s)"
    if m:
        plan = getattr(result.model, "plan_", None)
        # A log too short for a full horizon between learning and evaluation snapshots is
        # validated on adjacent ones: the figures flatter the model and must say so.
        what = (
            "out-of-time validation"
            if plan is None or getattr(plan, "honest", True)
            else "validation on adjacent snapshots (optimistic: closer than the horizon)"
        )
        line += (
            f"; {what}: ROC-AUC {m['roc_auc']:.3f} (best baseline "
            f"{m['best_baseline_roc_auc']:.3f}), PR-AUC {m['pr_auc']:.3f}, Brier "
            f"{m['brier']:.3f}, top-decile lift {m['top_decile_lift']:.2f}, ECE {m['ece']:.3f}"
        )
    typer.echo(line)
    for note in getattr(result.model.report_, "notes", []):
        typer.echo(note)
    if result.tracking:
        typer.echo(
            f"MLflow run {result.tracking.get('run_id')} in {result.tracking.get('tracking_uri')}"
            + (f"; model {result.tracking['model_uri']}" if "model_uri" in result.tracking else "")
        )
    if result.quarantined:
        typer.echo(f"{result.quarantined} unusable rows set aside in {result.quarantine_file}")


@app.command()
@column_options
def score(
    transactions: TransactionsOpt,
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model directory or MLflow URI (models:/churnguard@champion)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Retention list to write (.csv or .parquet).")
    ],
    columns: Any = None,
    as_of: Annotated[
        str | None, typer.Option(help="Scoring date YYYY-MM-DD (default: last date in the log).")
    ] = None,
    playbook: Annotated[
        Path | None, typer.Option(help="Playbook TOML (actions, costs, save rates).")
    ] = None,
    segments: Annotated[Path | None, typer.Option(help="RFM segment rules TOML.")] = None,
    capacity: Annotated[
        int | None, typer.Option(help="Contact at most this many customers.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Spend at most this much on contacts.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")] = None,
    top: Annotated[int, typer.Option(help="Rows of the list to print.")] = 10,
    partitions: Annotated[
        int | None,
        typer.Option(help="Score a large Parquet log in this many customer partitions."),
    ] = None,
    max_memory: Annotated[
        float | None,
        typer.Option(help="Memory budget in GB; picks the partition count (Parquet logs)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Partitions scored at once (Parquet logs; default: the CPU count, at most "
            "4, from 1M rows on)."
        ),
    ] = None,
    currency: Annotated[
        str, typer.Option(help="Currency symbol or code of money amounts, e.g. $ or EUR.")
    ] = "",
    recompute_reference: Annotated[
        bool,
        typer.Option(
            "--recompute-reference",
            help="Measure tiers, risk bands and RFM scores on the scored customers, not on "
            "the model's training base.",
        ),
    ] = False,
) -> None:
    """Score customers as of a date and write the prioritised retention list."""
    from churnguard.pipeline import score_transactions

    result = run(
        score_transactions,
        transactions,
        model,
        out=out,
        as_of=parse_date(as_of, "--as-of"),
        columns=columns,
        playbook=playbook,
        segment_rules=segments,
        capacity=capacity,
        budget=budget,
        report=report,
        top=top,
        partitions=partitions,
        max_memory_gb=max_memory,
        workers=workers,
        currency=currency,
        recompute_reference=recompute_reference,
    )
    print_list(
        result.top, f"retention list (top {top} of {result.customers:,})", top, currency=currency
    )
    print_summary(result.summary, currency=currency)
    how = f"{result.partitions} partitions, " if result.mode == "partitioned" else ""
    typer.echo(f"retention list written to {result.out} ({how}{result.seconds:.1f} s)")
    if result.quarantined:
        typer.echo(f"{result.quarantined} unusable rows set aside in {result.quarantine_file}")
    if result.report is not None:
        typer.echo(f"report written to {result.report}")


@app.command()
@column_options
def features(
    transactions: TransactionsOpt,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Feature table to write (.csv or .parquet).")
    ],
    columns: Any = None,
    as_of: Annotated[
        str | None, typer.Option(help="Cutoff date YYYY-MM-DD (default: last date).")
    ] = None,
    time_unit: Annotated[str, typer.Option(help="Unit of recency and T: D or W.")] = "D",
) -> None:
    """Write point-in-time customer features as of a date."""
    from churnguard.features import build_features

    result = run(
        build_features,
        transactions,
        out,
        as_of=parse_date(as_of, "--as-of"),
        time_unit=time_unit,
        columns=columns,
    )
    table = result.features
    typer.echo(f"{len(table):,} customers x {table.shape[1] - 1} features written to {result.out}")
    if result.quarantine_file:
        typer.echo(f"unusable rows set aside in {result.quarantine_file}")


@app.command()
@column_options
def evaluate(
    transactions: TransactionsOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory or MLflow URI.")],
    as_of: Annotated[str, typer.Option(help="Scoring date YYYY-MM-DD; outcomes follow it.")],
    columns: Any = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Folder for metrics, tables and plots.")
    ] = None,
    mlflow: MlflowOpt = True,
) -> None:
    """Score as of a date and compare with the actual outcomes that followed."""
    from churnguard.pipeline import evaluate_model

    day = parse_date(as_of, "--as-of")
    folder = out_dir or Path(f"evaluation-{day}")
    result = run(
        evaluate_model, transactions, model, day, columns=columns, out_dir=folder, track=mlflow
    )
    shown = ["roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece", "base_rate", "n"]
    table = result.comparison[[c for c in shown if c in result.comparison]]
    if result.in_sample:
        console().print(
            f"evaluation as of {result.as_of}, partly in-sample: the model was trained on data "
            f"up to {result.training_end}, so these figures are optimistic (train on the log up "
            f"to {result.as_of} for an out-of-time check, or run 'churnguard backtest')"
        )
    else:
        console().print(f"out-of-time evaluation as of {result.as_of}")
    console().print(table.round(4).to_string())
    typer.echo(f"metrics, tables and plots written to {result.out_dir}")
    if result.tracking:
        typer.echo(f"MLflow run {result.tracking['run_id']} in {result.tracking['tracking_uri']}")


@app.command()
@column_options
def backtest(
    transactions: TransactionsOpt,
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Comma-separated as-of dates, e.g. 1997-09-30,1997-12-31."),
    ],
    columns: Any = None,
    horizon_days: Annotated[
        str, typer.Option("--horizon-days", help="Churn horizon(s) in days, e.g. 91 or 91,182.")
    ] = "90",
    out_dir: Annotated[
        Path, typer.Option(help="Folder for the per-run table, the aggregate and the plots.")
    ] = Path("backtest"),
    value_model: Annotated[str, typer.Option(help="auto, bgnbd, pareto or mbgnbd.")] = "auto",
    drift_correction: DriftOpt = True,
    mlflow: MlflowOpt = True,
) -> None:
    """Train as of each date on the history before it, score, and compare with what followed."""
    from churnguard.pipeline import run_backtest

    dates = parse_dates(as_of, "--as-of")
    horizons = parse_days(horizon_days, "--horizon-days")

    def progress(one: Any) -> None:
        row = one.churn.loc["churnguard"]
        typer.echo(
            f"as of {one.as_of}, {one.horizon_days} days: churn model {one.churn_model}, "
            f"ROC-AUC {row['roc_auc']:.3f}, ECE {row['ece']:.3f} ({one.seconds:.0f} s)",
            err=True,
        )

    result = run(
        run_backtest,
        transactions,
        dates,
        horizons,
        columns=columns,
        out_dir=out_dir,
        track=mlflow,
        progress=progress,
        value_model=value_model,
        drift_correction=drift_correction,
    )
    shown = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_lift"]
    churn = result.table[result.table["kind"] == "churn"]
    value = result.table[result.table["kind"] == "value"]
    con = console()
    con.print("churn: model against the baselines, every run")
    con.print(churn[["as_of", "horizon_days", "score", *shown]].round(4).to_string(index=False))
    vshown = ["gini", "spearman", "top_decile_share", "top20_share", "decile_mape",
              "aggregate_error"]  # fmt: skip
    con.print("value (spend in the window): model against the baselines, every run")
    con.print(value[["as_of", "horizon_days", "score", *vshown]].round(4).to_string(index=False))
    # One table per kind: each keeps only its own metrics, so neither wraps.
    for kind, part in result.aggregate.groupby(level="kind", sort=False):
        con.print(f"{kind}: mean over runs")
        con.print(part.droplevel("kind").dropna(axis=1, how="all").round(4).to_string())
    typer.echo(f"tables and plots written to {result.out_dir}")
    if result.tracking:
        typer.echo(f"MLflow run {result.tracking['run_id']} in {result.tracking['tracking_uri']}")


@app.command()
def report(
    scores: Annotated[Path, typer.Option("--scores", "-s", help="Retention list from 'score'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    outcomes: Annotated[
        Path | None,
        typer.Option(help="Optional table of customer_id, churned (1/0) to add lift/calibration."),
    ] = None,
    top: Annotated[int, typer.Option(help="Rows of the contact list shown.")] = 25,
    currency: Annotated[
        str, typer.Option(help="Currency symbol or code of money amounts, e.g. $ or EUR.")
    ] = "",
) -> None:
    """Write a self-contained HTML report (plots and contact list) from a retention list."""
    from churnguard.report import report_from_list

    path = run(report_from_list, scores, out, outcomes=outcomes, top_n=top, currency=currency)
    typer.echo(f"report written to {path}")


@app.command("init-config")
def init_config(
    out_dir: Annotated[Path, typer.Option(help="Folder to write the editable files to.")] = Path(
        "churnguard-config"
    ),
) -> None:
    """Copy the default playbook and segment rules into a folder to edit."""
    from churnguard.config import copy_defaults

    for path in run(copy_defaults, out_dir):
        typer.echo(f"wrote {path}")


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the demo's data, list and report.")
    ] = Path("churnguard-demo"),
    model_dir: Annotated[Path, typer.Option(help="Where the model bundle is written.")] = Path(
        "models/churnguard"
    ),
    sample: Annotated[
        bool, typer.Option(help="Use the 2,357-customer CDNOW sample (faster).")
    ] = False,
    mlflow: MlflowOpt = True,
    currency: Annotated[str, typer.Option(help="Currency of the amounts (CDNOW: $).")] = "$",
    alias: Annotated[
        str | None,
        typer.Option(help="Register the demo model and point this alias at it (default: no)."),
    ] = None,
) -> None:
    """Train and score on the CDNOW log shipped with lifetimes, end to end.

    The list is a 500-contact campaign (as `score --capacity 500`): contacted customers first.
    """
    from churnguard.data import write_cdnow

    workdir.mkdir(parents=True, exist_ok=True)
    log_path = run(write_cdnow, workdir / "cdnow_transactions.csv", sample=sample)
    typer.echo(f"CDNOW transaction log written to {log_path}")
    train(transactions=log_path, model_dir=model_dir, horizon_days=90, mlflow=mlflow, alias=alias)
    score(
        transactions=log_path,
        model=str(model_dir),
        out=workdir / "retention_list.csv",
        report=workdir / "report.html",
        capacity=500,
        currency=currency,
    )
