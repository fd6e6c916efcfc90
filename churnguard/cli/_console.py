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


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors of batch jobs parse."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


#: Longest warning line shown (a library may put a whole table in one warning).
_MAX_WARNING = 240


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Show a Python warning as one log line of the churnguard logger, cut to length."""
    text = " ".join(str(message).split())
    # churnguard's data-quality warnings say what to fix: shown whole.
    if len(text) > _MAX_WARNING and category.__name__ != "DataQualityWarning":
        text = text[: _MAX_WARNING - 3] + "..."
    logging.getLogger("churnguard").warning("%s: %s", category.__name__, text)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """Rich lines on a terminal; one timestamped line (or JSON object) per event otherwise.

    Library warnings become one log line each; those a user cannot act on (MLflow's
    pickling notes, optimisers probing overflows, deprecations) are not shown.
    """
    import warnings

    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("churnguard")
    root.handlers.clear()
    if log_format == "json":
        handler: logging.Handler = _CurrentStderr()
        handler.setFormatter(_JsonFormatter())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # lifetimes and MLflow are chatty about things the user cannot act on.
    for noisy in ("mlflow", "alembic", "lifetimes", "py4j"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # Importing MLflow resets its loggers to its own level (INFO: "Creating initial
    # MLflow database tables..."), so the level above would not hold; its own
    # setting does. A value the user exported wins.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.showwarning = _one_line_warning
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", message=".*cloudpickle.*")


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


def print_list(frame: Any, title: str, n: int = 10, currency: str = "") -> None:
    """The top ``n`` rows of a retention list as a table, in plain English."""
    from rich.table import Table

    from churnguard.decision.labels import COLUMN_LABELS, label, money

    cols = [
        "priority",
        "customer_id",
        "churn_probability",
        "value_if_retained",
        "value_at_risk",
        "value_tier",
        "risk_band",
        "segment",
        "action",
        "reasons",
    ]
    cols = [c for c in cols if c in frame.columns]
    table = Table(title=title, show_lines=False)
    for col in cols:
        table.add_column(
            COLUMN_LABELS.get(col, col),
            overflow="fold",
            max_width=48 if col in ("reasons", "action") else None,
        )
    for row in frame.head(n).to_dict(orient="records"):
        cells = {
            "priority": str(row.get("priority")),
            "customer_id": str(row.get("customer_id")),
            "churn_probability": f"{row.get('churn_probability', float('nan')):.0%}",
            "value_if_retained": money(row.get("value_if_retained", float("nan")), currency),
            "value_at_risk": money(row.get("value_at_risk", float("nan")), currency),
            "value_tier": label(row.get("value_tier")),
            "risk_band": label(row.get("risk_band")),
            "segment": label(row.get("segment")),
            "action": str(row.get("action")),
            "reasons": str(row.get("reasons")),
        }
        table.add_row(*[cells[c] for c in cols])
    console().print(table)


def print_summary(summary: dict[str, Any], currency: str = "") -> None:
    """The run's headline figures: equity, value at risk, concentration, contacts."""
    from churnguard.decision.labels import money

    conc = summary.get("concentration", {})
    lines = [
        f"as of {summary.get('as_of')}: {summary['customers']:,} customers, "
        f"customer equity {money(summary['customer_equity'], currency)}, "
        f"value at risk {money(summary['value_at_risk'], currency)}",
    ]
    if conc:
        names = {"historical_revenue": "of revenue so far", "predicted_clv": "of expected value"}
        shares = ", ".join(
            f"{v:.0%} {names.get(k.removeprefix('top_share_'), k.removeprefix('top_share_'))}"
            for k, v in conc.items()
            if k.startswith("top_share_")
        )
        if shares:
            lines.append(f"the top 20% of customers hold {shares}")
    contacts = summary.get("contacts")
    if contacts:
        lines.append(
            f"contact {contacts['n_contacted']:,} customers: spend "
            f"{money(contacts['spend'], currency)}, expected value retained "
            f"{money(contacts['expected_value_retained'], currency)}"
        )
    decision = summary.get("decision")
    if decision:
        lines.append(
            f"tiers, risk bands and RFM scores measured against the {decision['reference']}; "
            f"risk bands {decision['risk_bands']}; list ordered by {decision['ordered_by']}"
        )
    console().print("\n".join(lines))
