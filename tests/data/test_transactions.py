"""Loading logs: formats, column mapping, identifiers, quarantine and errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnguard.data import (
    ColumnMap,
    clean_transactions,
    duplicate_rows_note,
    load_transactions,
    write_table,
)
from churnguard.data.io import atomic_path, read_columns
from churnguard.exceptions import InputDataError


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "client": ["00042", "00042", "7", None, "00042"],
            "when": ["2024-01-01", "2024-01-05", "not a date", "2024-01-02", "2024-02-01"],
            "value": ["10.5", "abc", "3", "4", "0"],
        }
    )


def test_ids_keep_leading_zeros_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("customer_id,date,amount\n00042,2024-01-01,1\n42,2024-01-02,2\n")
    tx = load_transactions(path).transactions
    assert sorted(tx["customer_id"]) == ["00042", "42"]


def test_numeric_ids_in_parquet_become_text(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {"customer_id": [1, 2], "date": pd.to_datetime(["2024-01-01"] * 2), "amount": [1.0, 2.0]}
    ).to_parquet(path)
    tx = load_transactions(path).transactions
    assert tx["customer_id"].tolist() == ["1", "2"]
    assert tx["date"].dtype == "datetime64[ns]"


def test_bad_rows_are_quarantined_with_reasons_not_dropped() -> None:
    raw = _raw()
    loaded = clean_transactions(raw, ColumnMap(customer="client", date="when", amount="value"))
    assert len(loaded.transactions) + len(loaded.quarantine) == len(raw)
    reasons = dict(zip(loaded.quarantine["source_row"], loaded.quarantine["reason"], strict=True))
    assert reasons == {1: "non-numeric amount", 2: "unparsable date", 3: "missing customer id"}
    assert loaded.transactions["customer_id"].tolist() == ["00042", "00042"]
    assert loaded.transactions["amount"].tolist() == [10.5, 0.0]


def test_caller_frame_is_not_mutated() -> None:
    raw = _raw()
    before = raw.copy()
    clean_transactions(raw, ColumnMap(customer="client", date="when", amount="value"))
    pd.testing.assert_frame_equal(raw, before)


def test_missing_column_error_names_columns_and_flag() -> None:
    with pytest.raises(InputDataError) as err:
        clean_transactions(_raw(), ColumnMap(customer="client", date="when"))
    msg = str(err.value)
    assert (
        "'amount' not found" in msg
        and "['client', 'when', 'value']" in msg
        and "--amount-col" in msg
    )


@pytest.mark.parametrize(
    ("columns", "kind", "hint"),
    [
        (["CustomerID", "InvoiceDate", "Amount"], "customer",
         "Perhaps 'CustomerID' (--customer-col CustomerID)?"),
        (["customer_id", "Order Date", "Amount"], "date",
         "Perhaps 'Order Date' (--date-col 'Order Date')?"),
        (["customer_id", "date", "Revenue"], "amount", "Perhaps 'Revenue' (--amount-col Revenue)?"),
        # No column like it: no guess (a consumer code is not an amount).
        (["customer_id", "date", "consumer_code"], "amount", None),
    ],
)  # fmt: skip
def test_a_missing_column_suggests_the_likely_one(
    columns: list[str], kind: str, hint: str | None
) -> None:
    raw = pd.DataFrame({c: ["1"] for c in columns})
    with pytest.raises(InputDataError, match=f"{kind} column") as err:
        clean_transactions(raw)
    msg = str(err.value)
    assert (hint in msg) if hint is not None else "Perhaps" not in msg


def test_quantity_and_unit_price_without_an_amount_say_how_to_add_one(tmp_path: Path) -> None:
    # The layout of the UCI Online Retail export: revenue is Quantity x UnitPrice.
    path = tmp_path / "online_retail.csv"
    path.write_text(
        "InvoiceNo,Quantity,InvoiceDate,UnitPrice,CustomerID\n536365,6,12/1/2010 8:26,2.55,17850\n"
    )
    with pytest.raises(InputDataError) as err:
        load_transactions(path, ColumnMap(customer="CustomerID", date="InvoiceDate"))
    msg = str(err.value)
    assert "quantity ('Quantity') and a unit price ('UnitPrice')" in msg
    assert "df['amount'] = df['Quantity'] * df['UnitPrice']" in msg


def test_all_dates_unparsable_is_an_error_with_fix() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["31/31/2024"], "amount": [1]})
    with pytest.raises(InputDataError, match="--date-format"):
        clean_transactions(raw)


def test_date_format_option() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["19970101"], "amount": [1]})
    tx = clean_transactions(raw, ColumnMap(date_format="%Y%m%d")).transactions
    assert tx["date"].iloc[0] == pd.Timestamp("1997-01-01")


def test_all_amounts_non_numeric_is_an_error() -> None:
    raw = pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": ["x"]})
    with pytest.raises(InputDataError, match="numeric"):
        clean_transactions(raw)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputDataError, match="empty"):
        load_transactions(empty)
    header = tmp_path / "header.csv"
    header.write_text("customer_id,date,amount\n")
    with pytest.raises(InputDataError, match="no rows"):
        load_transactions(header)
    with pytest.raises(InputDataError, match="does not exist"):
        load_transactions(tmp_path / "nope.csv")
    with pytest.raises(InputDataError, match="extension"):
        load_transactions(tmp_path / "log.xlsx")


def test_optional_columns_are_picked_up_by_name() -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["a"],
            "date": ["2024-01-01"],
            "amount": [1],
            "quantity": [2],
            "sku": ["p1"],
        }
    )
    tx = clean_transactions(raw, ColumnMap(optional={"product": "sku"})).transactions
    assert {"quantity", "product"} <= set(tx.columns)


def test_type_error_for_non_frame() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        clean_transactions([1, 2, 3])  # type: ignore[arg-type]


def test_write_table_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_table(pd.DataFrame({"a": [1]}), out)
    assert read_columns(out) == ["a"]
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert read_columns(out) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("presorted", [True, False])
def test_rows_come_out_by_customer_then_date_with_ties_in_input_order(presorted: bool) -> None:
    raw = pd.DataFrame(
        {
            "customer_id": ["b", " a", "a", "b", "a", "c", "a"],
            "date": [
                "2024-01-02",
                "2024-01-05",
                "2024-01-01",
                "2024-01-01",
                "2024-01-05",
                "2024-01-03",
                "2024-01-03",
            ],  # fmt: skip
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    if presorted:  # already in order once ids are stripped: no sort needed, same result
        raw = raw.iloc[[2, 6, 1, 4, 3, 0, 5]]
    out = clean_transactions(raw).transactions
    assert out["customer_id"].tolist() == ["a", "a", "a", "a", "b", "b", "c"]
    assert out["amount"].tolist() == [3.0, 7.0, 2.0, 5.0, 4.0, 1.0, 6.0]
    assert list(out.index) == list(range(7))


def test_rows_repeating_another_row_exactly_are_counted_not_dropped() -> None:
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b"],
            "date": pd.to_datetime(["2024-01-01"] * 3 + ["2024-01-02"] * 2),
            "amount": [5.0, 5.0, 5.0, 7.0, 8.0],
        }
    )
    note = duplicate_rows_note(tx)
    assert note.startswith("2 of 5 rows repeat another row exactly")
    assert "remove them and retrain" in note
    assert len(tx) == 5  # the caller's frame is untouched
    # another column that differs makes the lines distinct
    assert duplicate_rows_note(tx.assign(quantity=[1, 2, 3, 1, 1])) == ""
    assert duplicate_rows_note(tx.iloc[3:]) == ""
    assert duplicate_rows_note(tx.iloc[:0]) == ""
