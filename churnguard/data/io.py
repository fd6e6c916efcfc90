"""Reading and writing tables (CSV or Parquet, chosen by file extension).

The one place that says what a table file is: :func:`table_format` tells CSV from
Parquet by extension, :func:`read_table` and :func:`read_columns` read them (CSV headers
as DuckDB's sniffer reads them) and :func:`write_table` writes them. Its helpers live in
private modules and their public names are re-exported here, so
``churnguard.data.io`` stays the import path for all of them:

* Writes are atomic (:mod:`churnguard.data._atomic`): the table goes to a hidden
  temporary file ``.<name>.<pid>.<random>.cgtmp`` in the destination folder and is
  renamed into place, so a killed job never leaves a half-written output under the name
  the user asked for; :func:`cleanup_stale` (called by every later :func:`atomic_path`
  on the same output) removes such leftovers once they are older than an hour and their
  process is gone. Finished files get the permissions of the user's umask
  (``0o666 & ~umask``, e.g. ``0644``), not the ``0600`` of a temporary file.
* CSV outputs are protected against CSV (formula) injection
  (:mod:`churnguard.data._formulas`): a text cell that begins with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a leading ``'`` so that a spreadsheet shows it
  as text instead of running it (OWASP's advice; see :func:`escape_formulas`). When a
  CSV is read by programs only, pass ``neutralize_formulas=False`` to
  :func:`write_table`, or write inside ``with formulas_escaped(False):`` (every writer,
  DuckDB's included; the CLI's ``churnguard --raw-csv``).
* CSV inputs are read by DuckDB (:mod:`churnguard.data._csv_input`,
  :func:`csv_relation`): its sniffer finds the delimiter, and a file that is not UTF-8
  gets an error that says so and names the ``--encoding`` option instead of a bare
  ``UnicodeDecodeError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from churnguard.data._atomic import (
    STALE_AFTER_SECONDS,
    aside_path,
    atomic_path,
    cleanup_stale,
    current_umask,
    temporary_folder,
)
from churnguard.data._csv_input import (
    ENCODING_HINT,
    check_unique_headers,
    csv_columns,
    csv_relation,
    normalize_encoding,
    readable_csv,
    translate_csv_error,
)
from churnguard.data._formulas import (
    escape_formulas,
    escape_formulas_sql,
    escaping_formulas,
    formulas_escaped,
)
from churnguard.exceptions import InputDataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "STALE_AFTER_SECONDS",
    "aside_path",
    "atomic_path",
    "check_not_input",
    "check_readable",
    "check_unique_headers",
    "cleanup_stale",
    "csv_columns",
    "csv_relation",
    "current_umask",
    "escape_formulas",
    "escape_formulas_sql",
    "escaping_formulas",
    "formulas_escaped",
    "normalize_encoding",
    "quarantine_path",
    "read_columns",
    "readable_csv",
    "read_table",
    "table_format",
    "temporary_folder",
    "translate_csv_error",
    "write_table",
]

SUPPORTED_EXTENSIONS = (".csv", ".parquet", ".pq")


# --------------------------------------------------------------------------- formats


def table_format(path: str | os.PathLike[str], *, role: str = "input") -> str:
    """Return ``"csv"`` or ``"parquet"`` for ``path``, or raise a helpful error."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputDataError(
        f"cannot tell the format of {role} file '{path}': its extension is '{suffix or '(none)'}'; "
        f"expected one of {', '.join(SUPPORTED_EXTENSIONS)}. Rename the file or convert it "
        "to CSV or Parquet."
    )


def check_not_input(
    output: str | os.PathLike[str] | None,
    source: Any,
    *,
    option: str = "--out",
) -> None:
    """Refuse an output (or the quarantine file beside it) that is the input log itself.

    Writing the list over the log it was computed from destroys the data; a typo of one
    argument (``-t sales.csv --out sales.csv``) must not do that.

    Parameters
    ----------
    output : path-like or None
        The output about to be written (None: nothing is written, nothing to check).
    source : path-like or anything else
        The input; only a path is checked (a frame has no file to overwrite).
    option : str
        The option that named ``output``, for the message.

    Raises
    ------
    InputDataError
        When ``output`` or its quarantine file is ``source``.
    """
    if output is None or not isinstance(source, str | os.PathLike):
        return
    src = Path(source)
    for target in (Path(output), quarantine_path(output)):
        same = target.resolve() == src.resolve()
        if not same and target.exists() and src.exists():
            same = os.path.samefile(target, src)
        if same:
            subject = (
                f"{option} '{output}'"
                if target == Path(output)
                else f"the quarantine file of {option} '{output}' ('{target}')"
            )
            raise InputDataError(
                f"{subject} is the input log '{source}': writing it would destroy the "
                f"transactions. Choose another {option} path."
            )


def check_readable(path: Path) -> None:
    if not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        hint = ""
        if parent.is_dir():
            near = sorted(
                p.name for p in parent.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS
            )
            if near:
                hint = f" Tables in '{parent}': {near[:10]}."
        raise InputDataError(
            f"file '{path}' does not exist.{hint} "
            "Pass the path of a CSV or Parquet transaction log."
        )
    if path.is_dir():
        raise InputDataError(f"'{path}' is a folder; expected a CSV or Parquet file.")
    if path.stat().st_size == 0:
        raise InputDataError(
            f"file '{path}' is empty (0 bytes); expected a table with a header row."
        )


# --------------------------------------------------------------------------- reading


def read_columns(path: str | os.PathLike[str], *, encoding: str | None = None) -> list[str]:
    """Return the column names of a CSV or Parquet file without reading its rows.

    CSV headers are read as :func:`churnguard.data.scan.scan_transactions` reads them
    (DuckDB's sniffer finds the delimiter), in ``encoding`` (default UTF-8).
    """
    p = Path(path)
    fmt = table_format(p)
    check_readable(p)
    if fmt == "parquet":
        return list(pq.read_schema(p).names)
    enc = normalize_encoding(encoding)
    con = duckdb.connect()
    try:
        with readable_csv(p, enc) as (readable, duck_encoding):
            return csv_columns(con, readable, duck_encoding, display=p)[0]
    finally:
        con.close()


def read_table(
    path: str | os.PathLike[str],
    columns: list[str] | None = None,
    *,
    string_columns: tuple[str, ...] = (),
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read a CSV or Parquet table.

    Parameters
    ----------
    path : path-like
        ``.csv`` or ``.parquet`` file.
    columns : list of str, optional
        Only these columns are read (all when ``None``).
    string_columns : tuple of str
        Columns read as text, so identifiers such as ``00042`` keep their leading zeros.
        Numeric identifiers stored as numbers in Parquet are converted to their text form.
    encoding : str, optional
        Text encoding of a CSV (default UTF-8); a file in another encoding gets an
        error naming ``--encoding`` rather than a ``UnicodeDecodeError``.
    """
    p = Path(path)
    fmt = table_format(p)
    check_readable(p)
    if fmt == "csv":
        dtype = {c: "string" for c in string_columns}
        try:
            frame = pd.read_csv(
                p, usecols=columns, dtype=dtype, keep_default_na=True, encoding=encoding
            )
        except pd.errors.EmptyDataError as exc:
            raise InputDataError(f"file '{p}' has no header row; expected a CSV table.") from exc
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"'{p}' is not {encoding or 'UTF-8'} text ({exc.reason} at byte {exc.start}); "
                f"{ENCODING_HINT}."
            ) from exc
    else:
        frame = pq.read_table(p, columns=columns).to_pandas()
        for col in string_columns:
            if col in frame:
                frame[col] = frame[col].astype("string")
    return frame


# --------------------------------------------------------------------------- writing


def quarantine_path(output: str | os.PathLike[str]) -> Path:
    """Where the unusable rows of a run go: ``<output>.quarantine.csv`` beside it."""
    out = Path(output)
    if out.suffix:
        return out.with_name(out.stem + ".quarantine.csv")
    return out / "quarantine.csv"


def write_table(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    neutralize_formulas: bool | None = None,
) -> Path:
    """Write ``frame`` atomically as CSV or Parquet (by extension) and return the path.

    Parameters
    ----------
    frame : DataFrame
        The table; not modified.
    path : path-like
        ``.csv`` or ``.parquet`` output, written through :func:`atomic_path` (a
        killed run leaves no partial file; permissions follow the umask).
    neutralize_formulas : bool, optional
        CSV only: prefix text cells that a spreadsheet would run as a formula with
        ``'`` (see :func:`escape_formulas`); numbers are never changed. Pass False
        when the CSV is only read by programs that need the text byte for byte.
        Default: on, unless turned off by :func:`formulas_escaped` (``--raw-csv``).
        Parquet is written unchanged either way (spreadsheets do not open it).

    Raises
    ------
    OSError
        When the folder is not writable or the disk is full, naming ``path``.
    """
    target = Path(path)
    fmt = table_format(target, role="output")
    with atomic_path(target) as tmp:
        if fmt == "csv":
            if neutralize_formulas is None:
                out = escape_formulas(frame)  # follows formulas_escaped()
            elif neutralize_formulas:
                with formulas_escaped(True):
                    out = escape_formulas(frame)
            else:
                out = frame
            out.to_csv(tmp, index=False)
        else:
            # Dictionary pages only for repeated labels (segments, actions, tiers): for
            # ids and numbers they cost a third of the write and save nothing.
            labels = [
                str(c)
                for c, dtype in frame.dtypes.items()
                if c != "customer_id"
                and (dtype.kind == "O" or isinstance(dtype, pd.CategoricalDtype))
            ]
            frame.to_parquet(tmp, index=False, use_dictionary=labels or False)
    return target
