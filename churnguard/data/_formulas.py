"""CSV (formula) injection: text cells a spreadsheet would run are made inert.

Why: a retention list or quarantine file is opened in a spreadsheet, and a customer id
or a reason such as ``=HYPERLINK(...)`` must show as text there instead of running. A
text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
leading ``'`` (OWASP's advice; see :func:`escape_formulas`), in pandas
(:func:`escape_formulas`) and in DuckDB SQL for CSVs written by ``COPY``
(:func:`escape_formulas_sql`), so that both kinds of CSV match. The public names are
re-exported by :mod:`churnguard.data.io`.

Escaping is on by default. :func:`formulas_escaped` turns it off for a block of code
(``churnguard --raw-csv``), for CSVs read only by programs that need every cell byte
for byte: one process-wide switch, so that every writer (pandas, DuckDB, the threads
of a partitioned run) follows it without an option threaded through each call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._duckdb import quote_literal

__all__ = ["escape_formulas", "escape_formulas_sql", "escaping_formulas", "formulas_escaped"]

# A plain global, not a ContextVar: worker threads of a partitioned run must see it.
_ESCAPE = [True]
_LOCK = threading.Lock()


def escaping_formulas() -> bool:
    """Whether CSV outputs escape formula-like cells now (True unless turned off)."""
    return _ESCAPE[0]


@contextmanager
def formulas_escaped(enabled: bool) -> Iterator[None]:
    """Turn formula escaping of CSV outputs on or off inside a ``with`` block.

    Examples
    --------
    >>> with formulas_escaped(False):  # doctest: +SKIP
    ...     score_transactions(tx, model, out="for-a-program.csv")
    """
    with _LOCK:
        before, _ESCAPE[0] = _ESCAPE[0], bool(enabled)
    try:
        yield
    finally:
        with _LOCK:
            _ESCAPE[0] = before


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
    if not escaping_formulas():
        return text
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
    if not escaping_formulas():
        return frame
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
