"""What the commands print: the top of the list, the run summary, errors, log lines."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer

__all__ = ["console", "fail", "print_list", "print_summary", "run", "setup_logging"]


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


def setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal, one timestamped line per event otherwise."""
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


def fail(exc: BaseException) -> None:
    """One paragraph on stderr and exit code 2 (``CHURNGUARD_DEBUG=1`` shows the traceback)."""
    if os.environ.get("CHURNGUARD_DEBUG"):
        raise exc
    typer.echo(f"churnguard: error: {exc}", err=True)
    raise typer.Exit(code=2)


def run(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a job; turn churnguard's own errors and OS errors into :func:`fail`.

    Anything else is a bug and keeps its traceback.
    """
    from churnguard.exceptions import ChurnguardError

    try:
        return func(*args, **kwargs)
    except (ChurnguardError, OSError) as exc:
        fail(exc)


def console() -> Any:
    """A rich console (160 columns when not on a terminal, so batch logs keep rows whole)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def print_list(frame: Any, title: str, n: int = 10) -> None:
    """The top ``n`` rows of a retention list as a table."""
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
    console().print(table)


def print_summary(summary: dict[str, Any]) -> None:
    """The run's headline figures: equity, value at risk, concentration, contacts."""
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
    console().print("\n".join(lines))
