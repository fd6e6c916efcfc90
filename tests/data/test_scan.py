"""scan_transactions: the validation rules, the count identity and every kind of source.

Each rule has a regression test that failed on the pandas cleaning it replaced
(``NA`` ids, offsets applied to dates, future and placeholder dates, 1e308 amounts,
Latin-1 files, semicolon files, unreadable optional values counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import churnguard.data._scan_rows as scan_rows
import churnguard.data.scan as scan_module
from churnguard.data import (
    ColumnMap,
    DataQualityWarning,
    LoadedTransactions,
    ScannedTransactions,
    clean_transactions,
    load_transactions,
    scan_transactions,
)
from churnguard.exceptions import InputDataError

TODAY = "2024-06-30"  # fixed, so that no test depends on the machine's clock


def _csv(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def _identity(scan: ScannedTransactions) -> None:
    """Every row read is used, quarantined or counted after as-of."""
    assert scan.rows_read == scan.rows_used + scan.rows_quarantined + scan.rows_after_as_of
    if scan.quarantine_path is None:
        assert len(scan.quarantine) == scan.rows_quarantined


# --------------------------------------------------------------------------- ids


def test_na_like_texts_are_ids_in_a_csv(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        """
        customer_id,date,amount
        NA,2024-01-01,1
        NULL,2024-01-02,2
        None,2024-01-03,3
        nan,2024-01-04,4
        N/A,2024-01-05,5
        ,2024-01-06,6
        "   ",2024-01-07,7
        """,
    )
    loaded = load_transactions(path, today=TODAY)
    assert sorted(loaded.transactions["customer_id"]) == ["N/A", "NA", "NULL", "None", "nan"]
    assert loaded.quarantine["reason"].tolist() == ["missing customer id"] * 2
    assert loaded.quarantine["source_row"].tolist() == [5, 6]


def test_parquet_nulls_are_missing_but_na_text_is_an_id(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": ["NA", None, "NULL", " "],
                "date": pa.array([pd.Timestamp("2024-01-01")] * 4),
                "amount": [1.0, 2.0, 3.0, 4.0],
            }
        ),
        path,
    )
    scan = scan_transactions(path, today=TODAY)
    assert scan.transactions.column("customer_id").to_pylist() == ["NA", "NULL"]
    assert scan.quarantined == {"missing customer id": 2}
    assert scan.quarantine["source_row"].tolist() == [1, 3]


def test_na_text_ids_in_a_frame_are_kept() -> None:
    raw = pd.DataFrame(
        {"customer_id": ["NA", None, "nan"], "date": ["2024-01-01"] * 3, "amount": [1, 2, 3]}
    )
    out = clean_transactions(raw, today=TODAY)
    assert out.transactions["customer_id"].tolist() == ["NA", "nan"]
    assert out.quarantine["source_row"].tolist() == [1]


def test_ids_are_stripped_of_unicode_spaces_too() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["\u00a0a\u3000", "a", "\u00e9", " \t"],
            "date": ["2024-01-01"] * 4,
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    out = clean_transactions(raw, today=TODAY)
    assert out.transactions["customer_id"].tolist() == ["a", "a", "\u00e9"]
    assert out.quarantine["reason"].tolist() == ["missing customer id"]


# --------------------------------------------------------------------------- dates


_TZ_SCRIPT = """
import json, sys
from churnguard.data import load_transactions
tx = load_transactions(sys.argv[1], today="2024-06-30").transactions
print(json.dumps([str(tx["date"].dtype), [str(d) for d in tx["date"]]]))
"""


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_offsets_keep_the_local_time_as_written_whatever_tz(tmp_path: Path, zone: str) -> None:
    path = _csv(
        tmp_path,
        """
        customer_id,date,amount
        a,1997-01-01T23:30:00-05:00,1
        b,1997-01-01T23:30:00+09:00,2
        c,1997-01-01T00:30:00Z,3
        d,1997-01-01,4
        """,
    )
    env = dict(os.environ, TZ=zone)
    run = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    dtype, dates = json.loads(run.stdout.strip().splitlines()[-1])
    assert dtype == "datetime64[ns]"
    assert dates == [
        "1997-01-01 23:30:00",
        "1997-01-01 23:30:00",
        "1997-01-01 00:30:00",
        "1997-01-01 00:00:00",
    ]


def test_offsets_ignore_tz_in_process_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _csv(tmp_path, "customer_id,date,amount\na,1997-01-01T23:30:00-05:00,1\n")
    seen = []
    for zone in ("UTC", "America/New_York"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        seen.append(scan_transactions(path, today=TODAY).transactions.column("date")[0].as_py())
    monkeypatch.delenv("TZ")
    time.tzset()
    assert seen[0] == seen[1] == pd.Timestamp("1997-01-01 23:30:00")


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo", "-05:00"])
def test_zoned_timestamps_keep_their_wall_clock_time(tmp_path: Path, zone: str) -> None:
    stamps = pd.to_datetime(["2024-01-01 23:30", "2024-01-02 00:15"])
    frame = pd.DataFrame(
        {"customer_id": ["a", "a"], "date": stamps.tz_localize(zone), "amount": [1.0, 2.0]}
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    for source in (path, frame, pa.Table.from_pandas(frame)):
        tx = scan_transactions(source, today=TODAY).transactions
        assert tx.schema.field("date").type == pa.timestamp("ns")
        assert tx.column("date").to_pylist() == list(stamps)


def test_date_format_with_a_zone_keeps_the_time_as_written() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01 10:00 +0100"], "amount": [1]})
    tx = clean_transactions(raw, ColumnMap(date_format="%Y-%m-%d %H:%M %z"), today=TODAY)
    assert tx.transactions["date"].iloc[0] == pd.Timestamp("2024-01-01 10:00")


def test_invalid_date_format_names_the_option() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1]})
    with pytest.raises(InputDataError, match="--date-format"):
        clean_transactions(raw, ColumnMap(date_format="%Q"), today=TODAY)


def test_iso_shapes_pandas_read_still_parse() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": list("abcde"),
            "date": [" 2024-01-05 ", "20240105", "2024/01/05", "2024-1-5", "2024-01-05T10:00"],
            "amount": [1.0] * 5,
        }
    )
    tx = clean_transactions(raw, today=TODAY).transactions
    assert tx["date"].dt.date.astype(str).tolist() == ["2024-01-05"] * 5


def test_future_dates_are_quarantined_with_a_warning(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        """
        customer_id,date,amount
        a,2024-01-01,1
        b,2024-06-30,2
        c,2099-12-31,3
        """,
    )
    with pytest.warns(DataQualityWarning, match=r"1 rows .* after today \(2024-06-30\)"):
        scan = scan_transactions(path, today=TODAY)
    assert scan.quarantined == {"date in the future": 1}
    assert scan.last_date == pd.Timestamp("2024-06-30").date()  # the default as-of
    assert scan.quarantine["source_row"].tolist() == [2]


def test_placeholder_dates_before_the_floor_are_quarantined() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "date": ["1900-01-01", "1969-12-31", "1970-01-01"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    out = clean_transactions(raw, today=TODAY)
    assert out.quarantine["reason"].tolist() == ["date before 1970-01-01"] * 2
    assert out.transactions["customer_id"].tolist() == ["c"]


def test_a_custom_floor_is_named_in_the_reason() -> None:
    raw = pd.DataFrame(
        {"customer_id": ["a", "b"], "date": ["1999-12-31", "2000-01-01"], "amount": [1.0, 2.0]}
    )
    scan = scan_transactions(raw, today=TODAY, date_floor="2000-01-01")
    assert scan.quarantined == {"date before 2000-01-01": 1}


# --------------------------------------------------------------------------- amounts


def test_huge_amounts_are_implausible_not_summed() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "date": ["2024-01-01"] * 5,
            "amount": [1e308, 1e308, 5.0, -2e12, float("inf")],
        }
    )
    scan = scan_transactions(raw, today=TODAY)
    assert scan.quarantined == {"implausible amount": 3, "non-numeric amount": 1}
    assert scan.transactions.column("amount").to_pylist() == [5.0]
    assert scan_transactions(raw, today=TODAY, max_amount=1e309).rows_used == 4


def test_options_are_validated() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(ValueError, match="max_amount"):
        scan_transactions(raw, max_amount=0)
    with pytest.raises(ValueError, match="date_floor"):
        scan_transactions(raw, date_floor="2030-01-01", today=TODAY)
    with pytest.raises(ValueError, match="as_of"):
        scan_transactions(raw, as_of="not a date")
    with pytest.raises(TypeError, match="CSV or Parquet path"):
        scan_transactions(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- encodings, delimiters


def test_latin1_file_gets_an_encoding_hint_not_a_codec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("customer_id,date,amount,product\na,2024-01-01,1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputDataError) as err:
        load_transactions(path, today=TODAY)
    msg = str(err.value)
    assert str(path) in msg and "not UTF-8" in msg and "--encoding latin-1" in msg
    assert "codec can't decode" not in msg
    tx = load_transactions(path, encoding="latin-1", today=TODAY).transactions
    assert tx["product"].tolist() == ["caf\xe9"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_file_names_the_encoding_option(tmp_path: Path, codec: str) -> None:
    # Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab-separated.
    path = tmp_path / "unicode.csv"
    text = "customer_id\tdate\tamount\n00042\t2024-01-01\t1.5\n00042\t2024-02-01\t2\n"
    bom = "\ufeff" if codec == "utf-16-be" else ""
    path.write_bytes((bom + text).encode(codec))
    with pytest.raises(InputDataError, match="is UTF-16 text.*--encoding utf-16"):
        load_transactions(path, today=TODAY)
    if codec == "utf-16":
        tx = load_transactions(path, encoding="utf-16", today=TODAY).transactions
        assert tx["customer_id"].tolist() == ["00042", "00042"]


def test_latin1_bytes_far_into_the_file_are_caught_too(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = "".join(f"c{i},2024-01-01,1\n" for i in range(30_000))
    path.write_bytes(("customer_id,date,amount\n" + rows + "\xe9,2024-01-01,1\n").encode("latin-1"))
    with pytest.raises(InputDataError, match="--encoding latin-1"):
        scan_transactions(path, today=TODAY)


def test_other_encodings_are_transcoded(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("customer_id,date,amount,product\na,2024-01-01,1,\u20ac5\n".encode("cp1252"))
    tx = load_transactions(path, encoding="cp1252", today=TODAY).transactions
    assert tx["product"].tolist() == ["\u20ac5"]
    with pytest.raises(InputDataError, match="unknown encoding"):
        load_transactions(path, encoding="klingon")


def test_semicolon_and_tab_files_are_sniffed(tmp_path: Path) -> None:
    for sep, name in ((";", "semi.csv"), ("\t", "tab.csv"), ("|", "pipe.csv")):
        path = tmp_path / name
        path.write_text(f"customer_id{sep}date{sep}amount\n00042{sep}2024-01-01{sep}1.5\n")
        tx = load_transactions(path, today=TODAY).transactions
        assert tx["customer_id"].tolist() == ["00042"] and tx["amount"].tolist() == [1.5]


def test_a_single_column_with_a_delimiter_says_so() -> None:
    raw = pd.DataFrame({"customer_id;date;amount": ["a;2024-01-01;1"]})
    with pytest.raises(InputDataError, match="seems to use ';' as its delimiter"):
        clean_transactions(raw)


def test_a_ragged_row_is_named_by_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, "customer_id;date;amount\na;2024-01-01;1\nb;2024-01-02;2;9\n")
    with pytest.raises(InputDataError, match=r"line 3 has 4 fields where the header has 3"):
        load_transactions(path, today=TODAY)


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_a_csv_header_with_two_amounts_is_refused(tmp_path: Path, delimiter: str) -> None:
    text = "customer_id,date,amount,amount\na,2024-01-01,1.5,99\nb,2024-01-02,2.5,77\n"
    path = _csv(tmp_path, text.replace(",", delimiter))
    with pytest.raises(InputDataError, match=r"2 columns named 'amount'.*'amount_1'.*--amount-col"):
        scan_transactions(path, today=TODAY)
    # DuckDB's name for the second one picks it, as the message says
    picked = scan_transactions(path, ColumnMap(amount="amount_1"), today=TODAY).transactions
    assert picked.column("amount").to_pylist() == [99.0, 77.0]


def test_an_optional_column_picked_up_by_name_is_checked_too(tmp_path: Path) -> None:
    text = "customer_id,date,amount,quantity,quantity\na,2024-01-01,1.5,2,3\n"
    with pytest.raises(InputDataError, match=r"2 columns named 'quantity'.*--quantity-col"):
        scan_transactions(_csv(tmp_path, text), today=TODAY)


def test_a_csv_column_really_named_like_a_duplicate_is_read(tmp_path: Path) -> None:
    path = _csv(tmp_path, "customer_id,date,amount,amount_1\na,2024-01-01,1.5,99\n")
    tx = scan_transactions(path, today=TODAY).transactions
    assert tx.column("amount").to_pylist() == [1.5]


def test_duplicates_are_named_by_duckdbs_own_names(tmp_path: Path) -> None:
    # a real 'amount_1' sits between the two amounts: DuckDB reads the second as amount_1_1
    path = _csv(tmp_path, "customer_id,date,amount,amount_1,amount\na,2024-01-01,1.5,7,99\n")
    with pytest.raises(InputDataError, match=r"read as 'amount', 'amount_1_1'"):
        scan_transactions(path, today=TODAY)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_names_that_differ_only_in_case_are_duplicates(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(
        {"customer_id": ["a"], "date": ["2024-01-01"], "Amount": [111.0], "amount": [1.0]}
    )
    path = tmp_path / f"log.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    with pytest.raises(InputDataError, match="2 columns named 'amount'"):
        scan_transactions(path, today=TODAY)
    if suffix == "csv":  # the exact name of the first is explicit: DuckDB kept it
        picked = scan_transactions(path, ColumnMap(amount="Amount"), today=TODAY).transactions
        assert picked.column("amount").to_pylist() == [111.0]
    # a frame tells them apart, as pandas does
    assert scan_transactions(frame, today=TODAY).transactions.column("amount").to_pylist() == [1.0]


def test_two_columns_of_one_name_in_a_table_are_refused(tmp_path: Path) -> None:
    arrays = [pa.array(["a"]), pa.array(["2024-01-01"]), pa.array([1.5]), pa.array([99.0])]
    table = pa.Table.from_arrays(arrays, names=["customer_id", "date", "amount", "amount"])
    pq.write_table(table, tmp_path / "log.parquet")
    sources = [table, table.to_pandas(), tmp_path / "log.parquet"]
    for source in sources:
        with pytest.raises(InputDataError, match="2 columns named 'amount'.*Rename or drop"):
            scan_transactions(source, today=TODAY)


def test_an_unclosed_quote_before_an_id_gets_a_warning(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'customer_id,date,amount\na,2024-01-01,1\n"b,2024-01-02,2\n')
    with pytest.warns(DataQualityWarning, match=r"1 customer id in .* begins with a double quote"):
        tx = scan_transactions(path, today=TODAY).transactions
    assert sorted(tx.column("customer_id").to_pylist()) == ['"b', "a"]  # kept as read


def test_an_unclosed_quote_in_a_quoted_file_is_named_by_line(tmp_path: Path) -> None:
    """One broken quote made DuckDB read every field with its quotes ('"customer_id"')."""
    text = '"customer_id","date","amount"\n"a","2024-01-01","1"\n"b,"2024-01-02","2"\n'
    path = _csv(tmp_path, text)
    with pytest.raises(InputDataError, match=r"broken quote by line 3"):
        scan_transactions(path, today=TODAY)
    fixed = _csv(tmp_path, text.replace('"b,', '"b",'), name="fixed.csv")
    assert scan_transactions(fixed, today=TODAY).transactions.num_rows == 2
    # Header names that are quoted text, and a note that spans two lines: sound quoting.
    sound = '"""id""","""date""","""amount""","note"\n"a","2024-01-01","1","one\ntwo"\n'
    names = ColumnMap(customer='"id"', date='"date"', amount='"amount"')
    got = scan_transactions(_csv(tmp_path, sound, name="sound.csv"), names, today=TODAY)
    assert got.transactions.column("customer_id").to_pylist() == ["a"]


def test_quoted_fields_and_frames_get_no_quote_warning(tmp_path: Path) -> None:
    text = 'customer_id,date,amount\n"a",2024-01-01,1\n"""b""",2024-01-02,2\n'
    path = _csv(tmp_path, text)  # the second id is '"b"', its quotes escaped
    frame = pd.DataFrame({"customer_id": ['"a'], "date": ["2024-01-01"], "amount": [1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        assert scan_transactions(path, today=TODAY).transactions.num_rows == 2
        assert scan_transactions(frame, today=TODAY).transactions.num_rows == 1


def test_decimal_comma_amounts_get_a_hint(tmp_path: Path) -> None:
    path = _csv(tmp_path, "customer_id;date;amount\na;2024-01-01;1,5\n")
    with pytest.raises(InputDataError, match="decimal comma"):
        load_transactions(path, today=TODAY)


# --------------------------------------------------------------------------- optional values


def test_unreadable_optional_values_are_counted_and_reported(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        """
        customer_id,date,amount,quantity
        a,2024-01-01,1,2
        a,2024-01-02,1,two
        b,2024-01-03,1,3 pcs
        b,2024-01-04,1,NA
        c,2024-01-05,1,
        d,2099-01-01,1,bad but quarantined
        """,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_transactions(path, today=TODAY)
    scan = loaded.scan
    assert scan is not None and scan.unreadable == {"quantity": 2}
    messages = [str(w.message) for w in caught if w.category is DataQualityWarning]
    assert any("2 values of column 'quantity'" in m and "two" in m for m in messages)
    assert loaded.transactions["quantity"].isna().tolist() == [False, True, True, True, True]
    assert scan.summary()["unreadable_values"] == {"quantity": 2}


# --------------------------------------------------------------------------- as-of, returns


def test_rows_after_as_of_are_counted_not_used() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "date": ["2024-01-01", "2024-03-01", "2024-02-15", "2024-01-10"],
            "amount": [5.0, 7.0, 1.0, -3.0],
        }
    )
    scan = scan_transactions(raw, as_of="2024-02-01", today=TODAY)
    assert scan.rows_after_as_of == 2 and scan.rows_used == 2
    assert scan.transactions.column("customer_id").to_pylist() == ["a", "c"]
    assert scan.returns_only_customers == ["c"] and scan.n_returns_only == 1
    assert scan.summary()["as_of"] == "2024-02-01"
    _identity(scan)


def test_returns_only_customers_are_listed() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c"],
            "date": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"],
            "amount": [-5.0, -1.0, 0.0, -2.0, 3.0],
        }
    )
    scan = scan_transactions(raw, today=TODAY)
    assert scan.returns_only_customers == ["a"]
    assert scan.customers == 3


def test_nothing_before_as_of_is_an_error_naming_the_option() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["2024-03-01"], "amount": [1.0]})
    with pytest.raises(InputDataError, match="--as-of"):
        scan_transactions(raw, as_of="2024-01-01", today=TODAY)


# --------------------------------------------------------------------------- the count identity


_MIXED = """
customer_id,date,amount,quantity,product
NA,2024-01-01,10,1,"=HYPERLINK(""http://x"",""click"")"
 00042 ,1997-01-01T23:30:00-05:00,5,two,p
,2024-01-02,3,1,p
NULL,2099-12-31,1,1,p
None,1900-01-01,1,1,p
nan,2024-01-05,abc,3 pcs,p
N/A,2024-01-05,1e308,,p
x,not a date,1,NA,p
r,2024-02-01,-5,1,-2+3
00042,2024-03-01,7,1,p
r,2024-02-01,inf,1,p
"""


def _mixed_sources(tmp_path: Path) -> dict[str, object]:
    csv = _csv(tmp_path, _MIXED)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    parquet = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    return {
        "csv": csv,
        "parquet": parquet,
        "frame": frame,
        "arrow": pa.Table.from_pandas(frame, preserve_index=False),
    }


@pytest.mark.parametrize("kind", ["csv", "parquet", "frame", "arrow"])
def test_every_row_is_used_quarantined_or_after_as_of(tmp_path: Path, kind: str) -> None:
    source = _mixed_sources(tmp_path)[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        scan = scan_transactions(source, as_of="2024-02-15", today=TODAY)  # type: ignore[arg-type]
    _identity(scan)
    assert scan.rows_read == 11
    assert scan.quarantined == {
        "missing customer id": 1,
        "unparsable date": 1,
        "date in the future": 1,
        "date before 1970-01-01": 1,
        "non-numeric amount": 2,
        "implausible amount": 1,
    }
    assert scan.rows_after_as_of == 1 and scan.rows_used == 3
    assert scan.transactions.column("customer_id").to_pylist() == ["00042", "NA", "r"]
    assert scan.unreadable == {"quantity": 1}
    assert scan.returns_only_customers == ["r"]
    assert scan.quarantine["source_row"].tolist() == [2, 3, 4, 5, 6, 7, 10]
    assert scan.quarantine.loc[0, "customer_id"] is pd.NA


def test_quarantine_can_go_straight_to_a_file(tmp_path: Path) -> None:
    csv = _csv(tmp_path, _MIXED)
    out = tmp_path / "out" / "bad.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        scan = scan_transactions(csv, as_of="2024-02-15", today=TODAY, quarantine_to=out)
    _identity(scan)
    assert scan.quarantine_path == out and scan.quarantine.empty
    assert list(scan.quarantine.columns) == list(pd.read_csv(out).columns)
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["source_row"].tolist() == ["2", "3", "4", "5", "6", "7", "10"]
    assert len(written) == scan.rows_quarantined
    assert scan.summary()["quarantine_file"] == str(out)
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def test_quarantine_file_neutralises_formulas(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["=cmd", "@SUM(1+1)", "a", "ok"],
            "date": ["2024-01-01", "2024-01-01", "bad", "2024-01-01"],
            "amount": ["x", "-2+3", "-2.5", "1"],
        }
    )
    out = tmp_path / "bad.csv"
    scan = scan_transactions(raw, today=TODAY, quarantine_to=out)
    text = out.read_text()
    assert "'=cmd" in text and "'@SUM(1+1)" in text and "'-2+3" in text
    assert ",-2.5," in text  # a plain number is not a formula
    assert scan.rows_quarantined == 3 and scan.rows_used == 1


def test_loaded_transactions_count_quarantine_written_to_a_file(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {"customer_id": ["a", None], "date": ["2024-01-01"] * 2, "amount": [1.0, 2.0]}
    )
    scan = scan_transactions(raw, today=TODAY, quarantine_to=tmp_path / "q.csv")
    assert LoadedTransactions.from_scan(scan).n_quarantined == 1


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# --------------------------------------------------------------------------- sources agree


def _random_log(seed: int, n: int = 3000, with_times: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.char.add("c", rng.integers(0, 400, n).astype(str))  # variable width
    day = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D")
    if with_times:
        day = day + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return pd.DataFrame(
        {
            "customer_id": ids,
            "date": day.strftime("%Y-%m-%d %H:%M:%S") if with_times else day.strftime("%Y-%m-%d"),
            "amount": np.round(rng.gamma(2.0, 20.0, n) - 5.0, 2),
            "channel": rng.choice(["web", "shop"], n),
        }
    )


@pytest.mark.parametrize("with_times", [False, True])
def test_csv_parquet_frame_and_arrow_give_the_same_rows(tmp_path: Path, with_times: bool) -> None:
    frame = _random_log(1, with_times=with_times)
    csv = tmp_path / "log.csv"
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "log.parquet"
    frame.assign(date=pd.to_datetime(frame["date"])).to_parquet(parquet)
    outs = [
        scan_transactions(s, today=TODAY).transactions
        for s in (csv, parquet, frame, pa.Table.from_pandas(frame))
    ]
    for other in outs[1:]:
        assert other.equals(outs[0])
    expected = frame.assign(date=pd.to_datetime(frame["date"])).sort_values(
        ["customer_id", "date"], kind="stable"
    )
    got = outs[0].to_pandas()
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    assert got["amount"].tolist() == expected["amount"].tolist()  # ties in file order


@pytest.mark.parametrize("path", ["packed", "threaded", "lexsort", "text"])
def test_every_sort_path_is_stable(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    frame = _random_log(2, n=5000, with_times=True)
    if path == "threaded":  # packed keys sorted in pieces on threads, then merged
        monkeypatch.setattr(scan_rows, "_SORT_PIECE", 700)
        monkeypatch.setattr(scan_rows, "_SORT_THREADS", 3)
    if path == "text":  # ids that cannot be packed: Arrow's stable text sort
        monkeypatch.setattr(scan_module, "id_values", lambda ids: None)
    if path == "lexsort":  # keys too wide for one 64-bit word: stable lexsort
        monkeypatch.setattr(scan_rows, "_time_of_day", lambda s, p: (2**62, s % p))
    got = clean_transactions(frame, today=TODAY).transactions
    expected = frame.assign(date=pd.to_datetime(frame["date"])).sort_values(
        ["customer_id", "date"], kind="stable"
    )
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    assert got["amount"].tolist() == expected["amount"].tolist()
    assert got["date"].tolist() == expected["date"].tolist()


def test_frame_index_labels_are_the_source_rows() -> None:
    raw = pd.DataFrame(
        {"customer_id": ["a", None, "b"], "date": ["2024-01-01"] * 3, "amount": [1, 2, "x"]},
        index=[10, 20, 30],
    )
    loaded = clean_transactions(raw, today=TODAY)
    assert loaded.quarantine["source_row"].tolist() == [20, 30]
    assert loaded.quarantine["reason"].tolist() == ["missing customer id", "non-numeric amount"]


def test_transactions_are_arrow_in_canonical_types(tmp_path: Path) -> None:
    frame = _random_log(3).assign(margin=1.0, quantity="2", product="p")
    scan = scan_transactions(frame, today=TODAY)
    schema = scan.transactions.schema
    assert schema.field("customer_id").type == pa.string()
    assert schema.field("date").type == pa.timestamp("ns")
    for name in ("amount", "margin", "quantity"):
        assert schema.field(name).type == pa.float64()
    for name in ("product", "channel"):
        assert schema.field(name).type == pa.string()
    pdf = scan.to_pandas()
    assert pdf["customer_id"].dtype == object and str(pdf["product"].dtype) == "string"
    assert scan.summary()["rows_used"] == len(frame)


def test_mixed_python_objects_in_a_frame_are_read_as_text() -> None:
    raw = pd.DataFrame(
        {"customer_id": [1, "b", 2.0], "date": ["2024-01-01"] * 3, "amount": ["10.5", 3, None]}
    )
    loaded = clean_transactions(raw, today=TODAY)
    assert loaded.transactions["customer_id"].tolist() == ["1", "b"]
    assert loaded.quarantine["reason"].tolist() == ["non-numeric amount"]


def test_long_random_ids_are_sorted_as_text() -> None:
    rng = np.random.default_rng(4)
    pool = ["".join(rng.choice(list("0123456789abcdef"), 32)) for _ in range(300)]
    frame = pd.DataFrame(
        {
            "customer_id": rng.choice(pool, 4000),
            "date": (pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 90, 4000), "D"))
            .strftime("%Y-%m-%d")
            .to_numpy(),
            "amount": np.arange(4000, dtype=float),
        }
    )
    got = clean_transactions(frame, today=TODAY).transactions
    expected = frame.assign(date=pd.to_datetime(frame["date"])).sort_values(
        ["customer_id", "date"], kind="stable"
    )
    assert got["amount"].tolist() == expected["amount"].tolist()


def test_quarantine_file_of_a_frame_uses_its_index_labels(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {"customer_id": ["a", None, "b"], "date": ["2024-01-01"] * 3, "amount": [1.0, 2.0, 3.0]},
        index=[100, 200, 300],
    )
    out = tmp_path / "q.csv"
    scan_transactions(raw, today=TODAY, quarantine_to=out)
    written = pd.read_csv(out)
    assert written["source_row"].tolist() == [200]
    assert written["reason"].tolist() == ["missing customer id"]


# --------------------------------------------------------------------------- formatted amounts


def test_amounts_in_a_human_format_are_an_error_when_most_rows_are(tmp_path: Path) -> None:
    # Whole amounts parse, the ones with a decimal comma do not: two thirds of the log
    # would be set aside and the list built from what is left.
    path = _csv(tmp_path, """
        customer_id;date;amount
        a;2024-01-02;12
        a;2024-02-03;19,99
        b;2024-01-05;7,50
        b;2024-03-01;1.234,50
        c;2024-01-09;$12.00
        c;2024-02-09;30
    """)  # fmt: skip
    with pytest.raises(InputDataError, match=r"4 of 6 rows \(67%\).*decimal comma") as err:
        scan_transactions(path, today=TODAY)
    assert "19,99" in str(err.value) and "1234.50" in str(err.value)


def test_a_date_format_that_reads_most_dates_wrong_is_an_error(tmp_path: Path) -> None:
    # Day-first dates read month-first: only days 1-12 parse (and those wrongly).
    path = _csv(tmp_path, """
        customer_id,date,amount
        a,05/01/2024,12
        a,23/02/2024,19
        b,17/01/2024,7
        b,28/03/2024,1
        c,30/01/2024,12
    """)  # fmt: skip
    with pytest.raises(InputDataError, match=r"4 of 5 rows \(80%\).*--date-format %m/%d/%Y") as err:
        scan_transactions(path, ColumnMap(date_format="%m/%d/%Y"), today=TODAY)
    assert "23/02/2024" in str(err.value) and "%d/%m/%Y for 31/12/2024" in str(err.value)
    # Read with the right format, every row is used.
    _identity(scan_transactions(path, ColumnMap(date_format="%d/%m/%Y"), today=TODAY))


def test_a_few_unreadable_dates_are_set_aside_not_refused(tmp_path: Path) -> None:
    rows = "".join(f"c{i},2024-01-{i % 28 + 1:02d},{i + 1}\n" for i in range(20))
    path = _csv(tmp_path, "customer_id,date,amount\n" + rows + "z,someday,5\n")
    scan = scan_transactions(path, today=TODAY)
    assert scan.quarantined == {"unparsable date": 1}


def test_a_few_formatted_amounts_warn_and_are_set_aside(tmp_path: Path) -> None:
    rows = "".join(f"c{i},2024-01-{i % 28 + 1:02d},{i + 1}.50\n" for i in range(20))
    path = _csv(tmp_path, "customer_id,date,amount\n" + rows + 'z,2024-02-01,"1,234.50"\n')
    with pytest.warns(DataQualityWarning, match=r"1 of 21 rows \(5%\).*1,234.50"):
        scan = scan_transactions(path, today=TODAY)
    assert scan.quarantined == {"non-numeric amount": 1}
    _identity(scan)


def test_plain_text_amounts_get_no_format_hint(tmp_path: Path) -> None:
    path = _csv(tmp_path, """
        customer_id,date,amount
        a,2024-01-02,12
        a,2024-02-03,lots
        b,2024-01-05,n/a
    """)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        scan = scan_transactions(path, today=TODAY)
    assert scan.quarantined == {"non-numeric amount": 2}


def test_a_dot_between_thousands_gets_a_warning(tmp_path: Path) -> None:
    # 1.173 pesos meaning 1173 parse as valid numbers a thousand times too small: no row
    # is set aside, so only the shape of the text can tell.
    values = range(800, 25_000, 900)
    amounts = [f"{v // 1000}.{v % 1000:03d}" if v >= 1000 else str(v) for v in values]
    rows = "".join(f"c{i % 5},2024-01-{i % 28 + 1:02d},{a}\n" for i, a in enumerate(amounts))
    path = _csv(tmp_path, "customer_id,date,amount\n" + rows)
    with pytest.warns(DataQualityWarning, match=r"exactly three digits after it.*thousand times"):
        scan = scan_transactions(path, today=TODAY)
    assert scan.quarantined == {}
    assert max(scan.transactions["amount"].to_pylist()) == 800.0  # read as written: a warning


def test_two_decimals_and_large_plain_amounts_get_no_thousands_hint(tmp_path: Path) -> None:
    # Two decimals; and three decimals beside a plain 1500 (dinars), which a thousands
    # separator would have written 1.500.
    two = "".join(f"c{i % 5},2024-01-{i % 28 + 1:02d},{i + 1}.25\n" for i in range(30))
    three = "".join(f"c{i % 5},2024-01-{i % 28 + 1:02d},{i + 1}.125\n" for i in range(30))
    below_one = three + "d,2024-02-01,0.500\n"
    for name, rows in (
        ("two", two),
        ("dinars", three + "d,2024-02-01,1500\n"),
        ("zero", below_one),
    ):
        path = _csv(tmp_path, "customer_id,date,amount\n" + rows, name=f"{name}.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataQualityWarning)
            scan_transactions(path, today=TODAY)


def test_epoch_numbers_are_named_as_such(tmp_path: Path) -> None:
    # --date-format cannot read them (there is no strftime code for epoch seconds), so
    # the message must not send the user there.
    path = tmp_path / "epoch.parquet"
    stamps = pd.to_datetime(["2024-01-02", "2024-02-03"]).astype("int64") // 10**9
    pd.DataFrame({"customer_id": ["a", "a"], "date": stamps, "amount": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(InputDataError, match="Unix epoch seconds.*to_timestamp") as err:
        load_transactions(path, today=TODAY)
    assert "pass --date-format" not in str(err.value)


def test_float_ids_are_read_as_the_integers_they_were(tmp_path: Path) -> None:
    # pandas saves an integer id column with one missing value as floats.
    path = tmp_path / "float_ids.parquet"
    ids = [10002.0, 4.0, None, 1.5, 2.0**60]
    frame = pd.DataFrame({"customer_id": ids, "date": ["2024-01-02"] * 5, "amount": [1.0] * 5})
    frame.to_parquet(path)
    with pytest.warns(DataQualityWarning, match="floating-point numbers"):
        scan = scan_transactions(path, today=TODAY)
    got = set(scan.transactions.column("customer_id").to_pylist())
    assert got == {"10002", "4", "1.5", "1.152921504606847e+18"}  # 2^60: beyond 2^53, as stored
    assert scan.quarantined == {"missing customer id": 1}


def test_an_as_of_before_every_row_says_only_that(tmp_path: Path) -> None:
    path = _csv(tmp_path, """
        customer_id,date,amount
        a,2024-01-02,12
        b,2024-01-05,7
    """)  # fmt: skip
    with pytest.raises(InputDataError) as err:
        scan_transactions(path, as_of="2023-06-30", today=TODAY)
    msg = str(err.value)
    assert "is on or before as_of" in msg and "2 usable rows are dated after" in msg
    assert "reasons" not in msg  # nothing was wrong with the rows


def test_an_as_of_after_today_warns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "customer_id,date,amount\na,2024-01-02,12\n")
    with pytest.warns(DataQualityWarning, match=r"as_of 2030-01-01 is after today \(2024-06-30\)"):
        scan = scan_transactions(path, as_of="2030-01-01", today=TODAY)
    assert scan.rows_used == 1
    recent = _csv(tmp_path, "customer_id,date,amount\na,2024-06-02,12\n", "recent.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        scan_transactions(recent, as_of=TODAY, today=TODAY)  # today itself is fine


def test_an_as_of_long_after_the_last_transaction_warns() -> None:
    log = pd.DataFrame(
        {"customer_id": ["a", "b"], "date": ["2024-01-01", "2024-02-01"], "amount": [1.0, 2.0]}
    )
    with pytest.warns(DataQualityWarning, match=r"as_of 2024-12-31 is 334 days after the last"):
        scan_transactions(log, as_of="2024-12-31", today=TODAY.replace("2024", "2025"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # a weekly job's lag is fine
        scan_transactions(log, as_of="2024-03-01", today=TODAY)
