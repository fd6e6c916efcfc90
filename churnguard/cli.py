"""The ``churnguard`` command line: a thin layer over :mod:`churnguard.pipeline`.

Every command exits 0 on success and 2 with a one-paragraph message (never a
traceback) when the input is wrong; set ``CHURNGUARD_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from churnguard import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="churnguard",
    help="Which customers are you about to lose, what is each worth, and who to call first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("churnguard")

TransactionsOpt = Annotated[
    Path, typer.Option("--transactions", "-t", help="Transaction log (.csv or .parquet).")
]
CustomerCol = Annotated[str, typer.Option("--customer-col", help="Column with the customer id.")]
DateCol = Annotated[str, typer.Option("--date-col", help="Column with the transaction date.")]
AmountCol = Annotated[str, typer.Option("--amount-col", help="Column with the amount.")]
DateFormat = Annotated[
    str | None,
    typer.Option(
        "--date-format", help="strftime format of the dates, e.g. %Y%m%d (default: inferred)."
    ),
]
MarginCol = Annotated[str | None, typer.Option("--margin-col", help="Optional margin column.")]
CostCol = Annotated[
    str | None, typer.Option("--cost-col", help="Optional cost column (margin = amount - cost).")
]
QuantityCol = Annotated[
    str | None, typer.Option("--quantity-col", help="Optional quantity column.")
]
ProductCol = Annotated[
    str | None, typer.Option("--product-col", help="Optional product/category column.")
]
ChannelCol = Annotated[
    str | None, typer.Option("--channel-col", help="Optional sales channel column.")
]


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines for batch jobs, written to whatever ``sys.stderr`` is at the time.

    Binding the stream once would keep writing to a stream a test runner or an
    embedding application has since closed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("churnguard")
    root.handlers.clear()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # lifetimes and MLflow are chatty about things the user cannot act on.
    for noisy in ("mlflow", "alembic", "lifetimes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _columns(options: dict[str, Any]) -> Any:
    """The ColumnMap of a command's ``--*-col`` and ``--date-format`` options."""
    from churnguard.data import ColumnMap

    required = ("customer_col", "date_col", "amount_col")
    optional = {
        name.removesuffix("_col"): value
        for name, value in options.items()
        if name.endswith("_col") and name not in required and value
    }
    return ColumnMap(
        customer=options["customer_col"],
        date=options["date_col"],
        amount=options["amount_col"],
        date_format=options.get("date_format"),
        optional=optional,
    )


def _fail(exc: BaseException) -> None:
    if os.environ.get("CHURNGUARD_DEBUG"):
        raise exc
    message = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0])
    typer.echo(f"churnguard: error: {message}", err=True)
    raise typer.Exit(code=2)


def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    from churnguard.exceptions import ChurnguardError

    try:
        return func(*args, **kwargs)
    except (ChurnguardError, ValueError, TypeError, KeyError, OSError) as exc:
        _fail(exc)


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _print_table(frame: Any, title: str, n: int = 10) -> None:
    from rich.table import Table

    cols = [
        "priority",
        "customer_id",
        "churn_probability",
        "predicted_clv",
        "value_at_risk",
        "value_tier",
        "segment",
        "action",
        "reasons",
    ]
    table = Table(title=title, show_lines=False)
    for col in cols:
        table.add_column(
            col, overflow="fold", max_width=48 if col in ("reasons", "action") else None
        )
    for row in frame.head(n).itertuples(index=False):
        d = row._asdict()
        table.add_row(
            str(d["priority"]),
            str(d["customer_id"]),
            f"{d['churn_probability']:.2f}",
            f"{d['predicted_clv']:,.0f}",
            f"{d['value_at_risk']:,.0f}",
            d["value_tier"],
            d["segment"],
            d["action"],
            d["reasons"],
        )
    _console().print(table)


def _print_summary(summary: dict[str, Any]) -> None:
    conc = summary.get("concentration", {})
    lines = [
        f"as of {summary.get('as_of')}: {summary['customers']:,} customers, "
        f"customer equity {summary['customer_equity']:,.0f}, "
        f"value at risk {summary['value_at_risk']:,.0f}",
    ]
    if conc:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in conc.items() if k.startswith("top_share_"))
        if shares:
            lines.append(f"top 20% of customers hold: {shares}")
    contacts = summary.get("contacts")
    if contacts:
        lines.append(
            f"contact {contacts['n_contacted']:,} customers: spend {contacts['spend']:,.0f}, "
            f"expected value retained {contacts['expected_value_retained']:,.0f}"
        )
    _console().print("\n".join(lines))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    _setup_logging(verbose)
    if version:
        typer.echo(f"churnguard {__version__}")
        raise typer.Exit()


@app.command()
def train(
    transactions: TransactionsOpt,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    date_format: DateFormat = None,
    margin_col: MarginCol = None,
    cost_col: CostCol = None,
    quantity_col: QuantityCol = None,
    product_col: ProductCol = None,
    channel_col: ChannelCol = None,
    horizon_days: Annotated[
        int, typer.Option(help="Churned = no purchase within this many days.")
    ] = 90,
    model_dir: Annotated[Path, typer.Option(help="Where the model bundle is written.")] = Path(
        "models/churnguard"
    ),
    value_model: Annotated[str, typer.Option(help="auto, bgnbd, pareto or mbgnbd.")] = "auto",
    max_snapshots: Annotated[int, typer.Option(help="Most recent training snapshots used.")] = 24,
    snapshot_step_days: Annotated[int, typer.Option(help="Days between training snapshots.")] = 14,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")
    ] = True,
    register_name: Annotated[
        str, typer.Option(help="MLflow registered model name.")
    ] = "churnguard",
    alias: Annotated[
        str | None, typer.Option(help="MLflow alias for the new version, e.g. champion.")
    ] = None,
) -> None:
    """Train on every transaction of a log and save the model."""
    from churnguard.pipeline import train_model

    cols = _columns(locals())
    result = _run(
        train_model,
        transactions,
        model_dir,
        columns=cols,
        horizon_days=horizon_days,
        track=mlflow,
        register_as=register_name,
        alias=alias,
        value_model=value_model,
        max_snapshots=max_snapshots,
        snapshot_step_days=snapshot_step_days,
    )
    m = result.metrics
    typer.echo(
        f"model saved to {result.model_dir} ({result.seconds:.0f} s); out-of-time validation: "
        f"ROC-AUC {m['roc_auc']:.3f} (best baseline {m['best_baseline_roc_auc']:.3f}), "
        f"PR-AUC {m['pr_auc']:.3f}, Brier {m['brier']:.3f}, "
        f"top-decile lift {m['top_decile_lift']:.2f}, "
        f"ECE {m['ece']:.3f}"
    )
    if result.tracking:
        typer.echo(
            f"MLflow run {result.tracking.get('run_id')} in {result.tracking.get('tracking_uri')}"
            + (f"; model {result.tracking['model_uri']}" if "model_uri" in result.tracking else "")
        )
    if result.quarantined:
        typer.echo(f"{result.quarantined} unusable rows set aside in {result.quarantine_file}")


@app.command()
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
    as_of: Annotated[
        str | None, typer.Option(help="Scoring date YYYY-MM-DD (default: last date in the log).")
    ] = None,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    date_format: DateFormat = None,
    margin_col: MarginCol = None,
    cost_col: CostCol = None,
    quantity_col: QuantityCol = None,
    product_col: ProductCol = None,
    channel_col: ChannelCol = None,
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
) -> None:
    """Score customers as of a date and write the prioritised retention list."""
    from churnguard.pipeline import score_transactions

    if partitions is not None or max_memory is not None or workers is not None:
        _score_partitioned(
            transactions,
            model,
            out,
            as_of,
            (partitions, max_memory, workers),
            _columns(locals()),
            playbook,
            segments,
            capacity,
            budget,
            top,
        )
        return
    cols = _columns(locals())
    result = _run(
        score_transactions,
        transactions,
        model,
        out=out,
        as_of=as_of,
        columns=cols,
        playbook=playbook,
        segment_rules=segments,
        capacity=capacity,
        budget=budget,
    )
    _print_table(result.retention, f"retention list (top {top} of {len(result.retention):,})", top)
    _print_summary(result.summary)
    typer.echo(f"retention list written to {result.out} ({result.seconds:.1f} s)")
    if result.quarantined:
        typer.echo(f"{result.quarantined} unusable rows set aside in {result.quarantine_file}")
    if report is not None:
        from churnguard.scoring.report import build_report

        path = _run(build_report, result.retention, report, summary=_flat(result.summary))
        typer.echo(f"report written to {path}")


def _score_partitioned(
    transactions: Path,
    model: str,
    out: Path,
    as_of: str | None,
    sizing: tuple[int | None, float | None, int | None],
    cols: Any,
    playbook: Path | None,
    segments: Path | None,
    capacity: int | None,
    budget: float | None,
    top: int,
) -> None:
    """Bounded-memory scoring of a large Parquet log (see churnguard.scoring.batch)."""
    from churnguard.pipeline import resolve_model
    from churnguard.scoring.batch import score_parquet_partitioned

    partitions, max_memory, workers = sizing
    result = _run(
        score_parquet_partitioned,
        transactions,
        _run(resolve_model, model),
        out,
        as_of=as_of,
        partitions=partitions,
        max_memory_gb=max_memory,
        workers=workers,
        columns=cols,
        playbook=playbook,
        segment_rules=segments,
        capacity=capacity,
        budget=budget,
        top=top,
    )
    _print_table(result.top, f"retention list (top {top} of {result.customers:,})", top)
    _print_summary(result.summary)
    typer.echo(
        f"retention list written to {result.out} ({result.partitions} partitions, "
        f"{result.seconds:.1f} s)"
    )
    if result.quarantined:
        typer.echo(f"{result.quarantined} unusable rows set aside in {result.quarantine_file}")


def _flat(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not isinstance(v, dict)}


@app.command()
def features(
    transactions: TransactionsOpt,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Feature table to write (.csv or .parquet).")
    ],
    as_of: Annotated[
        str | None, typer.Option(help="Cutoff date YYYY-MM-DD (default: last date).")
    ] = None,
    time_unit: Annotated[str, typer.Option(help="Unit of recency and T: D or W.")] = "D",
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    date_format: DateFormat = None,
    margin_col: MarginCol = None,
    cost_col: CostCol = None,
    quantity_col: QuantityCol = None,
    product_col: ProductCol = None,
    channel_col: ChannelCol = None,
) -> None:
    """Write point-in-time customer features as of a date."""
    from churnguard.data import load_transactions, write_table
    from churnguard.features import FeatureBuilder
    from churnguard.pipeline import _write_quarantine

    cols = _columns(locals())

    def job() -> tuple[Any, Any]:
        loaded = load_transactions(transactions, cols)
        table = FeatureBuilder(time_unit=time_unit).fit_transform(loaded.transactions, cutoff=as_of)
        write_table(table, out)
        return table, _write_quarantine(loaded, out)

    table, qfile = _run(job)
    typer.echo(f"{len(table):,} customers x {table.shape[1] - 1} features written to {out}")
    if qfile:
        typer.echo(f"unusable rows set aside in {qfile}")


@app.command()
def evaluate(
    transactions: TransactionsOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory or MLflow URI.")],
    as_of: Annotated[str, typer.Option(help="Scoring date YYYY-MM-DD; outcomes follow it.")],
    out_dir: Annotated[
        Path | None, typer.Option(help="Folder for metrics, tables and plots.")
    ] = None,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    date_format: DateFormat = None,
    margin_col: MarginCol = None,
    cost_col: CostCol = None,
    quantity_col: QuantityCol = None,
    product_col: ProductCol = None,
    channel_col: ChannelCol = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Score as of a date and compare with the actual outcomes that followed."""
    from churnguard.pipeline import evaluate_model

    cols = _columns(locals())
    folder = out_dir or Path(f"evaluation-{as_of}")
    result = _run(
        evaluate_model, transactions, model, as_of, columns=cols, out_dir=folder, track=mlflow
    )
    shown = ["roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "ece", "base_rate", "n"]
    table = result.comparison[[c for c in shown if c in result.comparison]]
    _console().print(f"out-of-time evaluation as of {result.as_of}")
    _console().print(table.round(4).to_string())
    typer.echo(f"metrics, tables and plots written to {result.out_dir}")
    if result.tracking:
        typer.echo(f"MLflow run {result.tracking['run_id']} in {result.tracking['tracking_uri']}")


def _dates(text: str, option: str) -> list[str]:
    """Comma-separated dates of an option, checked (YYYY-MM-DD)."""
    import datetime as dt

    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        try:
            out.append(dt.date.fromisoformat(part).isoformat())
        except ValueError:
            raise typer.BadParameter(
                f"{part!r} is not a date; expected YYYY-MM-DD, e.g. 1997-09-30,1997-12-31.",
                param_hint=option,
            ) from None
    if not out:
        raise typer.BadParameter("give at least one date, e.g. 1997-09-30.", param_hint=option)
    return out


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a list of whole numbers of days, e.g. 91,182.", param_hint=option
        ) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("give positive numbers of days, e.g. 91,182.", param_hint=option)
    return values


@app.command()
def backtest(
    transactions: TransactionsOpt,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Comma-separated as-of dates, e.g. 1997-09-30,1997-12-31.")
    ],
    horizon_days: Annotated[
        str, typer.Option("--horizon-days", help="Churn horizon(s) in days, e.g. 91 or 91,182.")
    ] = "90",
    out_dir: Annotated[
        Path, typer.Option(help="Folder for the per-run table, the aggregate and the plots.")
    ] = Path("backtest"),
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    date_format: DateFormat = None,
    margin_col: MarginCol = None,
    cost_col: CostCol = None,
    quantity_col: QuantityCol = None,
    product_col: ProductCol = None,
    channel_col: ChannelCol = None,
    value_model: Annotated[str, typer.Option(help="auto, bgnbd, pareto or mbgnbd.")] = "auto",
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Train as of each date on the history before it, score, and compare with what followed."""
    from churnguard.pipeline import run_backtest

    dates = _dates(as_of, "--as-of")
    horizons = _ints(horizon_days, "--horizon-days")
    cols = _columns(locals())

    def progress(run: Any) -> None:
        row = run.churn.loc["churnguard"]
        typer.echo(
            f"as of {run.as_of}, {run.horizon_days} days: churn model {run.churn_model}, "
            f"ROC-AUC {row['roc_auc']:.3f}, ECE {row['ece']:.3f} ({run.seconds:.0f} s)",
            err=True,
        )

    result = _run(
        run_backtest,
        transactions,
        dates,
        horizons,
        columns=cols,
        out_dir=out_dir,
        track=mlflow,
        progress=progress,
        value_model=value_model,
    )
    shown = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_lift"]
    churn = result.table[result.table["kind"] == "churn"]
    value = result.table[result.table["kind"] == "value"]
    con = _console()
    con.print("churn: model against the baselines, every run")
    con.print(churn[["as_of", "horizon_days", "score", *shown]].round(4).to_string(index=False))
    vshown = ["gini", "spearman", "top_decile_share", "top20_share", "decile_mape",
              "aggregate_error"]  # fmt: skip
    con.print("value (spend in the window): model against the baselines, every run")
    con.print(value[["as_of", "horizon_days", "score", *vshown]].round(4).to_string(index=False))
    con.print("mean over runs")
    con.print(result.aggregate.round(4).to_string())
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
) -> None:
    """Write a self-contained HTML report (plots and contact list) from a retention list."""
    from churnguard.data import read_table
    from churnguard.scoring.report import build_report

    def job() -> Path:
        frame = read_table(scores, string_columns=("customer_id",))
        labels = None
        if outcomes is not None:
            table = read_table(outcomes, string_columns=("customer_id",))
            labels = table.set_index("customer_id")["churned"]
        return build_report(frame, out, outcomes=labels, top_n=top)

    path = _run(job)
    typer.echo(f"report written to {path}")


@app.command("init-config")
def init_config(
    out_dir: Annotated[Path, typer.Option(help="Folder to write the editable files to.")] = Path(
        "churnguard-config"
    ),
) -> None:
    """Copy the default playbook and segment rules into a folder to edit."""
    from importlib import resources

    def job() -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in ("playbook.toml", "segments.toml"):
            target = out_dir / name
            if target.exists():
                raise FileExistsError(f"{target} already exists; remove it or choose --out-dir.")
            text = resources.files("churnguard.config").joinpath(name).read_text()
            target.write_text(text)
            written.append(target)
        return written

    for path in _run(job):
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
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the run to MLflow.")
    ] = True,
) -> None:
    """Train and score on the CDNOW log shipped with lifetimes, end to end."""
    from churnguard.data import write_cdnow

    workdir.mkdir(parents=True, exist_ok=True)
    log_path = _run(write_cdnow, workdir / "cdnow_transactions.csv", sample=sample)
    typer.echo(f"CDNOW transaction log written to {log_path}")
    train(
        transactions=log_path, model_dir=model_dir, horizon_days=90, mlflow=mlflow, alias="champion"
    )
    score(
        transactions=log_path,
        model=str(model_dir),
        out=workdir / "retention_list.csv",
        report=workdir / "report.html",
        capacity=500,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
