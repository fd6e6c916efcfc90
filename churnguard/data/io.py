"""Reading and writing tables (CSV or Parquet, chosen by file extension).

Writes are atomic: the table goes to a temporary file in the destination folder
and is renamed into place, so a killed job never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from churnguard.exceptions import InputDataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "atomic_path",
    "read_columns",
    "read_table",
    "table_format",
    "write_table",
]

SUPPORTED_EXTENSIONS = (".csv", ".parquet", ".pq")


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


def _check_readable(path: Path) -> None:
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


def read_columns(path: str | os.PathLike[str]) -> list[str]:
    """Return the column names of a CSV or Parquet file without reading its rows."""
    p = Path(path)
    fmt = table_format(p)
    _check_readable(p)
    if fmt == "parquet":
        return list(pq.read_schema(p).names)
    try:
        return list(pd.read_csv(p, nrows=0).columns)
    except pd.errors.EmptyDataError as exc:
        raise InputDataError(f"file '{p}' has no header row; expected a CSV table.") from exc


def read_table(
    path: str | os.PathLike[str],
    columns: list[str] | None = None,
    *,
    string_columns: tuple[str, ...] = (),
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
    """
    p = Path(path)
    fmt = table_format(p)
    _check_readable(p)
    if fmt == "csv":
        dtype = {c: "string" for c in string_columns}
        try:
            frame = pd.read_csv(p, usecols=columns, dtype=dtype, keep_default_na=True)
        except pd.errors.EmptyDataError as exc:
            raise InputDataError(f"file '{p}' has no header row; expected a CSV table.") from exc
    else:
        frame = pq.read_table(p, columns=columns).to_pandas()
        for col in string_columns:
            if col in frame and not pd.api.types.is_string_dtype(frame[col]):
                frame[col] = frame[col].astype("string")
            elif col in frame:
                frame[col] = frame[col].astype("string")
    return frame


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On error the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` atomically as CSV or Parquet (by extension) and return the path."""
    target = Path(path)
    fmt = table_format(target, role="output")
    with atomic_path(target) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return target
