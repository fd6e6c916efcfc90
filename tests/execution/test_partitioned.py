"""Partitioned scoring gives the in-memory retention list, atomically and deterministically."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from churnguard.churn.hazard_shift import HazardShift
from churnguard.data import ColumnMap, DataQualityWarning, clean_transactions
from churnguard.decision.retention import CONTRACT_COLUMNS, build_retention_list
from churnguard.exceptions import InputDataError
from churnguard.execution import _partition, _partition_sql, partitioned
from churnguard.execution._sizing import SCAN_BYTES_PER_ROW, scan_fits
from churnguard.execution.partitioned import (
    BYTES_PER_ROW,
    PartitionStats,
    choose_partitions,
    choose_workers,
)
from churnguard.model.estimator import ChurnGuardModel
from churnguard.pipeline import score_transactions

AS_OF = "2024-12-31"


def synthetic_log(n_customers: int = 900, seed: int = 7) -> pd.DataFrame:
    """Two years of purchases: gamma rates, geometric lifetimes, gamma spend; text ids."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01")
    birth = rng.integers(0, 600, n_customers)
    counts = 1 + rng.poisson(rng.gamma(0.8, 4.0, n_customers))
    owner = np.repeat(np.arange(n_customers), counts)
    life = np.minimum(rng.geometric(0.004, n_customers), 730 - birth)
    offset = (rng.random(len(owner)) * life[owner]).astype(int)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    offset[first] = 0
    amount = np.round(rng.gamma(3.0, 12.0, len(owner)), 2)
    ids = np.char.add("c", np.char.zfill(np.arange(n_customers).astype(str), 5))
    frame = pd.DataFrame(
        {
            "customer_id": ids[owner],
            "date": start + pd.to_timedelta(birth[owner] + offset, unit="D"),
            "amount": amount,
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def log_frame() -> pd.DataFrame:
    return synthetic_log()


@pytest.fixture(scope="module")
def fitted(log_frame: pd.DataFrame) -> ChurnGuardModel:
    tx = clean_transactions(log_frame).transactions
    return ChurnGuardModel(
        horizon_days=90,
        value_model="bgnbd",
        max_snapshots=3,
        classifier_params={"lgbm_params": {"n_estimators": 20}},
    ).fit(tx)


@pytest.fixture
def log_path(tmp_path: Path, log_frame: pd.DataFrame) -> Path:
    path = tmp_path / "log.parquet"
    log_frame.to_parquet(path, index=False)
    return path


def assert_same_list(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same rows in the same priority order; floats within 1e-9, everything else equal."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for col in expected.columns:
        a, b = expected[col], got[col]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(
                b.to_numpy(float), a.to_numpy(float), rtol=0, atol=1e-9, err_msg=col
            )
        else:
            assert b.astype(str).tolist() == a.astype(str).tolist(), col


@pytest.mark.slow
def test_a_drift_correction_scores_and_explains_the_same_in_partitions(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel, log_frame: pd.DataFrame
) -> None:
    # A hazard tripled for the last four weeks (attached by hand, as if trained two weeks
    # into it): the partitioned route must count it to the same scoring date as the
    # in-memory one for the scores, the CLV and the reasons.
    model = copy.deepcopy(fitted)
    start = (log_frame["date"].max() - pd.Timedelta(days=28)).date().isoformat()
    params = {"r": 1.0, "alpha": 5.0, "s": 2.0, "beta": 100.0}
    model.hazard_shift_ = HazardShift(3.0, 2.0, 90 / 7, params, "W", start)
    score_transactions(log_path, model, out=tmp_path / "memory.parquet")
    score_transactions(log_path, model, out=tmp_path / "out.parquet", partitions=4)
    memory = pd.read_parquet(tmp_path / "memory.parquet")
    assert_same_list(pd.read_parquet(tmp_path / "out.parquet"), memory)
    assert memory["reasons"].str.contains("points of churn probability here").any()


@pytest.mark.slow
def test_partitioned_list_equals_in_memory_list(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel
) -> None:
    memory = score_transactions(log_path, fitted, out=tmp_path / "memory.parquet")
    result = score_transactions(log_path, fitted, out=tmp_path / "out.parquet", partitions=4)
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert_same_list(got, pd.read_parquet(tmp_path / "memory.parquet"))
    assert list(got.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert result.customers == len(memory.retention) and result.partitions == 4
    assert {k: v for k, v in result.summary.items() if k != "partitions"} == memory.summary
    assert sum(s.customers for s in result.details["partition_stats"]) == result.customers
    assert all(s.customers > 0 for s in result.details["partition_stats"])
    assert_same_list(result.top, got.head(len(result.top)))


@pytest.mark.slow
def test_float_ids_give_the_same_list_in_partitions(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    # Ids saved as floats (10002.0): the split must write them as the scan reads them.
    frame = log_frame.assign(customer_id=log_frame["customer_id"].str[1:].astype(float))
    path = tmp_path / "float_ids.parquet"
    frame.to_parquet(path, index=False)
    with pytest.warns(DataQualityWarning, match="floating-point"):
        score_transactions(path, fitted, out=tmp_path / "memory.parquet")
        score_transactions(path, fitted, out=tmp_path / "parts.parquet", partitions=3)
    memory = pd.read_parquet(tmp_path / "memory.parquet")
    assert_same_list(pd.read_parquet(tmp_path / "parts.parquet"), memory)
    assert not memory["customer_id"].str.endswith(".0").any()


@pytest.mark.slow
def test_bgnbd_p_alive_is_empty_without_a_repeat_purchase_and_scores_unchanged(
    tmp_path: Path, log_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    assert fitted.purchase_model_.model == "bgnbd"
    score_transactions(log_path, fitted, out=tmp_path / "out.parquet", partitions=2)
    got = pd.read_parquet(tmp_path / "out.parquet").set_index("customer_id")
    once = got["frequency"] == 0
    assert once.any() and (~once).any()
    assert got.loc[once, "p_alive"].isna().all() and got.loc[~once, "p_alive"].notna().all()
    # The churn model still read BG/NBD's 1.0: the probabilities are those of the features.
    feats = fitted.features(clean_transactions(log_frame).transactions)
    assert (feats.loc[feats["frequency"] == 0, "p_alive"] == 1.0).all()
    want = pd.Series(fitted.churn_probability(feats), index=feats["customer_id"])
    np.testing.assert_allclose(got["churn_probability"], want.loc[got.index], rtol=1e-12)


@pytest.mark.slow
def test_parallel_partitions_write_the_same_list_and_quarantine(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    raw = log_frame.copy()
    raw.loc[5, "amount"] = np.nan  # one quarantined row
    path = tmp_path / "log.parquet"
    raw.to_parquet(path, index=False)
    kwargs: dict[str, Any] = {"as_of": AS_OF, "partitions": 4, "reasons_limit": 100}
    local = score_transactions(path, fitted, out=tmp_path / "one.parquet", workers=1, **kwargs)
    pooled = score_transactions(path, fitted, out=tmp_path / "two.parquet", workers=2, **kwargs)
    assert (tmp_path / "two.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()
    assert pooled.quarantined == local.quarantined == 1
    assert (tmp_path / "two.quarantine.csv").read_bytes() == (
        tmp_path / "one.quarantine.csv"
    ).read_bytes()
    assert [s.index for s in pooled.details["partition_stats"]] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["log.parquet", "one.parquet", "two.parquet", "one.quarantine.csv", "two.quarantine.csv"]
    )


@pytest.mark.slow
def test_reasons_go_to_the_top_of_the_whole_base(
    tmp_path: Path, log_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    tx = clean_transactions(log_frame).transactions
    expected = build_retention_list(
        fitted.predict(tx, AS_OF, reasons_limit=50), reference=fitted.decision_reference_
    )
    out = tmp_path / "out.parquet"
    score_transactions(log_path, fitted, out=out, as_of=AS_OF, partitions=3, reasons_limit=50)
    got = pd.read_parquet(out)
    assert_same_list(got, expected)
    assert (~got["reasons"].str.startswith("not explained")).sum() == 50


@pytest.mark.slow
def test_mapped_text_columns_csv_and_quarantine_match_in_memory(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    raw = log_frame.rename(columns={"customer_id": "cust", "date": "day", "amount": "amt"})
    raw["day"] = raw["day"].dt.strftime("%Y-%m-%d")
    bad = pd.DataFrame(
        {
            "cust": [None, "c00001", " c00002 ", "c00003"],
            "day": ["2023-03-01", "not a date", "2023-02-02", "2023-05-05"],
            "amt": [1.0, 2.0, 3.0, np.nan],
        }
    )
    raw = pd.concat([raw.iloc[:40], bad, raw.iloc[40:]], ignore_index=True)
    path = tmp_path / "raw.parquet"
    raw.to_parquet(path, index=False)
    cmap = ColumnMap(customer="cust", date="day", amount="amt")
    memory = score_transactions(path, fitted, out=tmp_path / "memory.csv", columns=cmap)
    result = score_transactions(path, fitted, out=tmp_path / "out.csv", partitions=3, columns=cmap)
    assert memory.quarantined == result.quarantined == 3
    assert result.quarantine_file == tmp_path / "out.quarantine.csv"
    assert (tmp_path / "out.quarantine.csv").read_bytes() == (
        tmp_path / "memory.quarantine.csv"
    ).read_bytes()
    assert_same_list(
        pd.read_csv(tmp_path / "out.csv", dtype={"customer_id": str}),
        pd.read_csv(tmp_path / "memory.csv", dtype={"customer_id": str}),
    )


@pytest.mark.slow
def test_rerun_writes_identical_bytes(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel
) -> None:
    out = tmp_path / "out.parquet"
    score_transactions(log_path, fitted, out=out, partitions=4)
    first = out.read_bytes()
    score_transactions(log_path, fitted, out=out, partitions=4)
    assert out.read_bytes() == first


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["partition", "reasons"])
def test_failure_leaves_no_output_and_no_temp_files(
    tmp_path: Path,
    log_path: Path,
    fitted: ChurnGuardModel,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    if stage == "partition":
        real = ChurnGuardModel.predict_features
        calls = {"n": 0}

        def flaky(self: ChurnGuardModel, *args: Any, **kwargs: Any) -> pd.DataFrame:
            calls["n"] += 1
            if calls["n"] == 3:
                raise MemoryError("simulated: killed while scoring partition 3")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(ChurnGuardModel, "predict_features", flaky)
        error: type[BaseException] = MemoryError
    else:

        def broken(*args: Any, **kwargs: Any) -> None:
            raise OSError("simulated: disk full while explaining")

        monkeypatch.setattr(partitioned, "_start_reasons", broken)
        error = OSError
    with pytest.raises(error, match="simulated"):
        score_transactions(log_path, fitted, out=tmp_path / "out.parquet", partitions=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet"]


@pytest.mark.slow
def test_progress_callback_and_log_lines(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[PartitionStats] = []
    score_transactions(
        log_path, fitted, out=tmp_path / "a.parquet", partitions=2, progress=seen.append
    )
    assert [(s.index, s.total) for s in seen] == [(0, 2), (1, 2)]
    assert sum(s.rows for s in seen) == pd.read_parquet(log_path).shape[0]
    caplog.clear()  # only the second run's lines, whatever logging earlier tests set up
    with caplog.at_level(logging.INFO, logger="churnguard.execution.partitioned"):
        score_transactions(log_path, fitted, out=tmp_path / "b.parquet", partitions=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("partition ")]
    assert len(lines) == 2 and lines[0].startswith("partition 1/2: ")
    assert lines[0].endswith(" s") and "customers" in lines[0]


@pytest.mark.slow
def test_as_of_before_every_purchase_is_an_input_error(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel
) -> None:
    with pytest.raises(InputDataError, match="choose a later --as-of"):
        score_transactions(
            log_path, fitted, out=tmp_path / "out.parquet", as_of="2000-01-01", partitions=2
        )
    assert not (tmp_path / "out.parquet").exists()


def test_partition_count_follows_the_memory_rule() -> None:
    per_partition = 2.0e9 / 2 / BYTES_PER_ROW
    assert choose_partitions(int(10 * per_partition), 2.0) == 10
    assert choose_partitions(int(10 * per_partition) + 1, 2.0) == 11
    assert choose_partitions(int(10 * per_partition), 4.0) == 5
    assert choose_partitions(1) == 1
    assert choose_partitions(0) == 1


def test_workers_share_the_partition_memory() -> None:
    per_partition = 2.0e9 / 2 / BYTES_PER_ROW
    assert choose_partitions(int(10 * per_partition), 2.0, workers=2) == 20
    assert choose_partitions(1000, 2.0, workers=3) == 3  # one partition per worker at least
    assert choose_workers(10, 3) == 3
    assert choose_workers(10) == 1  # small logs gain nothing from more partitions
    assert choose_workers(partitioned.PARALLEL_FROM_ROWS) >= 1


@pytest.mark.parametrize("workers", [0, -1, 2.5, True])
def test_bad_worker_count_is_rejected(workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be a whole number"):
        choose_workers(10, workers)


@pytest.mark.parametrize("memory", [0, -1.0])
def test_partition_count_rejects_a_non_positive_budget(memory: float) -> None:
    with pytest.raises(ValueError, match="max_memory_gb"):
        choose_partitions(1000, memory)


@pytest.mark.parametrize("partitions", [0, -2, 1.5, True])
def test_bad_partition_count_is_rejected(tmp_path: Path, partitions: Any) -> None:
    with pytest.raises(ValueError, match="partitions must be a whole number"):
        score_transactions(
            tmp_path / "log.parquet", "models/x", out=tmp_path / "o.parquet", partitions=partitions
        )


def test_csv_input_is_rejected_with_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1.0]}).to_csv(path)
    with pytest.raises(InputDataError, match="Convert it"):
        score_transactions(path, "models/x", out=tmp_path / "o.parquet", partitions=2)


def test_unknown_output_format_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="extension"):
        score_transactions(
            tmp_path / "log.parquet", "models/x", out=tmp_path / "o.xlsx", partitions=2
        )


def _partition_folder(tmp_path: Path, log_frame: pd.DataFrame, variant: str) -> Path:
    """A partition as split_log writes it: the mapped columns, source_row, bad rows mixed in."""
    good = log_frame.iloc[:600].reset_index(drop=True)
    bad = pd.DataFrame(
        {
            "customer_id": [None, "  ", "c00001", "c00002", "c00003", "c00004", "=c00005"],
            "date": pd.to_datetime(
                ["2023-03-01", "2023-03-02", "2099-12-31", "1900-01-01"] + ["2023-05-05"] * 3
            ),
            "amount": [1.0, 2.0, 3.0, 4.0, None, np.inf, 5e13],
        }
    )
    rows = pd.concat([good.iloc[:300], bad, good.iloc[300:]], ignore_index=True)
    if variant == "text dates":
        rows["date"] = rows["date"].dt.strftime("%Y-%m-%d")
        rows.loc[10, "date"] = "not a date"
    elif variant == "NaN amount":  # NaN, not NULL: pandas would make it NULL
        rows.loc[11, "amount"] = np.nan
    elif variant == "whole amounts":
        rows = rows[rows["amount"].notna() & np.isfinite(rows["amount"])].copy()
        rows["amount"] = rows["amount"].round().astype("int64")
    rng = np.random.default_rng(3)
    rows["source_row"] = np.sort(rng.choice(10 * len(rows), len(rows), replace=False))
    rows = rows.sample(frac=1.0, random_state=3)  # DuckDB sorts a partition when it reads it
    folder = tmp_path / f"part={variant}"
    folder.mkdir()
    table = pa.Table.from_pandas(rows, preserve_index=False)
    if variant == "NaN amount":  # from_pandas made every NaN NULL; Parquet keeps them apart
        amount = table["amount"]
        table = table.set_column(2, "amount", pc.fill_null(amount, float("nan")))
    pq.write_table(table, folder / "data_0.parquet")
    return folder


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:1 rows of partition:churnguard.data.DataQualityWarning")
@pytest.mark.parametrize("variant", ["timestamps", "text dates", "NaN amount", "whole amounts"])
def test_partition_scanned_from_arrow_equals_the_pandas_route(
    tmp_path: Path,
    log_frame: pd.DataFrame,
    fitted: ChurnGuardModel,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
) -> None:
    """Same scored customers, and same quarantined rows, reasons and source rows, both ways."""
    folder = _partition_folder(tmp_path, log_frame, variant)
    canon = ColumnMap()
    outcomes, routes = {}, {}
    real = _partition.score_part
    for route in ("arrow", "pandas"):
        work = tmp_path / route
        work.mkdir()
        if route == "pandas":  # the partition read as a pandas frame, as before
            monkeypatch.setattr(_partition, "_round_trip_free", lambda table: False)

        def spy(model: Any, part: Any, _route: str = route, **kwargs: Any) -> Any:
            routes[_route] = type(part).__name__
            return real(model, part, **kwargs)

        monkeypatch.setattr(_partition, "score_part", spy)
        outcomes[route] = _partition.score_partition(fitted, folder, work, 0, 1, canon, AS_OF, 1)
    arrow, frame = outcomes["arrow"].stats, outcomes["pandas"].stats
    assert (arrow.rows, arrow.customers, arrow.quarantined) == (
        frame.rows,
        frame.customers,
        frame.quarantined,
    )
    assert outcomes["arrow"].last_date == outcomes["pandas"].last_date
    expected_route = "DataFrame" if variant == "NaN amount" else "ScannedTransactions"
    assert routes == {"arrow": expected_route, "pandas": "DataFrame"}
    quarantine = [pd.read_parquet(tmp_path / r / "quarantine_00000.parquet") for r in routes]
    pd.testing.assert_frame_equal(quarantine[0], quarantine[1])
    assert len(quarantine[0]) == arrow.quarantined >= 5
    assert set(quarantine[0]["source_row"]) <= set(pd.read_parquet(folder)["source_row"])
    assert (tmp_path / "arrow" / "scored_00000.parquet").read_bytes() == (
        tmp_path / "pandas" / "scored_00000.parquet"
    ).read_bytes()


def _log_with_bad_rows(log_frame: pd.DataFrame) -> pd.DataFrame:
    bad = pd.DataFrame(
        {
            "customer_id": [None, "", "c00001", "c00002", "c00003", "c00004", "=c00005"],
            "date": pd.to_datetime(
                ["2023-03-01", "2023-03-02", "2099-12-31", "1900-01-01"] + ["2023-05-05"] * 3
            ),
            "amount": [1.0, 2.0, 3.0, 4.0, None, np.inf, 5e13],
        }
    )
    return pd.concat([log_frame.iloc[:40], bad, log_frame.iloc[40:]], ignore_index=True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::churnguard.data.DataQualityWarning")
@pytest.mark.parametrize("out_name", ["out.parquet", "out.csv"])
def test_scanning_once_writes_the_split_runs_bytes(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel, out_name: str
) -> None:
    """Without --partitions a log that fits is scanned once: same list and quarantine bytes."""
    path = tmp_path / "log.parquet"
    _log_with_bad_rows(log_frame).to_parquet(path, index=False)
    kwargs: dict[str, Any] = {"reasons_limit": 100, "workers": 2}
    once = score_transactions(path, fitted, out=tmp_path / "once" / out_name, **kwargs)
    split = score_transactions(
        path, fitted, out=tmp_path / "split" / out_name, partitions=2, **kwargs
    )
    assert once.partitions == split.partitions == 2
    assert once.quarantined == split.quarantined == 7
    assert once.summary == split.summary
    written = sorted(p.name for p in (tmp_path / "once").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "split").iterdir())
    assert len(written) == 2  # the list and its quarantine file
    for name in written:
        assert (tmp_path / "once" / name).read_bytes() == (tmp_path / "split" / name).read_bytes()
    # The split run did split; the other one did not (its blocks hold only usable rows).
    assert sum(s.rows for s in split.details["partition_stats"]) == len(log_frame) + 7
    assert sum(s.rows for s in once.details["partition_stats"]) == len(log_frame)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("none", True),
        ("NaN amount", False),
        ("NULL amount", True),
        ("whole amounts", True),
        ("whole amounts with NULL", False),
        ("text dates", False),
        ("zoned dates", False),
        ("padded id", False),
        ("empty id", True),
        ("non-ASCII id end", False),
        ("integer ids", True),
    ],
)
def test_whole_scan_only_when_it_reads_like_the_partitions(
    tmp_path: Path, change: str, expected: bool
) -> None:
    rows = pd.DataFrame(
        {
            "customer_id": ["a1", "b2", "c3"],
            "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    table = pa.Table.from_pandas(rows, preserve_index=False)
    if change == "NaN amount":
        table = table.set_column(2, "amount", pa.array([1.0, float("nan"), 3.0]))
    elif change == "NULL amount":
        table = table.set_column(2, "amount", pa.array([1.0, None, 3.0]))
    elif change == "whole amounts":
        table = table.set_column(2, "amount", pa.array([1, 2, 3]))
    elif change == "whole amounts with NULL":
        table = table.set_column(2, "amount", pa.array([1, None, 3], pa.int64()))
    elif change == "text dates":
        table = table.set_column(1, "date", pa.array(["2024-01-01", "2024-01-02", "2024-01-03"]))
    elif change == "zoned dates":
        table = table.set_column(1, "date", pc.assume_timezone(table["date"], "Europe/Paris"))
    elif change == "padded id":
        table = table.set_column(0, "customer_id", pa.array(["a1", " b2", "c3"]))
    elif change == "empty id":
        table = table.set_column(0, "customer_id", pa.array(["a1", "", "c3"]))
    elif change == "non-ASCII id end":
        table = table.set_column(0, "customer_id", pa.array(["a1", "b2\u3000", "c3"]))
    elif change == "integer ids":
        table = table.set_column(0, "customer_id", pa.array([1, None, 3]))
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    resolved = {"customer_id": "customer_id", "date": "date", "amount": "amount"}
    assert _partition_sql.scans_like_partitions(path, resolved) is expected


def test_whole_scan_follows_the_memory_budget() -> None:
    per_gb = 1e9 / SCAN_BYTES_PER_ROW
    assert scan_fits(int(per_gb), 2.0, available_gb=100.0)
    assert not scan_fits(int(per_gb) + 1, 2.0, available_gb=100.0)
    assert scan_fits(int(2 * per_gb), 4.0, available_gb=100.0)
    assert not scan_fits(int(per_gb), 2.0, available_gb=2.0)  # a quarter of what is free


def test_the_scoring_modules_do_not_import_matplotlib() -> None:
    """Scoring draws nothing unless a report is asked for: matplotlib costs ~0.7 s to import."""
    code = (
        "import sys\n"
        "import churnguard.cli.app, churnguard.pipeline, churnguard.execution.partitioned\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_partitioned_run_writes_the_report_asked_for(
    tmp_path: Path, log_path: Path, fitted: ChurnGuardModel
) -> None:
    result = score_transactions(
        log_path, fitted, out=tmp_path / "out.parquet", partitions=2, report=tmp_path / "r.html"
    )
    assert result.mode == "partitioned"
    assert result.report == tmp_path / "r.html"
    assert "<svg" in result.report.read_text() or "<img" in result.report.read_text()


@pytest.mark.parametrize("zone", [None, "UTC"])  # TIMESTAMP_NS, TIMESTAMPTZ_NS
def test_an_end_of_day_stamp_keeps_the_as_of_date(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel, zone: str | None
) -> None:
    """23:59:59.999999999 on the last day: DuckDB's cast would round it into the next day."""
    log = log_frame.copy()
    last = log["date"].idxmax()
    day = log.loc[last, "date"].normalize()
    log.loc[last, "date"] = day + pd.Timedelta(days=1) - pd.Timedelta(nanoseconds=1)
    if zone is not None:
        log["date"] = log["date"].dt.tz_localize(zone)
    path = tmp_path / "log.parquet"
    log.to_parquet(path, index=False)
    memory = score_transactions(path, fitted, out=tmp_path / "memory.parquet")
    split = score_transactions(path, fitted, out=tmp_path / "split.parquet", partitions=2)
    assert str(memory.summary["as_of"]) == str(split.summary["as_of"]) == str(day.date())


def test_a_zoned_log_gets_the_same_days_in_partitions(
    tmp_path: Path, log_frame: pd.DataFrame, fitted: ChurnGuardModel
) -> None:
    """Evening purchases in New York are the next day in UTC: the split keeps local days."""
    log = log_frame.copy()
    evening = np.arange(len(log)) % 2 == 0
    hours = np.where(evening, 21, 10)
    log["date"] = (log["date"] + pd.to_timedelta(hours, unit="h")).dt.tz_localize(
        "America/New_York"
    )
    path = tmp_path / "log.parquet"
    log.to_parquet(path, index=False)
    memory = score_transactions(path, fitted, out=tmp_path / "memory.parquet")
    split = score_transactions(path, fitted, out=tmp_path / "split.parquet", partitions=2)
    assert str(split.summary["as_of"]) == str(memory.summary["as_of"])
    assert_same_list(pd.read_parquet(tmp_path / "split.parquet"), memory.retention)
