"""Scoring on Spark: the same pandas scoring code, run per customer partition.

Optional: ``pip install churnguard[spark]`` (pyspark and a Java runtime).

:func:`score_spark` repartitions the log by ``customer_id`` (after the same
whitespace stripping the cleaner does), so each customer's transactions land
in exactly one Spark partition, then runs ``mapInPandas`` over the partitions:
each one is cleaned with :func:`churnguard.data.clean_transactions` and scored
with :meth:`ChurnGuardModel.predict`, exactly the code of the single-machine path.
The result is one row per customer with ``churn_probability``, ``p_alive``,
``expected_purchases``, ``predicted_clv``, ``value_at_risk`` and the few
columns the whole-base stage needs.

Whole-base columns (20/60/20 tiers, RFM quintiles, the growth look-alike
score, budgeted contacts, priorities) are **computed on the driver**:
:func:`retention_list_spark` collects that slim per-customer result (about 170
bytes per customer, so ~1.7 GB for 10M customers) and calls the same
:func:`~churnguard.decision.retention.build_retention_list` as the single-machine
path, so the list is identical. Window functions in Spark could rank without
collecting, but the growth score is a logistic regression over the whole base,
which would have to be reimplemented; collecting keeps one implementation.
Reasons (TreeSHAP) are not computed on Spark: the ``reasons`` column says so.
Rows the cleaner cannot use are dropped (they are counted in the single-machine
path's quarantine file, not here). Set ``spark.sql.session.timeZone`` to ``UTC``
(or read dates as ``TIMESTAMP_NTZ``) so Spark does not shift naive timestamps.

The logged MLflow model on Spark
--------------------------------
The pyfunc logged by ``churnguard train`` (``models:/churnguard@champion``)
maps a *transaction log* to a *customer list*, so it does not fit
``mlflow.pyfunc.spark_udf``, which must return one output row per input row of
an arbitrary batch. Load the model on the driver and use :func:`score_spark`::

    from churnguard.tracking.pyfunc import load_churnguard_model
    model = load_churnguard_model("models:/churnguard@champion")
    scores = score_spark(spark.read.parquet("s3://.../transactions"), model, as_of="2024-12-31")
    retention = retention_list_spark(scores)

or, to call the pyfunc itself per customer partition (executors need
churnguard installed, hence ``env_manager="local"`` semantics)::

    pyfunc = mlflow.pyfunc.load_model("models:/churnguard@champion")
    def score(batches):
        frame = pd.concat(list(batches))
        yield pyfunc.predict(frame, params={"as_of": "2024-12-31"})[COLUMNS]
    tx.repartition(64, "customer_id").mapInPandas(score, schema)

(the tiers of that list are then per partition, not whole-base).
``mlflow.pyfunc.spark_udf(spark, uri, env_manager="local")`` only suits models
with row-aligned outputs, e.g. a model logged on the feature table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from churnguard._dates import to_date
from churnguard.data import ColumnMap, clean_transactions
from churnguard.decision.retention import DECISION_INPUTS, build_retention_list
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError
from churnguard.execution.core import score_part
from churnguard.model.estimator import ChurnGuardModel

__all__ = ["SCORE_COLUMNS", "features_spark", "retention_list_spark", "score_spark"]

#: Columns of :func:`score_spark`'s result (``margin_total`` added when the model has it).
SCORE_COLUMNS = list(DECISION_INPUTS)
_OPTIONAL = ("margin", "cost", "quantity", "product", "channel")
_NOTE = "not explained: reasons are not computed on Spark (score with churnguard score for them)"


def _require_pyspark() -> Any:
    try:
        from pyspark.sql import functions
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "churnguard.execution.spark needs pyspark; install it with "
            "`pip install churnguard[spark]` (and a Java 17 runtime)."
        ) from exc
    return functions


def _canonical(spark_df: Any, columns: ColumnMap | None, optional: list[str]) -> Any:
    """Select and rename the log's columns; ids as stripped text, as the cleaner keeps them."""
    F = _require_pyspark()
    cmap = columns or ColumnMap()
    present = set(spark_df.columns)
    mapping = {"customer_id": cmap.customer, "date": cmap.date, "amount": cmap.amount}
    for canon in optional:
        mapping[canon] = cmap.optional.get(canon, canon)
    missing = {k: v for k, v in mapping.items() if v not in present}
    if missing:
        raise InputDataError(
            f"the Spark DataFrame lacks column(s) {sorted(missing.values())} "
            f"(for {sorted(missing)}); its columns are {sorted(present)}. Pass "
            "columns=ColumnMap(customer=..., date=..., amount=...) naming your columns."
        )
    cid = F.regexp_replace(F.col(mapping["customer_id"]).cast("string"), r"^\s+|\s+$", "")
    cols = [cid.alias("customer_id")]
    cols += [F.col(src).alias(canon) for canon, src in mapping.items() if canon != "customer_id"]
    return spark_df.select(*cols)


def _partitioned(frame: Any, partitions: int | None) -> Any:
    n = int(partitions or frame.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    if n < 1:
        raise ParameterError(f"partitions must be >= 1; got {partitions!r}.")
    return frame.repartition(n, "customer_id")


def _spark_type(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    return "string"


def _raw_partition(batches: Iterator[pd.DataFrame]) -> pd.DataFrame | None:
    """All rows of one Spark partition as one frame (None when it has none)."""
    frames = [b for b in batches if len(b)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _canonical_map(raw: pd.DataFrame, date_format: str | None) -> ColumnMap:
    """The column map of a partition whose columns already carry canonical names."""
    return ColumnMap(
        date_format=date_format, optional={c: c for c in raw.columns if c in _OPTIONAL}
    )


def _clean_partition(
    batches: Iterator[pd.DataFrame], date_format: str | None
) -> pd.DataFrame | None:
    """All rows of one Spark partition, cleaned as the single-machine path cleans them."""
    raw = _raw_partition(batches)
    if raw is None:
        return None
    try:
        return clean_transactions(raw, _canonical_map(raw, date_format)).transactions
    except InputDataError:
        return None  # nothing usable in this partition: the other partitions still score


def score_spark(
    spark_df: Any,
    model: ChurnGuardModel,
    *,
    as_of: Any,
    columns: ColumnMap | None = None,
    partitions: int | None = None,
) -> Any:
    """Score every customer of a Spark transaction log with the pandas scoring code.

    Parameters
    ----------
    spark_df : pyspark.sql.DataFrame
        Transactions (any column names; see ``columns``).
    model : ChurnGuardModel
        Fitted model (shipped to the executors by pickling).
    as_of : date-like
        Scoring date (required: a default would need a pass over the log).
    columns : ColumnMap, optional
        The log's column names.
    partitions : int, optional
        Customer partitions; default ``spark.sql.shuffle.partitions``. Each
        partition is one pandas frame in an executor: keep them to a few
        million rows.

    Returns
    -------
    pyspark.sql.DataFrame
        One row per customer with :data:`SCORE_COLUMNS` (and ``margin_total``
        when the model uses margins).
    """
    if not isinstance(model, ChurnGuardModel):
        raise ParameterTypeError(
            f"model must be a fitted ChurnGuardModel; got {type(model).__name__}."
        )
    cutoff = to_date(as_of)
    optional = list(model.builder_.optional_columns_)
    frame = _partitioned(_canonical(spark_df, columns, optional), partitions)
    out_cols = SCORE_COLUMNS + (
        ["margin_total"] if "margin_total" in model.builder_.feature_names_ else []
    )
    schema = ", ".join(
        f"`{c}` {'string' if c == 'customer_id' else 'bigint' if c == 'frequency' else 'double'}"
        for c in out_cols
    )
    date_format = (columns or ColumnMap()).date_format

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        raw = _raw_partition(batches)
        if raw is None:
            return
        try:
            part = score_part(
                model,
                raw,
                as_of=cutoff,
                columns=_canonical_map(raw, date_format),
                reasons_limit=0,
                source="a Spark partition",
                require_customers=False,
            )
        except InputDataError:
            return  # nothing usable in this partition: the other partitions still score
        if part.scored is not None:
            yield part.scored[out_cols].astype({"frequency": "int64"})

    return frame.mapInPandas(score, schema)


def retention_list_spark(
    scores: Any,
    *,
    model: ChurnGuardModel | None = None,
    playbook: Any = None,
    segment_rules: Any = None,
    capacity: int | None = None,
    budget: float | None = None,
) -> pd.DataFrame:
    """Collect :func:`score_spark`'s slim result and build the whole-base retention list.

    Parameters
    ----------
    scores : pyspark.sql.DataFrame
        Output of :func:`score_spark`.
    model : ChurnGuardModel, optional
        The model that scored: its stored reference base places tiers, risk bands and
        RFM scores as in a single-machine run; without it they are measured on the
        scored customers.
    playbook, segment_rules, capacity, budget
        As in :func:`churnguard.decision.retention.build_retention_list`.

    Returns
    -------
    DataFrame
        The retention list (pandas, on the driver), sorted by priority; ``reasons``
        holds a note (reasons are not computed on Spark).
    """
    slim = scores.toPandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    slim["reasons"] = _NOTE
    reference = getattr(model, "decision_reference_", None) if model is not None else None
    return build_retention_list(
        slim,
        playbook=playbook,
        segment_rules=segment_rules,
        capacity=capacity,
        budget=budget,
        reference=reference,
    )


def features_spark(
    spark_df: Any,
    builder: Any,
    cutoff: Any,
    *,
    columns: ColumnMap | None = None,
    partitions: int | None = None,
) -> Any:
    """Point-in-time features of every customer, computed per customer partition.

    Parameters
    ----------
    spark_df : pyspark.sql.DataFrame
        Transactions.
    builder : FeatureBuilder
        Fitted builder (e.g. ``model.builder_``).
    cutoff : date-like
        Last day counted as the past.
    columns : ColumnMap, optional
        The log's column names.
    partitions : int, optional
        Customer partitions; default ``spark.sql.shuffle.partitions``.

    Returns
    -------
    pyspark.sql.DataFrame
        ``customer_id`` and ``builder.feature_names_``, one row per customer.
    """
    day = to_date(cutoff)
    optional = list(builder.optional_columns_)
    sample = pd.DataFrame(
        {"customer_id": ["x"], "date": [pd.Timestamp(day)], "amount": [1.0]}
        | {c: ([1.0] if c in ("margin", "cost", "quantity") else ["a"]) for c in optional}
    )
    dtypes = builder.transform(sample, day).dtypes
    schema = ", ".join(f"`{c}` {_spark_type(t)}" for c, t in dtypes.items())
    frame = _partitioned(_canonical(spark_df, columns, optional), partitions)
    date_format = (columns or ColumnMap()).date_format

    def transform(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        tx = _clean_partition(batches, date_format)
        if tx is None:
            return
        feats = builder.transform(tx, day)
        if len(feats):
            yield feats.astype(dtypes.to_dict())

    return frame.mapInPandas(transform, schema)
