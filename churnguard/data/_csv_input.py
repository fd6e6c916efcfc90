"""CSV inputs read by DuckDB: encodings, delimiter sniffing and readable errors.

Why: DuckDB's sniffer finds the delimiter and quoting of a CSV, but its errors name
neither the fix nor, for a transcoded copy, the user's file. Here a file that is not
UTF-8 gets an error that says so and names the ``--encoding`` option instead of a bare
``UnicodeDecodeError``, encodings DuckDB cannot read are transcoded to a temporary UTF-8
copy (:func:`readable_csv`), and a header the sniffer left as one column is either
re-read with the delimiter it holds or reported with its first ragged line
(:func:`csv_columns`); a header that repeats a column churnguard reads is refused
(:func:`check_unique_headers`). Used by :mod:`churnguard.data.io` and the scan; the public names
are re-exported by :mod:`churnguard.data.io`.
"""

from __future__ import annotations

import codecs
import csv
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import duckdb

from churnguard._duckdb import quote_literal
from churnguard.data.columns import duplicate_column_error
from churnguard.exceptions import InputDataError

__all__ = [
    "ENCODING_HINT",
    "check_unique_headers",
    "csv_columns",
    "csv_relation",
    "normalize_encoding",
    "readable_csv",
    "translate_csv_error",
]

# DuckDB reads these encodings itself; any other Python codec is transcoded first.
_DUCKDB_ENCODINGS = {"utf-8": "utf-8", "iso8859-1": "latin-1", "utf-16": "utf-16"}
#: How to fix a file in another encoding (the end of an error message).
ENCODING_HINT = (
    "pass --encoding latin-1 (encoding='latin-1' from Python), or --encoding cp1252 for "
    "files saved by Excel on Windows, or re-save the file as UTF-8"
)
# Characters a CSV header holding one column name may in fact be split by.
_DELIMITERS = (",", ";", "\t", "|")


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
                f"check which encoding wrote it and {ENCODING_HINT}."
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
    bom = _utf16_bom(path)
    if bom and "16" not in encoding:
        return InputDataError(
            f"'{path}' is UTF-16 text (it starts with a UTF-16 byte-order mark, as Excel's "
            f'"Unicode text" saves it), not {encoding}: pass --encoding utf-16.'
        )
    text = str(exc)
    line = re.search(r"on Line: (\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    if "not utf-8 encoded" in text or "Invalid unicode" in text:
        return InputDataError(
            f"'{path}' is not UTF-8 text{where}: it holds bytes that are not valid UTF-8, so it "
            f"was probably saved in another encoding such as Latin-1; {ENCODING_HINT}."
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


def _utf16_bom(path: Path) -> bool:
    """Whether the file starts with a UTF-16 byte-order mark (either byte order)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        return False


def _text(path: Path, encoding: str) -> TextIO:
    """The file as text for Python's ``csv``, on error paths only.

    A UTF-8 byte-order mark is dropped (as DuckDB drops it) and undecodable bytes are
    replaced, so that they cannot stop the search for the bad line.
    """
    utf8 = codecs.lookup(encoding).name == "utf-8"
    return open(path, encoding="utf-8-sig" if utf8 else encoding, errors="replace", newline="")


def _ragged_line(path: Path, encoding: str, delimiter: str) -> tuple[int, int, int] | None:
    """(line number, fields, header fields) of the first row with a wrong field count.

    Only called on the error path (DuckDB's sniffer gave up), so a plain Python pass
    over the file is acceptable.
    """
    with _text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(row), len(header)
    return None


def _broken_quote_line(path: Path, encoding: str) -> int | None:
    """The line (1-based) where the file's quoting breaks, or None when it holds.

    Read as the CSV standard reads it (Python's ``csv`` in strict mode, the delimiter
    the one the header line uses most): a quoted field may span lines, and a quote
    must close before the next delimiter. Only called when the header names came back
    with their quotes, so a plain Python pass over the file is acceptable.
    """
    with _text(path, encoding) as fh:
        header = fh.readline()
        delimiter = max(_DELIMITERS, key=header.count)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            for _ in reader:
                pass
        except csv.Error:
            return max(reader.line_num, 1)
    return None


def _check_quotes_read(path: Path, encoding: str, names: list[str], shown: Path) -> None:
    """Refuse a CSV that DuckDB read without quoting because a quote is broken.

    Why: one quote opened and never closed (``"b,"2024-01-02"``) makes DuckDB's
    sniffer read the whole file without quote handling, so the header names keep
    their quotes (``"customer_id"``) and, were the names passed as they are, every id
    would too (``"a"`` another customer than ``a``). A file whose quoting is sound
    (header names that are quoted text, written with doubled quotes) is left alone.
    """
    if not names or not all(len(n) > 1 and n[0] == n[-1] == '"' for n in names):
        return
    line = _broken_quote_line(path, encoding)
    if line is None:
        return
    raise InputDataError(
        f"'{shown}' has a broken quote by line {line} (a quoted field not closed before "
        f"the next delimiter or the end of the file), so the file was read without quote "
        f"handling and its header names kept their quotes ({names[0]}, ...). Fix that "
        'line: quote a field whole ("a, b") and double a quote inside one '
        '("say ""hi"""). Rows around a broken quote cannot be told apart safely, so the '
        "file is not read."
    )


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
    _check_quotes_read(path, encoding, names, shown)
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


def check_unique_headers(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    encoding: str,
    delimiter: str | None,
    available: list[str],
    used: dict[str, str],
    *,
    display: Path | None = None,
) -> None:
    """Refuse a CSV whose header names a column churnguard reads more than once.

    Why: DuckDB renames the second ``amount`` of a header to ``amount_1``, so the
    first would be read as the amount without a word, and which of the two holds the
    amounts is a guess. ``available`` are DuckDB's (renamed) names and ``used`` maps
    each canonical column to the name it is looked for under; duplicates are counted
    regardless of case, as DuckDB compares names. The header line itself is read only
    when a renamed name is there, so a usual file costs nothing more.

    Raises
    ------
    InputDataError
        Naming the column, how many times the header has it, the names DuckDB gave
        them and the two ways out (rename the others, or pass ``name_1``).
    """
    suspects = {
        canon: user
        for canon, user in used.items()
        if any(re.fullmatch(re.escape(user) + r"_\d+", name, re.IGNORECASE) for name in available)
    }
    if not suspects:
        return
    delim = delimiter
    if delim is None:
        sniffed = con.sql(
            f"SELECT Delimiter FROM sniff_csv({quote_literal(str(path))}, "
            f"encoding = {quote_literal(encoding)})"
        ).fetchall()
        delim = str(sniffed[0][0]) if sniffed else ","
    relation = (
        f"read_csv({quote_literal(str(path))}, header = false, skip = 0, all_varchar = true, "
        f"encoding = {quote_literal(encoding)}, delim = {quote_literal(delim)})"
    )
    rows = con.sql(f"SELECT * FROM {relation} LIMIT 1").fetchall()
    header = [str(v) for v in rows[0]] if rows else []
    for canon, user in suspects.items():
        # DuckDB tells header names apart regardless of case ('Amount' then 'amount'
        # is read as 'Amount', 'amount_1'), so the duplicates are counted that way.
        at = [i for i, h in enumerate(header) if h.casefold() == user.casefold()]
        if len(at) < 2:
            continue
        aligned = len(header) == len(available)  # then DuckDB's names are by position
        exact = [i for i in at if header[i] == user]
        if aligned and len(exact) == 1 and available[exact[0]] == user:
            continue  # the one column of exactly that name, which DuckDB left unrenamed
        read_as = [available[i] for i in at] if aligned else None
        raise duplicate_column_error(canon, user, len(at), f"'{display or path}'", read_as)
