"""Writing tables: CSV-injection escaping, umask permissions, stale temporaries, errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from churnguard.data import cleanup_stale, write_table
from churnguard.data.io import (
    atomic_path,
    check_not_input,
    current_umask,
    escape_formulas,
    read_columns,
    read_table,
)
from churnguard.exceptions import InputDataError

_ATTACKS = [
    '=HYPERLINK("http://x","click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "\tx",
    "\rx",
]


def _raw_cells(path: Path, column: str) -> list[str]:
    return pd.read_csv(path, dtype=str, keep_default_na=False)[column].tolist()


# --------------------------------------------------------------------------- CSV injection


def test_formula_cells_get_a_leading_quote_in_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "text": [*_ATTACKS, "ok", "-2.5", "+3", None],
            "number": [-2.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -7.0, 8.0, 9.0],
            "typed": pd.array([*_ATTACKS, "ok", "-2.5", "+3", None], dtype="string"),
            "category": pd.Categorical([*_ATTACKS, "ok", "-2.5", "+3", None]),
        }
    )
    before = frame.copy()
    out = write_table(frame, tmp_path / "out.csv")
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    text = out.read_bytes().decode("utf-8")
    assert text.count("'\rx") == 3  # pandas writes a lone CR unquoted: checked as text
    clean = out.with_name("clean.csv")
    clean.write_text(text.replace("'\rx", "CR"), newline="")
    for column in ("text", "typed", "category"):
        cells = _raw_cells(clean, column)
        assert cells[:5] == ["'" + a for a in _ATTACKS[:5]]
        assert cells[5:] == ["CR", "ok", "-2.5", "+3", ""]
    assert _raw_cells(clean, "number")[0] == "-2.5"  # numbers are never touched


def test_parquet_and_the_opt_out_are_unchanged(tmp_path: Path) -> None:
    frame = pd.DataFrame({"text": _ATTACKS})
    parquet = write_table(frame, tmp_path / "out.parquet")
    assert pd.read_parquet(parquet)["text"].tolist() == _ATTACKS
    raw = write_table(frame, tmp_path / "raw.csv", neutralize_formulas=False)
    assert (
        pd.read_csv(raw, keep_default_na=False)["text"].str.strip("\r").tolist()[:4]
        == (_ATTACKS[:4])
    )


def test_formula_like_column_names_are_escaped_too() -> None:
    frame = pd.DataFrame({"=1+1": ["a"], "ok": ["b"]})
    assert list(escape_formulas(frame).columns) == ["'=1+1", "ok"]
    plain = pd.DataFrame({"a": ["b"], "n": [1]})
    assert escape_formulas(plain) is plain  # nothing to do: no copy


def test_mixed_object_columns_are_escaped_cell_by_cell() -> None:
    frame = pd.DataFrame({"mixed": ["=x", 3, None, 2.5, "y"]})
    assert escape_formulas(frame)["mixed"].tolist()[:2] == ["'=x", 3]


# --------------------------------------------------------------------------- permissions


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    os.umask(mask)
    assert current_umask() == mask
    for name in ("out.csv", "out.parquet"):
        path = write_table(pd.DataFrame({"a": [1]}), tmp_path / name)
        assert path.stat().st_mode & 0o777 == mode


# --------------------------------------------------------------------------- leftovers


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(folder: Path, target: str, pid: int, age: float) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{target}.{pid}.", suffix=".cgtmp", dir=folder)
    os.close(fd)
    when = time.time() - age
    os.utime(name, (when, when))
    return Path(name)


def test_cleanup_removes_only_old_leftovers_of_dead_runs(tmp_path: Path) -> None:
    dead = _dead_pid()
    old = _leftover(tmp_path, "out.csv", dead, 7200)
    fresh = _leftover(tmp_path, "out.csv", dead, 10)
    running = _leftover(tmp_path, "out.csv", os.getpid(), 7200)
    other = _leftover(tmp_path, "other.csv", dead, 7200)
    user = tmp_path / ".out.csv.notes.txt"
    user.write_text("mine")
    assert cleanup_stale(tmp_path / "out.csv") == [old]
    assert fresh.exists() and running.exists() and other.exists() and user.exists()
    assert cleanup_stale(tmp_path) == [other]  # a folder: every output's leftovers
    assert cleanup_stale(tmp_path, older_than=0) == [fresh]


def test_a_new_write_removes_stale_leftovers(tmp_path: Path) -> None:
    old = _leftover(tmp_path, "out.csv", _dead_pid(), 7200)
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert not old.exists()


def test_killed_writes_leave_nothing_visible(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.csv") as tmp:
        assert tmp.name.startswith(".out.csv.") and tmp.name.endswith(".cgtmp")
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- errors


def test_full_disk_names_the_output_not_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "scores.csv"

    def full(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as err:
        write_table(pd.DataFrame({"a": [1]}), target)
    assert err.value.errno == errno.ENOSPC
    msg = str(err.value)
    assert str(target) in msg and "full" in msg and ".cgtmp" not in msg
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_names_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "scores.csv"

    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".scores.csv.1.x"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as err:
        write_table(pd.DataFrame({"a": [1]}), target)
    msg = str(err.value)
    assert str(target) in msg and "not writable" in msg and "--out" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_really_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="ro/scores.csv"):
            write_table(pd.DataFrame({"a": [1]}), folder / "scores.csv")
    finally:
        folder.chmod(0o755)


def test_a_file_in_the_way_of_the_folder_names_the_output(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(OSError, match="blocker/out.csv"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "blocker" / "out.csv")


def test_errors_while_reading_inside_the_block_are_not_blamed_on_the_output(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError) as err, atomic_path(tmp_path / "out.csv"):
        open(tmp_path / "missing-input.csv")  # the error is the point
    assert "missing-input" in str(err.value)


# --------------------------------------------------------------------------- reading


def test_read_columns_sniffs_and_reports_encodings(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("customer_id;date;amount\na;2024-01-01;1\n")
    assert read_columns(semi) == ["customer_id", "date", "amount"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("client\xe9,date,amount\na,2024-01-01,1\n".encode("latin-1"))
    with pytest.raises(InputDataError, match="--encoding latin-1"):
        read_columns(latin)
    assert read_columns(latin, encoding="latin-1")[0] == "client\xe9"
    with pytest.raises(InputDataError, match="--encoding latin-1"):
        read_table(latin)


def test_an_output_that_is_the_input_log_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "sales.csv"
    log.write_text("customer_id,date,amount\n1,2024-01-01,5\n")
    with pytest.raises(InputDataError, match="--out 'sales.csv' is the input log"):
        check_not_input("sales.csv", "sales.csv")
    # The same file under another spelling, and the quarantine file beside the output.
    with pytest.raises(InputDataError, match="is the input log"):
        check_not_input(tmp_path / "." / "sales.csv", log)
    quarantine = tmp_path / "list.quarantine.csv"
    quarantine.write_text("x\n")
    with pytest.raises(InputDataError, match="the quarantine file of --report"):
        check_not_input(tmp_path / "list.csv", quarantine, option="--report")
    check_not_input(tmp_path / "list.csv", log)  # another file: fine
    check_not_input(None, log)  # nothing written
    check_not_input(log, pd.DataFrame())  # a frame has no file
    assert log.read_text().startswith("customer_id")
