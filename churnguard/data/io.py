"""Reading and writing tables (CSV or Parquet, chosen by file extension).

Writes are atomic: the table goes to a hidden temporary file in the destination
folder and is renamed into place, so a killed job never leaves a half-written
output under the name the user asked for. The temporary file is named
``.<name>.<pid>.<random>.cgtmp``; a run that is killed before the rename leaves it
behind, and :func:`cleanup_stale` (called by every later :func:`atomic_path` on the
same output) removes such files once they are older than an hour and their process
is gone. Finished files get the permissions of the user's umask (``0o666 & ~umask``,
e.g. ``0644``), as any file the user creates, not the ``0600`` of a temporary file.

CSV outputs are protected against CSV (formula) injection: a text cell that begins
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so
that a spreadsheet shows it as text instead of running it (OWASP's advice; see
:func:`escape_formulas`). Pass ``neutralize_formulas=False`` to :func:`write_table`
when the CSV is read by programs only.

CSV inputs are read by DuckDB (:func:`csv_relation`): its sniffer finds the
delimiter, and a file that is not UTF-8 gets an error that says so and names the
``--encoding`` option instead of a bare ``UnicodeDecodeError``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import glob
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnguard._duckdb import quote_literal
from churnguard.exceptions import InputDataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "STALE_AFTER_SECONDS",
    "atomic_path",
    "check_readable",
    "cleanup_stale",
    "csv_columns",
    "csv_relation",
    "current_umask",
    "escape_formulas",
    "escape_formulas_sql",
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
#: Age (seconds) from which a leftover temporary file of a killed run is removed.
STALE_AFTER_SECONDS = 3600.0

# Temporary files of atomic writes: ".<target name>.<pid>.<random>.cgtmp". The pid lets
# cleanup_stale spare the file of a run that is still going; the suffix is ours alone,
# so no user file is ever matched.
_TMP_SUFFIX = ".cgtmp"
_UMASK_LOCK = threading.Lock()

# DuckDB reads these encodings itself; any other Python codec is transcoded first.
_DUCKDB_ENCODINGS = {"utf-8": "utf-8", "iso8859-1": "latin-1", "utf-16": "utf-16"}
_ENCODING_HINT = (
    "pass --encoding latin-1 (encoding='latin-1' from Python), or --encoding cp1252 for "
    "files saved by Excel on Windows, or re-save the file as UTF-8"
)
# Characters a CSV header holding one column name may in fact be split by.
_DELIMITERS = (",", ";", "\t", "|")


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


# --------------------------------------------------------------------------- CSV via DuckDB


def normalize_encoding(encoding: str | None) -> str:
    """Python's canonical name of ``encoding`` (``utf-8`` when ``None``).

    Raises
    ------
    InputDataError
        If Python knows no such encoding.
    """
    if encoding is None:
        return "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError as exc:
        raise InputDataError(
            f"unknown encoding '{encoding}'; expected a Python codec name such as utf-8, "
            "latin-1, cp1252 or utf-16 (pass it as --encoding)."
        ) from exc
    # utf-8-sig is utf-8 with a byte-order mark, which DuckDB skips by itself.
    return "utf-8" if name == "utf-8-sig" else name


@contextmanager
def readable_csv(path: Path, encoding: str) -> Iterator[tuple[Path, str]]:
    """The file and the encoding DuckDB should read it with.

    DuckDB reads UTF-8, Latin-1 and UTF-16 itself. Any other encoding (cp1252,
    shift_jis...) is transcoded to a temporary UTF-8 copy, block by block (memory
    stays flat), which is removed afterwards.
    """
    if encoding in _DUCKDB_ENCODINGS:
        yield path, _DUCKDB_ENCODINGS[encoding]
        return
    with tempfile.TemporaryDirectory(prefix="churnguard-csv-") as folder:
        copy = Path(folder) / "utf8.csv"
        try:
            with (
                open(path, encoding=encoding, newline="") as src,
                open(copy, "w", encoding="utf-8", newline="") as dst,
            ):
                while block := src.read(1 << 22):
                    dst.write(block)
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"'{path}' is not {encoding} text either ({exc.reason} at byte {exc.start}); "
                f"check which encoding wrote it and {_ENCODING_HINT}."
            ) from exc
        yield copy, "utf-8"


def csv_relation(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> str:
    """DuckDB ``read_csv`` call reading every column of ``path`` as text (VARCHAR).

    The header row is required and no row is skipped (DuckDB's sniffer may otherwise
    take a ragged line for the header); the delimiter and quoting are sniffed unless
    ``delimiter`` is given. ``encoding`` must be one DuckDB reads (see
    :func:`readable_csv`, which transcodes the others).
    """
    options = [
        "header = true",
        "skip = 0",
        "all_varchar = true",
        f"encoding = {quote_literal(encoding)}",
    ]
    if delimiter is not None:
        options.append(f"delim = {quote_literal(delimiter)}")
    return f"read_csv({quote_literal(str(path))}, {', '.join(options)})"


def translate_csv_error(exc: Exception, path: Path, encoding: str) -> Exception:
    """A churnguard error for a DuckDB CSV error (or ``exc`` itself when unknown).

    The messages name the file and the fix: a file that is not UTF-8 gets the
    ``--encoding`` hint, a ragged row its line number.
    """
    text = str(exc)
    line = re.search(r"on Line: (\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    if "not utf-8 encoded" in text or "Invalid unicode" in text:
        return InputDataError(
            f"'{path}' is not UTF-8 text{where}: it holds bytes that are not valid UTF-8, so it "
            f"was probably saved in another encoding such as Latin-1; {_ENCODING_HINT}."
        )
    if "Expected Number of Columns" in text or "It was not possible to automatically" in text:
        found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
        counts = (
            f": the header has {found.group(1)} fields, that line {found.group(2)}" if found else ""
        )
        return InputDataError(
            f"'{path}' is not a regular CSV table{where}{counts}. Every row must have as many "
            "fields as the header; quote fields that contain the delimiter, or fix that line."
        )
    if isinstance(exc, duckdb.IOException):
        return InputDataError(f"cannot read '{path}': {text.splitlines()[0]}")
    return exc


def _ragged_line(path: Path, encoding: str, delimiter: str) -> tuple[int, int, int] | None:
    """(line number, fields, header fields) of the first row with a wrong field count.

    Only called on the error path (DuckDB's sniffer gave up), so a plain Python pass
    over the file is acceptable.
    """
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(row), len(header)
    return None


def csv_columns(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    encoding: str,
    *,
    display: Path | None = None,
) -> tuple[list[str], str | None]:
    """Column names of a CSV read by DuckDB, and the delimiter to force (None: sniffed).

    When the sniffer returns a single column whose name holds a delimiter, the file
    is either ragged (then the error names the first bad line) or the sniffer was
    confused (then the delimiter found in the header is forced). ``display`` is the
    file named in messages (the user's file when ``path`` is a transcoded copy).
    """
    shown = display or path
    try:
        described = con.sql(f"DESCRIBE SELECT * FROM {csv_relation(path, encoding)}").fetchall()
    except duckdb.Error as exc:
        raise translate_csv_error(exc, shown, encoding) from exc
    names = [str(row[0]) for row in described]
    if len(names) != 1:
        return names, None
    counts = {d: names[0].count(d) for d in _DELIMITERS}
    delimiter = max(counts, key=lambda d: counts[d])
    if not counts[delimiter]:
        return names, None
    bad = _ragged_line(path, encoding, delimiter)
    if bad is not None:
        line, got, want = bad
        raise InputDataError(
            f"'{shown}' seems to use {delimiter!r} as its delimiter, but line {line} has {got} "
            f"fields where the header has {want}. Every row must have as many fields as the "
            f"header; quote fields that contain {delimiter!r}, or fix that line."
        )
    try:
        relation = csv_relation(path, encoding, delimiter)
        described = con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    except duckdb.Error as exc:
        raise translate_csv_error(exc, shown, encoding) from exc
    return [str(row[0]) for row in described], delimiter


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
                f"{_ENCODING_HINT}."
            ) from exc
    else:
        frame = pq.read_table(p, columns=columns).to_pandas()
        for col in string_columns:
            if col in frame:
                frame[col] = frame[col].astype("string")
    return frame


# --------------------------------------------------------------------------- atomic writes


def current_umask() -> int:
    """The process umask, read without changing it.

    ``os.umask`` can only be read by setting it, which races with threads creating
    files meanwhile; Linux reports it in ``/proc/self/status`` (since 4.7). Elsewhere
    it is read by setting and restoring it under a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    except OSError:
        return False
    return True


def cleanup_stale(
    path: str | os.PathLike[str], *, older_than: float = STALE_AFTER_SECONDS
) -> list[Path]:
    """Remove temporary files left by killed atomic writes; return what was removed.

    Parameters
    ----------
    path : path-like
        An output file (its own leftovers are removed) or a folder (the leftovers of
        every output in it).
    older_than : float
        Only files not modified for this many seconds are removed (default one hour),
        and never one whose process is still running on this machine: a write that
        is still going is left alone.

    Notes
    -----
    Leftovers are the hidden files and folders ``.<name>.<pid>.<random>.cgtmp`` that
    :func:`atomic_path` and :func:`temporary_folder` create; nothing else is matched.
    Files that cannot be removed (permissions, a race with another cleanup) are skipped.
    """
    p = Path(path)
    if p.is_dir():
        folder, pattern = p, f".*{_TMP_SUFFIX}"
    else:
        folder, pattern = p.parent, f".{glob.escape(p.name)}.*{_TMP_SUFFIX}"
    if not folder.is_dir():
        return []
    now = time.time()
    removed: list[Path] = []
    for leftover in folder.glob(pattern):
        parts = leftover.name[: -len(_TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            if now - leftover.stat().st_mtime < older_than or _pid_alive(int(parts[1])):
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        except OSError:
            continue
        removed.append(leftover)
    return removed


_OUTPUT_ERRNO_REASONS = {
    errno.EACCES: "permission denied: the folder '{folder}' is not writable",
    errno.EPERM: "permission denied: the folder '{folder}' is not writable",
    errno.EROFS: "the folder '{folder}' is on a read-only file system",
    errno.ENOSPC: "the disk holding '{folder}' is full",
    errno.EDQUOT: "the disk quota for '{folder}' is exhausted",
    errno.EFBIG: "the file grew larger than the file system allows",
    errno.ENOTDIR: "a part of the folder path '{folder}' is a file, not a folder",
    # mkdir(exist_ok=True) says "exists" when a file stands where a folder should.
    errno.EEXIST: "a part of the folder path '{folder}' is a file, not a folder",
}


def _output_error(exc: OSError, target: Path) -> OSError:
    """The same kind of ``OSError`` (same errno), naming the output the user asked for.

    Why: the hidden temporary file in the message means nothing to the user, who
    needs to know which of their outputs failed and what to do about it.
    """
    original = exc.strerror or str(exc)
    known = _OUTPUT_ERRNO_REASONS.get(exc.errno or 0)
    reason = f"{known.format(folder=target.parent)} ({original})" if known else original
    message = (
        f"cannot write '{target}': {reason}; nothing was written there. Choose another "
        "output path (--out) or fix the folder (permissions, free space) and run again."
    )
    try:
        if exc.errno is None:
            return type(exc)(message)
        return type(exc)(exc.errno, message)
    except Exception:  # an OSError subclass with another signature
        return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def _ours(exc: OSError, paths: tuple[Path, ...]) -> bool:
    """Whether ``exc`` is about the output being written (not some input read meanwhile)."""
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return not names or any(Path(os.fsdecode(n)) in paths for n in names)


def temporary_folder(target: str | os.PathLike[str]) -> Path:
    """Create a private working folder next to ``target`` and return it.

    Named ``.<name>.<pid>.<random>.cgtmp`` so that :func:`cleanup_stale` (run first,
    here) removes it once its process is gone: a killed partitioned run or model save
    leaves nothing behind for long. The caller removes it when done.
    """
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cleanup_stale(path)
        return Path(
            tempfile.mkdtemp(
                prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=path.parent
            )
        )
    except OSError as exc:
        raise _output_error(exc, path) from exc


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On error the temporary file is removed and ``path`` is left untouched. The
    finished file has the permissions a new file of the user gets
    (``0o666 & ~umask``). Leftovers of killed runs older than
    :data:`STALE_AFTER_SECONDS` are removed first (:func:`cleanup_stale`).

    Raises
    ------
    OSError
        Of the original kind (``PermissionError``, ``OSError(ENOSPC)``...), naming
        ``path`` rather than the hidden temporary file, when the folder cannot be
        created or written or the disk is full.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        cleanup_stale(target)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise _output_error(exc, target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    except OSError as exc:
        if _ours(exc, (tmp_path, target, target.parent)):
            raise _output_error(exc, target) from exc
        raise
    except duckdb.IOException as exc:
        # A DuckDB COPY into the temporary file (full disk...): name the real output.
        if str(tmp_path) in str(exc):
            message = str(exc).replace(str(tmp_path), str(target)).splitlines()[0]
            raise OSError(f"cannot write '{target}': {message}") from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            if tmp_path.exists():
                tmp_path.unlink()


# --------------------------------------------------------------------------- writing


def quarantine_path(output: str | os.PathLike[str]) -> Path:
    """Where the unusable rows of a run go: ``<output>.quarantine.csv`` beside it."""
    out = Path(output)
    if out.suffix:
        return out.with_name(out.stem + ".quarantine.csv")
    return out / "quarantine.csv"


# Cells a spreadsheet would run as a formula: OWASP's list of leading characters.
_FORMULA_START = r"^[=+\-@\t\r]"
# ...except plain numbers held as text (e.g. "-2.5", "+3"), which no spreadsheet runs.
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _escaped_text(values: pd.Series) -> pd.Series | None:
    """``values`` with formula-like text cells prefixed by ``'``; None when none is."""
    try:
        arrow = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arrow = None  # mixed Python objects: found with pandas below
    if arrow is not None:
        if not pa.types.is_string(arrow.type) and not pa.types.is_large_string(arrow.type):
            return None
        # Arrow scans the column in C++; only the few hits go through Python.
        hits = pc.fill_null(pc.match_substring_regex(arrow, _FORMULA_START), False)
        hits = pc.and_(
            hits, pc.invert(pc.fill_null(pc.match_substring_regex(arrow, _PLAIN_NUMBER), False))
        )
        at = np.flatnonzero(np.asarray(hits.to_numpy(zero_copy_only=False), dtype=bool))
    else:
        text = values.where(values.map(lambda v: isinstance(v, str)).astype(bool))
        hits_series = text.str.match(_FORMULA_START, na=False) & ~text.str.match(
            _PLAIN_NUMBER, na=False
        )
        at = np.flatnonzero(hits_series.to_numpy(dtype=bool))
    if not len(at):
        return None
    out = values.copy()
    out.iloc[at] = "'" + values.iloc[at].astype(str)
    return out


def escape_formulas_sql(text: str) -> str:
    """DuckDB SQL applying :func:`escape_formulas` to the text expression ``text``.

    For CSVs written by DuckDB's ``COPY`` (quarantine files, partitioned outputs), so
    that they match what :func:`write_table` writes: e.g.
    ``f"SELECT {escape_formulas_sql('CAST(reasons AS VARCHAR)')} AS reasons ..."``.
    """
    risky = f"regexp_matches({text}, {quote_literal(_FORMULA_START)})"
    number = f"regexp_matches({text}, {quote_literal(_PLAIN_NUMBER)})"
    return f"CASE WHEN {risky} AND NOT {number} THEN chr(39) || {text} ELSE {text} END"


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with spreadsheet-formula-like text cells made inert.

    A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return gets a leading ``'`` (OWASP's CSV-injection advice): a spreadsheet then
    shows ``=HYPERLINK("http://x","click")`` or ``+cmd|' /C calc'!A0`` as text
    instead of running it. Why only text: numeric columns cannot hold a formula and
    are never touched (``-2.5`` stays a number), and text that is a plain number
    (``"-2.5"``, ``"+3"``) is left as it is, since no spreadsheet runs it; ``-2+3``
    is a formula and is escaped. Column names are treated like cells.

    The caller's frame is not modified; it is returned itself when nothing needs
    escaping. Vectorised: text columns are scanned by Arrow, and only the matching
    cells are rewritten.
    """
    out: pd.DataFrame | None = None
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cats = _escaped_text(pd.Series(dtype.categories.to_numpy(dtype=object)))
            if cats is None:
                continue
            fixed = column.cat.rename_categories(cats.tolist())
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            escaped = _escaped_text(column)
            if escaped is None:
                continue
            fixed = escaped
        else:
            continue
        if out is None:
            out = frame.copy(deep=False)
        out.isetitem(i, fixed.array)
    names = pd.Series(list(frame.columns), dtype=object)
    renamed = _escaped_text(names) if len(names) else None
    if renamed is not None:
        out = (frame.copy(deep=False) if out is None else out).set_axis(renamed.tolist(), axis=1)
    return frame if out is None else out


def write_table(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    neutralize_formulas: bool = True,
) -> Path:
    """Write ``frame`` atomically as CSV or Parquet (by extension) and return the path.

    Parameters
    ----------
    frame : DataFrame
        The table; not modified.
    path : path-like
        ``.csv`` or ``.parquet`` output, written through :func:`atomic_path` (a
        killed run leaves no partial file; permissions follow the umask).
    neutralize_formulas : bool
        CSV only: prefix text cells that a spreadsheet would run as a formula with
        ``'`` (see :func:`escape_formulas`); numbers are never changed. Pass False
        when the CSV is only read by programs that need the text byte for byte.
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
            out = escape_formulas(frame) if neutralize_formulas else frame
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
