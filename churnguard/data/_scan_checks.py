"""The checks of :func:`churnguard.data.scan.scan_transactions`: errors and warnings.

Whole-column errors (no date parses, no amount is numeric), no usable row, and the
warnings about rows or values set aside. Shared internals of the scan; not a public API.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.data._scan_quarantine import examples
from churnguard.data._scan_rows import AFTER, USED
from churnguard.data._scan_sql import FLOAT_ID_TYPES, Limits, SourceRelation, sample_values
from churnguard.data.columns import ColumnMap
from churnguard.exceptions import DataQualityWarning, InputDataError

__all__ = [
    "check_dates_read",
    "warn_as_of_after_log",
    "check_columns",
    "check_formatted_amounts",
    "warn_thousands_dots",
    "check_usable",
    "warn_as_of_after_today",
    "warn_float_ids",
    "warn_quoted_ids",
    "unreadable_values",
    "warn_future",
    "warn_returns_only",
]

#: Amounts written for people, not programs: a decimal comma (19,99), thousands
#: separators (1,234.50 or 1.234,50), a currency sign ($12.00, 12,00 €).
_FORMATTED = re.compile(
    r"\s*[-+]?\s*(?:[$€£¥]\s*)?[-+]?(?:\d+,\d{1,2}|\d{1,3}(?:[.,'\s]\d{3})+(?:[.,]\d+)?"
    r"|\d+(?:\.\d+)?)\s*(?:[$€£¥]|EUR|USD|GBP)?\s*"
)


def warn_as_of_after_today(limits: Limits) -> None:
    """An as-of date after today scores every customer as silent until then."""
    if limits.as_of is not None and limits.as_of > limits.today:
        warnings.warn(
            f"as_of {limits.as_of} is after today ({limits.today}): every customer is scored as "
            "silent until then, while rows dated after today are quarantined. Check --as-of.",
            DataQualityWarning,
            stacklevel=3,
        )


#: An as-of date more days than this after the last transaction gets a warning: a month
#: or two is a weekly job scoring a log that lags; a year is a typo or the wrong file.
AS_OF_LAG_DAYS = 90


def warn_as_of_after_log(src: SourceRelation, as_of: Any, last: Any) -> None:
    """An as-of date long after the log's last transaction scores everyone as silent."""
    if as_of is None or last is None:
        return
    lag = (as_of - last).days
    if lag > AS_OF_LAG_DAYS:
        warnings.warn(
            f"as_of {as_of} is {lag:,} days after the last transaction of {src.name} "
            f"({last}): every customer is scored as silent for at least that long, so nearly "
            "all read as lost. Check --as-of, or that the log is the latest export.",
            DataQualityWarning,
            stacklevel=4,
        )


def warn_float_ids(src: SourceRelation) -> None:
    """Ids stored as floats are read as the integers they were (see ``id_text_sql``)."""
    if src.types["customer_id"] in FLOAT_ID_TYPES:
        warnings.warn(
            f"customer ids in {src.name} are stored as floating-point numbers (as pandas saves "
            "an integer column with a missing value); whole numbers are read as integers "
            "(10002.0 is 10002). Store ids as text to keep them exactly as in your systems.",
            DataQualityWarning,
            stacklevel=4,
        )


def warn_quoted_ids(src: SourceRelation, ids: pa.ChunkedArray) -> None:
    """Warn when customer ids read from a CSV begin with a double quote.

    A field whose quote is opened and never closed (``"b,2024-01-02,2``) makes
    DuckDB's sniffer read the whole file without quoting, so the quote becomes part of
    the id: ``"b`` is then another customer than ``b``. Only ids that begin with a quote
    and do not end with one count: a closed quote escaped by doubling (three at each
    end) gives an id that ends with one too. Ids are kept as read (a quote may belong to
    them), hence a warning. ``ids`` are the stripped ids of every row.
    """
    if src.csv is None or not len(ids):
        return
    quoted = pc.and_(pc.starts_with(ids, '"'), pc.invert(pc.ends_with(ids, '"')))
    count = int(pc.sum(quoted).as_py() or 0)
    if not count:
        return
    first = ids.filter(pc.fill_null(quoted, False))[0].as_py()
    warnings.warn(
        f"{count:,} customer {'id' if count == 1 else 'ids'} in {src.name} "
        f"{'begins' if count == 1 else 'begin'} with a double quote (e.g. {first!r}): a "
        "quote opened and never closed makes the file read without quoting, and the quote "
        f"becomes part of the id ({first!r} is another customer than "
        f"{first.strip(chr(34))!r}). Close or remove that quote in the file; if the quotes "
        "belong to the ids, ignore this warning.",
        DataQualityWarning,
        stacklevel=4,
    )


def check_formatted_amounts(
    con: duckdb.DuckDBPyConnection, src: SourceRelation, rows: np.ndarray, n: int
) -> None:
    """Name the non-numeric amounts (``rows``) that are numbers formatted for people.

    A warning with examples and the fix; an error when they are half of the log or more
    (the log was surely misread, and a list from what is left would mislead).
    """
    values = examples(con, src, "amount", rows)
    if not values or not all(_FORMATTED.fullmatch(v) for v in values):
        return
    share = len(rows) / max(n, 1)
    note = (
        f"{len(rows):,} of {n:,} rows ({share:.0%}) have an amount written for people, not "
        f"programs (e.g. {values}: a decimal comma, thousands separators or a currency "
        "sign) and were set aside as non-numeric. Convert the column to plain numbers with "
        "a decimal point (1234.50) or pass --amount-col if this is the wrong column."
    )
    if share >= 0.5:
        raise InputDataError(note)
    warnings.warn(note, DataQualityWarning, stacklevel=4)


def check_dates_read(
    con: duckdb.DuckDBPyConnection,
    src: SourceRelation,
    cmap: ColumnMap,
    rows: np.ndarray,
    n: int,
) -> None:
    """Refuse a log whose dates are mostly unreadable (``rows``: the unparsable ones).

    Under half, the rows are set aside and counted like any bad row. From half on the
    format was surely misread (``%m/%d/%Y`` given for day-first dates reads 12 of every 31
    days, some of them wrongly), and a list from what is left would mislead: an error
    with examples and the fix, as for amounts written for people.
    """
    share = len(rows) / max(n, 1)
    if share < 0.5:
        return
    values = examples(con, src, "date", rows)
    given = (
        f"with --date-format {cmap.date_format}"
        if cmap.date_format
        else "with the formats DuckDB recognises"
    )
    raise InputDataError(
        f"{len(rows):,} of {n:,} rows ({share:.0%}) of {src.name} have a date in column "
        f"'{cmap.date}' that could not be read {given} (e.g. {values}): the format is "
        "probably wrong, and the rows left would be misread too. Pass --date-format "
        "matching these values (e.g. %d/%m/%Y for 31/12/2024, %m/%d/%Y for 12/31/2024, "
        "%Y%m%d for 20241231), or --date-col if this is the wrong column."
    )


#: Rows read for the thousands-dot check: the head of the file tells the format.
_DOT_SAMPLE = 100_000
#: Fewest amounts with a decimal point for the thousands-dot check to say anything.
_DOT_MIN = 20


def warn_thousands_dots(con: duckdb.DuckDBPyConnection, src: SourceRelation) -> None:
    """Warn when a text amount column looks written with a dot between thousands.

    ``1.173`` for one thousand one hundred seventy-three (Chilean pesos, Indonesian
    rupiah) reads as a valid number a thousand times too small, so no row is set aside
    and nothing else would say so. The signs, in the first rows of the file: every
    amount with a point has exactly three digits after it, there are at least
    :data:`_DOT_MIN` of them, none starts with ``0.``, and no amount of 1000 or more is
    written without one.
    Amounts with three decimals (dinars) match too, hence a warning, not an error.
    """
    if src.types.get("amount") != "VARCHAR":
        return
    raw = src.raw["amount"]
    sql = (
        "SELECT count(*) FILTER (WHERE contains(a, '.')), "
        r"count(*) FILTER (WHERE regexp_full_match(a, '[-+]?\d{1,3}(\.\d{3})+')), "
        r"count(*) FILTER (WHERE regexp_full_match(a, '[-+]?\d{4,}')), "
        r"count(*) FILTER (WHERE regexp_full_match(a, '[-+]?0\.\d+')) "
        f"FROM (SELECT trim(CAST({raw} AS VARCHAR)) AS a FROM {src.relation} "
        f"LIMIT {_DOT_SAMPLE})"
    )
    try:
        rows = con.sql(sql).fetchall()
    except duckdb.Error:
        return
    dotted, thousands, plain_large, below_one = (
        (int(v or 0) for v in rows[0]) if rows else (0, 0, 0, 0)
    )
    # 0.500 cannot be a thousands group: a separator would have written 500.
    if dotted < _DOT_MIN or thousands < dotted or plain_large or below_one:
        return
    values = [v for v in sample_values(con, src, "amount") if "." in v] or ["1.173"]
    warnings.warn(
        f"every amount with a point in the first rows of {src.name} has exactly three digits "
        f"after it ({dotted:,} of them, e.g. {values[0]!r}) and no amount of 1000 or more is "
        "written without one: if the point separates thousands (1.173 meaning 1173), every "
        "amount is read a thousand times too small. Remove the thousands separators from "
        "the amount column; if these are amounts with three decimals, ignore this warning.",
        DataQualityWarning,
        stacklevel=4,
    )


def check_usable(
    src: SourceRelation, limits: Limits, counts: np.ndarray, reasons: dict[str, int], n: int
) -> None:
    """Raise when no row is usable, saying why (and naming --as-of when it is the cause)."""
    if counts[USED]:
        return
    after = ""
    if counts[AFTER]:
        after = (
            f" {int(counts[AFTER])} usable rows are dated after as_of {limits.as_of}; pass a "
            "later --as-of."
        )
    if not reasons:  # every row is fine, only later than as_of
        raise InputDataError(f"none of the {n} rows of {src.name} is on or before as_of:{after}")
    raise InputDataError(
        f"none of the {n} rows of {src.name} is usable; reasons: {reasons}.{after}"
    )


def warn_returns_only(src: SourceRelation, ids: list[Any]) -> None:
    """Say who has returns only: they have no purchase, hence no features and no score."""
    shown = ", ".join(repr(str(v)) for v in ids[:3]) + (", ..." if len(ids) > 3 else "")
    warnings.warn(
        f"{len(ids)} customers of {src.name} have only returns (negative amounts) and no "
        f"purchase up to the as-of date ({shown}): with nothing bought there is nothing to "
        "predict from, so they get no features and no row in the list (their rows are read, "
        "not quarantined; from Python: ScannedTransactions.returns_only_customers).",
        DataQualityWarning,
        stacklevel=4,
    )


def warn_future(
    src: SourceRelation, limits: Limits, stamps: np.ndarray, code: np.ndarray, unit: str
) -> None:
    future = code == 3
    latest = stamps[future].view(f"M8[{unit}]").max()
    warnings.warn(
        f"{int(future.sum())} rows of {src.name} are dated after today ({limits.today}), the "
        f"latest on {str(latest)[:10]}; they were quarantined as 'date in the future'. Check "
        "the date column (--date-col) and its format (--date-format), and this machine's "
        "clock (from Python, scan_transactions(today=...) sets the date explicitly).",
        DataQualityWarning,
        stacklevel=4,
    )


def unreadable_values(
    con: duckdb.DuckDBPyConnection,
    src: SourceRelation,
    resolved: dict[str, str],
    table: pa.Table,
    flags: list[str],
    used_mask: np.ndarray,
) -> dict[str, int]:
    """Optional values of used rows that could not be read, per column; warns about each."""
    unreadable = {}
    for flag in flags:
        bad = np.asarray(table.column(flag).to_numpy(zero_copy_only=False), dtype=bool)
        hits = np.flatnonzero(bad & used_mask)
        if not len(hits):
            continue
        canon = flag.removeprefix("_bad_")
        unreadable[canon] = len(hits)
        warnings.warn(
            f"{len(hits)} values of column '{resolved[canon]}' ({canon}) in {src.name} are not "
            f"numbers (e.g. {examples(con, src, canon, hits)}); those rows are kept with "
            f"{canon} missing. Clean the column or map another one (--{canon}-col).",
            DataQualityWarning,
            stacklevel=4,
        )
    return unreadable


def check_columns(
    con: duckdb.DuckDBPyConnection, src: SourceRelation, cmap: ColumnMap, table: pa.Table, n: int
) -> None:
    """The whole-column errors: no date can be parsed, no amount is numeric."""
    if table.column("date").null_count == n:
        sample = sample_values(con, src, "date")
        fmt = f" with format '{cmap.date_format}'" if cmap.date_format else ""
        fix = "pass --date-format (e.g. %Y%m%d) or --date-col if this is the wrong column"
        if sample and all(re.fullmatch(r"\d{9,13}(\.\d+)?", v.strip()) for v in sample):
            fix = (
                "these look like Unix epoch seconds or milliseconds, which no date format "
                "reads: convert the column to timestamps (in DuckDB, to_timestamp(x) for "
                "seconds, epoch_ms(x) for milliseconds), or pass --date-col if this is the "
                "wrong column"
            )
        raise InputDataError(
            f"no date in column '{cmap.date}' of {src.name} could be parsed{fmt}; first values: "
            f"{sample}. Expected dates such as 2024-03-31; {fix}."
        )
    finite = pc.fill_null(pc.is_finite(table.column("amount")), False)
    if not pc.any(finite).as_py():
        sample = sample_values(con, src, "amount")
        hint = (
            " They are written for people (a decimal comma, thousands separators or a "
            "currency sign): convert them to plain numbers with a decimal point (19.99)."
            if sample and all(_FORMATTED.fullmatch(v) for v in sample)
            else ""
        )
        raise InputDataError(
            f"no value in column '{cmap.amount}' of {src.name} is numeric; first values: "
            f"{sample}. Expected amounts such as 19.99; pass --amount-col if this is the wrong "
            f"column.{hint}"
        )
