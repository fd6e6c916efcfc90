"""Which columns of a log are the customer, the date and the amount (and optional ones).

:class:`ColumnMap` names them; :func:`resolve_columns` matches it against a file's
header and says, naming the flag to use, when a column is missing. The defaults of the
data rules (:data:`DEFAULT_DATE_FLOOR`, :data:`DEFAULT_MAX_AMOUNT`) live here too so
that every reader of a log (in memory, partitioned, Spark) applies the same ones.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields

from churnguard.exceptions import InputDataError

__all__ = [
    "DEFAULT_DATE_FLOOR",
    "DEFAULT_MAX_AMOUNT",
    "OPTIONAL_COLUMNS",
    "OPTIONAL_NUMERIC",
    "ColumnMap",
    "resolve_columns",
]

#: Earlier dates are quarantined (``date before <floor>``): placeholder dates such as
#: 1900-01-01 or 0001-01-01 are not purchases.
DEFAULT_DATE_FLOOR = "1970-01-01"
#: Larger absolute amounts are quarantined (``implausible amount``).
DEFAULT_MAX_AMOUNT = 1e12


#: Optional canonical columns, picked up automatically when the log has them.
OPTIONAL_COLUMNS = ("margin", "cost", "quantity", "product", "channel")


#: Optional columns that hold numbers (read as float64).
OPTIONAL_NUMERIC = ("margin", "cost", "quantity")


_FLAG = {"customer": "--customer-col", "date": "--date-col", "amount": "--amount-col"}


@dataclass(frozen=True)
class ColumnMap:
    """Names of the user's columns for each canonical column.

    Parameters
    ----------
    customer, date, amount : str
        Required columns: customer identifier, transaction date, amount (revenue).
    optional : dict
        Canonical optional name (``margin``, ``cost``, ``quantity``, ``product``,
        ``channel``) to the user's column. Columns already named canonically are
        found without being listed.
    date_format : str, optional
        ``strftime`` format of the dates (e.g. ``%Y%m%d``); inferred when ``None``.
    encoding : str, optional
        Text encoding of a CSV log (default UTF-8; e.g. ``latin-1``): like the date
        format, how this log is read, so it travels with the column names.
    """

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"
    optional: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None
    encoding: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the mapping as plain data (for model metadata)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _delimiter_hint(columns: list[str]) -> str:
    """Why a table may have come back as one column: it uses another delimiter."""
    if len(columns) != 1:
        return ""
    found = [d for d in (";", "\t", "|", ",") if d in str(columns[0])]
    if not found:
        return ""
    shown = "a tab" if found[0] == "\t" else repr(found[0])
    return (
        f" It was read as a single column: the file seems to use {shown} as its delimiter. "
        "Re-save it with commas, or read it with pandas.read_csv(path, sep=...) and pass the "
        "frame."
    )


#: Words in the names exports give each required column (matched in lower case, without
#: spaces, dashes and underscores), most specific first: the suggestion of a missing column.
_LIKELY_NAMES: dict[str, tuple[str, ...]] = {
    "customer": ("customerid", "customer", "clientid", "client", "userid", "memberid",
                 "accountid", "buyer", "cust"),
    "date": ("invoicedate", "orderdate", "transactiondate", "purchasedate", "date",
             "timestamp"),
    "amount": ("amount", "revenue", "sales", "total", "spend", "value"),
}  # fmt: skip
_QUANTITY_WORDS = ("quantity", "qty", "units")
_PRICE_WORDS = ("unitprice", "price")


def _squeezed(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in " _-.")


def _first_like(columns: list[str], words: tuple[str, ...], taken: str = "") -> str | None:
    """The first of ``columns`` whose squeezed name contains one of ``words`` (in order)."""
    for word in words:
        for column in columns:
            if column != taken and word in _squeezed(str(column)):
                return column
    return None


def _likely_column_hint(kind: str, columns: list[str]) -> str:
    """A guess at the column meant, and for an amount the quantity x price case."""
    flag = _FLAG.get(kind, f"--{kind}-col")
    if kind == "amount":
        quantity = _first_like(columns, _QUANTITY_WORDS)
        price = _first_like(columns, _PRICE_WORDS, taken=quantity or "")
        if quantity is not None and price is not None:
            # Online-Retail-style exports: the line's revenue is not a column.
            return (
                f" The log has a quantity ('{quantity}') and a unit price ('{price}') but no "
                "line amount: add one first, e.g. in pandas "
                f"df['amount'] = df['{quantity}'] * df['{price}'], or in DuckDB "
                f'COPY (SELECT *, "{quantity}" * "{price}" AS amount FROM \'log.csv\') '
                "TO 'log_with_amount.parquet', and read that file."
            )
    if kind not in _LIKELY_NAMES:
        return ""
    guess = _first_like(columns, _LIKELY_NAMES[kind])
    if guess is None:
        return ""
    return f" Perhaps '{guess}' ({flag} {shlex.quote(guess)})?"


def _missing_column_error(kind: str, name: str, columns: list[str], source: str) -> InputDataError:
    flag = _FLAG.get(kind, f"--{kind}-col")
    return InputDataError(
        f"{kind} column '{name}' not found in {source}; its columns are {columns}. "
        f"Pass {flag} NAME (or ColumnMap({kind}=NAME) from Python) to say which column holds "
        f"the {kind}.{_likely_column_hint(kind, columns)}{_delimiter_hint(columns)}"
    )


def duplicate_column_error(
    canon: str,
    name: str,
    count: int,
    source: str,
    read_as: list[str] | None = None,
    *,
    by_case: bool = False,
) -> InputDataError:
    """The error for a source with ``count`` columns named ``name``, read as ``canon``.

    Why an error: which of them holds the values is a guess, and reading the first
    would give wrong numbers without a word. ``read_as`` are the names the reader gave
    the duplicates (DuckDB reads a CSV's second ``amount`` as ``amount_1``): one of
    them can then be passed instead of renaming. ``by_case``: the names differ only in
    case, which DuckDB does not tell apart (``Amount`` and ``amount`` in a Parquet file).
    """
    kind = "customer" if canon == "customer_id" else canon
    flag = _FLAG.get(kind, f"--{kind}-col")
    names = ", ".join(repr(r) for r in read_as or [])
    if by_case:
        way = (
            f"They are {names}, and names are matched regardless of case: rename the others "
            "in the source"
        )
    elif read_as:
        way = (
            f"They are read as {names}, in order: rename the others in the source, or pass "
            f"{flag} with one of those names (ColumnMap({kind}=NAME) from Python)"
        )
    else:
        way = f"Rename or drop the others, so that one column is named '{name}'"
    return InputDataError(
        f"{source} has {count} columns named '{name}', and '{name}' is read as the {kind} "
        f"column: which one holds the {kind} cannot be told. {way}."
    )


def wanted_columns(cmap: ColumnMap) -> dict[str, str]:
    """Canonical column -> the name it is looked for under (``cmap``'s, or its own).

    The optional columns ``cmap`` does not name are looked for under their canonical
    names (:func:`resolve_columns` picks them up when present).
    """
    named = {"customer_id": cmap.customer, "date": cmap.date, "amount": cmap.amount}
    named |= dict(cmap.optional)
    taken = set(named.values())
    return named | {c: c for c in OPTIONAL_COLUMNS if c not in named and c not in taken}


def resolve_columns(
    columns: list[str], cmap: ColumnMap, source: str, *, fold_case: bool = False
) -> dict[str, str]:
    """Map each canonical column to the user's column, validating the required ones.

    Parameters
    ----------
    columns : list of str
        The columns the source has.
    cmap : ColumnMap
        Where the user says the columns are.
    source : str
        Name of the source in messages.
    fold_case : bool
        Whether the reader matches names regardless of case (DuckDB does, so a Parquet
        file with ``Amount`` and ``amount`` is as ambiguous as one with two ``amount``).

    Returns
    -------
    dict
        Canonical name (``customer_id``, ``date``, ``amount``, then optional ones:
        first those named in ``cmap.optional``, then those found under their
        canonical name) to the user's column name.

    Raises
    ------
    InputDataError
        If a required or listed optional column is missing (naming the columns there
        are, the flag to pass and, for a table read as one column, the delimiter it
        seems to use), an optional kind is unknown, or a column used is there twice.
    """
    resolved: dict[str, str] = {}
    for kind in ("customer", "date", "amount"):
        name = getattr(cmap, kind)
        if name not in columns:
            raise _missing_column_error(kind, name, columns, source)
        resolved[{"customer": "customer_id"}.get(kind, kind)] = name
    for canon, name in cmap.optional.items():
        if canon not in OPTIONAL_COLUMNS:
            raise InputDataError(
                f"unknown optional column kind '{canon}'; expected one of {list(OPTIONAL_COLUMNS)}."
            )
        if name not in columns:
            raise _missing_column_error(canon, name, columns, source)
        resolved[canon] = name
    for canon in OPTIONAL_COLUMNS:
        if canon not in resolved and canon in columns and canon not in resolved.values():
            resolved[canon] = canon
    for canon, name in resolved.items():  # a frame, an Arrow table or a Parquet schema
        same = [c for c in columns if (c.casefold() == name.casefold() if fold_case else c == name)]
        if len(same) > 1:
            by_case = fold_case and len(set(same)) > 1
            raise duplicate_column_error(
                canon, name, len(same), source, same if by_case else None, by_case=by_case
            )
    return resolved
