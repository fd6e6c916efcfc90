"""Spark scoring equals the single-machine scoring, per customer (local[2] session)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnguard.data import ColumnMap, clean_transactions
from churnguard.decision.retention import build_retention_list
from churnguard.model.estimator import ChurnGuardModel

try:
    import pyspark  # noqa: F401
except ImportError:  # CI installs the spark extra: a missing pyspark there is a failure
    if os.environ.get("CI"):
        raise
    pytest.skip("pyspark is not installed (pip install churnguard[spark])", allow_module_level=True)

from churnguard.execution.spark import (
    SCORE_COLUMNS,
    features_spark,
    retention_list_spark,
    score_spark,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AS_OF = "2024-10-31"


def synthetic_log(n_customers: int = 500, seed: int = 11) -> pd.DataFrame:
    """Seeded two-year log with text ids, some padded with spaces as raw logs are."""
    rng = np.random.default_rng(seed)
    birth = rng.integers(0, 600, n_customers)
    counts = 1 + rng.poisson(rng.gamma(0.8, 4.0, n_customers))
    owner = np.repeat(np.arange(n_customers), counts)
    life = np.minimum(rng.geometric(0.004, n_customers), 730 - birth)
    offset = (rng.random(len(owner)) * life[owner]).astype(int)
    offset[np.r_[0, np.cumsum(counts)[:-1]]] = 0
    ids = np.char.add("s", np.char.zfill(np.arange(n_customers).astype(str), 4))
    frame = pd.DataFrame(
        {
            "cust": ids[owner],
            "when": pd.Timestamp("2023-01-01") + pd.to_timedelta(birth[owner] + offset, unit="D"),
            "value": np.round(rng.gamma(3.0, 12.0, len(owner)), 2),
        }
    )
    frame.loc[frame.index[::17], "cust"] = " " + frame.loc[frame.index[::17], "cust"]
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


COLUMNS = ColumnMap(customer="cust", date="when", amount="value")


@pytest.fixture(scope="module")
def log_frame() -> pd.DataFrame:
    return synthetic_log()


@pytest.fixture(scope="module")
def transactions(log_frame: pd.DataFrame) -> pd.DataFrame:
    return clean_transactions(log_frame, COLUMNS).transactions


@pytest.fixture(scope="module")
def fitted(transactions: pd.DataFrame) -> ChurnGuardModel:
    return ChurnGuardModel(
        horizon_days=90,
        value_model="bgnbd",
        max_snapshots=3,
        classifier_params={"lgbm_params": {"n_estimators": 30}},
    ).fit(transactions)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("churnguard-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_log(spark: Any, log_frame: pd.DataFrame) -> Any:
    return spark.createDataFrame(log_frame)


def test_scores_equal_the_single_machine_scores(
    spark_log: Any, fitted: ChurnGuardModel, transactions: pd.DataFrame
) -> None:
    got = score_spark(spark_log, fitted, as_of=AS_OF, columns=COLUMNS).toPandas()
    expected = fitted.predict(transactions, AS_OF, reasons_limit=0)
    got = got.sort_values("customer_id").reset_index(drop=True)
    assert list(got.columns) == SCORE_COLUMNS
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    for col in SCORE_COLUMNS[1:]:
        np.testing.assert_allclose(
            got[col].to_numpy(float), expected[col].to_numpy(float), rtol=0, atol=1e-9, err_msg=col
        )


def test_retention_list_equals_the_single_machine_list(
    spark_log: Any, fitted: ChurnGuardModel, transactions: pd.DataFrame
) -> None:
    scores = score_spark(spark_log, fitted, as_of=AS_OF, columns=COLUMNS, partitions=3)
    got = retention_list_spark(scores, capacity=40)
    expected = build_retention_list(
        fitted.predict(transactions, AS_OF, reasons_limit=0), capacity=40
    )
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    assert got["reasons"].str.startswith("not explained").all()
    for col in expected.columns.drop(["customer_id", "reasons"]):
        if pd.api.types.is_float_dtype(expected[col]):
            np.testing.assert_allclose(got[col], expected[col], rtol=0, atol=1e-9, err_msg=col)
        else:
            assert got[col].astype(str).tolist() == expected[col].astype(str).tolist(), col
    assert int(got["contact"].sum()) == int(expected["contact"].sum()) > 0


def test_features_equal_the_builder(
    spark_log: Any, fitted: ChurnGuardModel, transactions: pd.DataFrame
) -> None:
    got = features_spark(spark_log, fitted.builder_, AS_OF, columns=COLUMNS).toPandas()
    expected = fitted.builder_.transform(transactions, AS_OF)
    got = got.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-9)


def test_missing_column_is_reported_with_the_fix(spark_log: Any, fitted: ChurnGuardModel) -> None:
    with pytest.raises(ValueError, match="ColumnMap"):
        score_spark(spark_log, fitted, as_of=AS_OF)


def test_model_must_be_a_churnguard_model(spark_log: Any) -> None:
    with pytest.raises(TypeError, match="ChurnGuardModel"):
        score_spark(spark_log, object(), as_of=AS_OF, columns=COLUMNS)  # type: ignore[arg-type]
