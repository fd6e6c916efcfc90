"""Loading a raw transaction log into churnguard's canonical shape.

Whatever the user's column names, a cleaned log has the columns ``customer_id``
(text, exactly as given), ``date`` (``datetime64[ns]``) and ``amount`` (float),
plus the optional columns that were found: ``margin``, ``cost``, ``quantity``,
``product``, ``channel``. Rows that cannot be used (missing id, unparsable date,
non-numeric amount) are not dropped silently: they are returned in a quarantine
frame with the reason and their row number in the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.data.io import read_columns, read_table
from churnguard.exceptions import InputDataError

__all__ = [
    "OPTIONAL_COLUMNS",
    "ColumnMap",
    "LoadedTransactions",
    "clean_transactions",
    "load_transactions",
]

#: Optional canonical columns, picked up automatically when the log has them.
OPTIONAL_COLUMNS = ("margin", "cost", "quantity", "product", "channel")
_OPTIONAL_NUMERIC = ("margin", "cost", "quantity")
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
    """

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"
    optional: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the mapping as plain data (for model metadata)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class LoadedTransactions:
    """A cleaned transaction log and the rows that were set aside."""

    transactions: pd.DataFrame
    quarantine: pd.DataFrame
    source: str = "<frame>"

    @property
    def n_quarantined(self) -> int:
        """Number of rows that were set aside."""
        return len(self.quarantine)

    def summary(self) -> dict[str, object]:
        """Counts for logs and run summaries."""
        tx = self.transactions
        return {
            "source": self.source,
            "rows_used": len(tx),
            "rows_quarantined": self.n_quarantined,
            "customers": int(tx["customer_id"].nunique()),
            "first_date": tx["date"].min().date().isoformat() if len(tx) else None,
            "last_date": tx["date"].max().date().isoformat() if len(tx) else None,
        }


def _missing_column_error(kind: str, name: str, columns: list[str], source: str) -> InputDataError:
    flag = _FLAG.get(kind, f"--{kind}-col")
    return InputDataError(
        f"{kind} column '{name}' not found in {source}; its columns are {columns}. "
        f"Pass {flag} NAME (or ColumnMap({kind}=NAME) from Python) to say which column holds "
        f"the {kind}."
    )


def _resolve_columns(columns: list[str], cmap: ColumnMap, source: str) -> dict[str, str]:
    """Map canonical name -> user column, validating required ones."""
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
    return resolved


def _parse_dates(raw: pd.Series, date_format: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw):
        out = raw
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        return out.astype("datetime64[ns]")
    text = raw.astype("string").str.strip()
    if date_format is not None:
        return pd.to_datetime(text, format=date_format, errors="coerce")
    try:
        return pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        return pd.to_datetime(text, errors="coerce")


def _sorted_by_customer_and_date(frame: pd.DataFrame) -> bool:
    """Whether rows are already in (customer_id, date) order (then no sort is needed).

    Logs read back from a sorted store often are; checking costs a fraction of
    sorting strings. Ties keep their order either way, as in a stable sort.
    """
    if len(frame) < 2:
        return True
    ids = frame["customer_id"].to_numpy(dtype=object)
    dates = frame["date"].to_numpy()
    if not (ids[:-1] <= ids[1:]).all():
        return False
    same = ids[:-1] == ids[1:]
    return bool((dates[:-1][same] <= dates[1:][same]).all())


def clean_transactions(
    frame: pd.DataFrame, columns: ColumnMap | None = None, *, source: str = "<frame>"
) -> LoadedTransactions:
    """Validate and canonicalise a raw transaction frame.

    Parameters
    ----------
    frame : DataFrame
        Raw transactions, one row per transaction. Not modified.
    columns : ColumnMap, optional
        Where the required and optional columns are (defaults: ``customer_id``,
        ``date``, ``amount``).
    source : str
        Name used in messages.

    Returns
    -------
    LoadedTransactions
        ``transactions`` sorted by customer and date with canonical columns, and
        ``quarantine`` holding every unusable row with a ``reason`` and its
        ``source_row`` (0-based data row number).

    Raises
    ------
    TypeError
        If ``frame`` is not a DataFrame.
    InputDataError
        If a column is missing, the frame is empty, or no row at all is usable
        (for example every date fails to parse).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"transactions must be a pandas DataFrame; got {type(frame).__name__}.")
    cmap = columns or ColumnMap()
    resolved = _resolve_columns(list(frame.columns), cmap, source)
    if frame.empty:
        raise InputDataError(
            f"{source} has a header but no rows; expected at least one transaction."
        )
    raw = frame[list(resolved.values())].copy()
    raw.columns = list(resolved.keys())

    ids = raw["customer_id"]
    if not pd.api.types.is_string_dtype(ids) or ids.dtype == object:
        ids = ids.astype("string")
    ids = ids.str.strip()
    dates = _parse_dates(raw["date"], cmap.date_format)
    amounts = pd.to_numeric(raw["amount"], errors="coerce").astype("float64")

    reasons = pd.Series("", index=raw.index, dtype=object)
    bad_id = ids.isna() | (ids == "")
    bad_date = dates.isna()
    bad_amount = amounts.isna() | ~np.isfinite(amounts.fillna(0.0))
    reasons = reasons.mask(bad_id, "missing customer id")
    reasons = reasons.mask(~bad_id & bad_date, "unparsable date")
    reasons = reasons.mask(~bad_id & ~bad_date & bad_amount, "non-numeric amount")
    bad = bad_id | bad_date | bad_amount

    if bad_date.all():
        sample = raw["date"].dropna().astype(str).head(3).tolist()
        fmt = f" with format '{cmap.date_format}'" if cmap.date_format else ""
        raise InputDataError(
            f"no date in column '{cmap.date}' of {source} could be parsed{fmt}; first values: "
            f"{sample}. Expected dates such as 2024-03-31; pass --date-format (e.g. %Y%m%d) or "
            "--date-col if this is the wrong column."
        )
    if bad_amount.all():
        sample = raw["amount"].head(3).tolist()
        raise InputDataError(
            f"no value in column '{cmap.amount}' of {source} is numeric; first values: {sample}. "
            "Expected amounts such as 19.99; pass --amount-col if this is the wrong column."
        )

    out = pd.DataFrame({"customer_id": ids, "date": dates, "amount": amounts}, index=raw.index)
    for canon in resolved:
        if canon in _OPTIONAL_NUMERIC:
            out[canon] = pd.to_numeric(raw[canon], errors="coerce").astype("float64")
        elif canon in ("product", "channel"):
            out[canon] = raw[canon].astype("string")

    quarantine = raw.loc[bad].astype("string")
    quarantine.insert(0, "source_row", raw.index[bad].to_numpy())
    quarantine["reason"] = reasons[bad].to_numpy()
    clean = out.loc[~bad]
    if clean.empty:
        raise InputDataError(
            f"none of the {len(raw)} rows of {source} is usable; reasons: "
            f"{quarantine['reason'].value_counts().to_dict()}."
        )
    if not _sorted_by_customer_and_date(clean):
        clean = clean.sort_values(["customer_id", "date"], kind="stable")
    clean = clean.reset_index(drop=True)
    clean["customer_id"] = clean["customer_id"].astype(object)
    return LoadedTransactions(clean, quarantine.reset_index(drop=True), source)


def load_transactions(
    path: str | os.PathLike[str], columns: ColumnMap | None = None
) -> LoadedTransactions:
    """Read a CSV or Parquet transaction log and clean it (see :func:`clean_transactions`).

    Only the needed columns are read, and the customer column is read as text so
    identifiers such as ``00042`` come back unchanged.
    """
    cmap = columns or ColumnMap()
    p = Path(path)
    available = read_columns(p)
    resolved = _resolve_columns(available, cmap, f"'{p}'")
    frame = read_table(p, list(resolved.values()), string_columns=(cmap.customer,))
    return clean_transactions(frame, cmap, source=f"'{p}'")
