"""Options shared by several commands: the log's columns, dates and lists of numbers.

The nine column options are declared once and added to every command that reads a log
by :func:`column_options`, which hands the command one ``columns: ColumnMap`` (as
sqlfluff shares its common options between commands).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

__all__ = [
    "TransactionsOpt",
    "column_options",
    "parse_date",
    "parse_dates",
    "parse_days",
]

_F = TypeVar("_F", bound=Callable[..., Any])

TransactionsOpt = Annotated[
    Path, typer.Option("--transactions", "-t", help="Transaction log (.csv or .parquet).")
]

#: (parameter, type, default, option, help) of every column option, in --help order.
_COLUMN_OPTIONS: tuple[tuple[str, Any, Any, str, str], ...] = (
    ("customer_col", str, "customer_id", "--customer-col", "Column with the customer id."),
    ("date_col", str, "date", "--date-col", "Column with the transaction date."),
    ("amount_col", str, "amount", "--amount-col", "Column with the amount."),
    (
        "date_format",
        str | None,
        None,
        "--date-format",
        "strftime format of the dates, e.g. %Y%m%d (default: inferred).",
    ),
    ("margin_col", str | None, None, "--margin-col", "Optional margin column."),
    ("cost_col", str | None, None, "--cost-col", "Optional cost column (margin = amount - cost)."),
    ("quantity_col", str | None, None, "--quantity-col", "Optional quantity column."),
    ("product_col", str | None, None, "--product-col", "Optional product/category column."),
    ("channel_col", str | None, None, "--channel-col", "Optional sales channel column."),
    (
        "encoding",
        str | None,
        None,
        "--encoding",
        "Text encoding of a CSV log, e.g. latin-1 (default: UTF-8).",
    ),
)


def _column_map(values: dict[str, Any]) -> Any:
    from churnguard.data import ColumnMap

    optional = {
        name.removesuffix("_col"): value
        for name, value in values.items()
        if name.endswith("_col") and name not in ("customer_col", "date_col", "amount_col")
        and value
    }  # fmt: skip
    return ColumnMap(
        customer=values["customer_col"],
        date=values["date_col"],
        amount=values["amount_col"],
        date_format=values["date_format"],
        optional=optional,
        encoding=values["encoding"],
    )


def column_options(func: _F) -> _F:
    """Give a command the shared column options; it receives them as ``columns``.

    The command declares a ``columns`` parameter (not shown on the command line); the
    options are added to its signature for typer and packed into a
    :class:`~churnguard.data.ColumnMap` before the command runs.
    """
    sig = inspect.signature(func)
    # The command's annotations are text (postponed evaluation); resolve them here, in
    # the command's own module, so typer reads the real types from the wrapper.
    resolved = typing.get_type_hints(func, include_extras=True)
    kept = [
        p.replace(annotation=resolved.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.name != "columns"
    ]
    added = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=default,
            annotation=Annotated[kind, typer.Option(option, help=text)],
        )
        for name, kind, default, option, text in _COLUMN_OPTIONS
    ]
    defaults = {name: default for name, _, default, *_ in _COLUMN_OPTIONS}

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Called from the command line, typer passes every option; called from Python
        # (the demo calls train and score), the defaults apply.
        values = {name: kwargs.pop(name, default) for name, default in defaults.items()}
        return func(*args, columns=_column_map(values), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=kept + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + added} | {
        "return": resolved.get("return", None)
    }
    return wrapper  # type: ignore[return-value]


def parse_date(text: str | None, option: str) -> str | None:
    """An ISO date (YYYY-MM-DD) of an option, or a usage error naming the option."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date; expected YYYY-MM-DD, e.g. 1997-09-30 (a month or day "
            "first, as in 01/02/1998, is ambiguous and refused).",
            param_hint=option,
        ) from None


def parse_dates(text: str, option: str) -> list[str]:
    """Comma-separated ISO dates of an option."""
    out = [parse_date(part, option) for part in text.split(",") if part.strip()]
    if not out:
        raise typer.BadParameter("give at least one date, e.g. 1997-09-30.", param_hint=option)
    return [d for d in out if d is not None]


def parse_days(text: str, option: str) -> list[int]:
    """Comma-separated positive numbers of days of an option."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a list of whole numbers of days, e.g. 91,182.", param_hint=option
        ) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("give positive numbers of days, e.g. 91,182.", param_hint=option)
    return values
