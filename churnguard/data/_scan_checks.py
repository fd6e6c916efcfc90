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
from churnguard.data._scan_sql import Limits, SourceRelation, sample_values
from churnguard.data.columns import ColumnMap
from churnguard.exceptions import DataQualityWarning, InputDataError

__all__ = [
    "check_columns",
    "check_usable",
    "unreadable_values",
    "warn_future",
    "warn_returns_only",
]


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
        comma = any(re.fullmatch(r"-?\d+,\d+", v.strip()) for v in sample)
        hint = (
            " The values use a decimal comma: convert them to a decimal point (19.99)."
            if comma
            else ""
        )
        raise InputDataError(
            f"no value in column '{cmap.amount}' of {src.name} is numeric; first values: "
            f"{sample}. Expected amounts such as 19.99; pass --amount-col if this is the wrong "
            f"column.{hint}"
        )
