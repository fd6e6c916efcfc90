"""MLflow pyfunc: logging, registry aliases and loading back, on an embedded SQLite store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnguard.data import clean_transactions, load_cdnow
from churnguard.decision.retention import CONTRACT_COLUMNS
from churnguard.exceptions import InvalidModelError
from churnguard.model.bundle import save_model
from churnguard.model.estimator import ChurnGuardModel
from churnguard.pipeline import resolve_model, score_transactions
from churnguard.tracking.pyfunc import input_example, load_churnguard_model, log_pyfunc_model

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return load_cdnow(sample=True)


@pytest.fixture(scope="module")
def fitted(raw: pd.DataFrame) -> ChurnGuardModel:
    # Few trees and snapshots: these tests are about MLflow plumbing, not model quality.
    tx = clean_transactions(raw).transactions
    return ChurnGuardModel(
        horizon_days=90,
        value_model="bgnbd",
        max_snapshots=3,
        classifier_params={"lgbm_params": {"n_estimators": 20}},
    ).fit(tx)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, fitted: ChurnGuardModel
) -> Iterator[dict[str, Any]]:
    """Train-time logging into a fresh SQLite store; everything stays in a temp folder."""
    from churnguard.tracking import log_training_run

    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.create_experiment("churnguard", artifact_location=(root / "artifacts").as_uri())
        model_dir = save_model(fitted, root / "models" / "churnguard")
        records: list[logging.LogRecord] = []
        handler = _Collect(records)
        logger = logging.getLogger("churnguard")
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            info = log_training_run(fitted, model_dir, register_as="churnguard", alias="champion")
            after = logger.level
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        yield {"info": info, "model_dir": model_dir, "root": root, "tracking_uri": uri,
               "records": records, "level_after": after}  # fmt: skip
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_training_run_registers_version_1_with_alias(registry: dict[str, Any]) -> None:
    info = registry["info"]
    assert info["model_uri"] == "models:/churnguard/1"
    assert (info["registered_model"], info["model_version"], info["alias"]) == (
        "churnguard",
        "1",
        "champion",
    )
    version = mlflow.MlflowClient().get_model_version_by_alias("churnguard", "champion")
    assert str(version.version) == "1"


@pytest.mark.slow
def test_scoring_the_input_example_logs_no_info_lines(registry: dict[str, Any]) -> None:
    # The example is scored twice (signature, MLflow's check); "scoring 3 customers'
    # transactions" in the middle of a train reads as if the wrong log were scored.
    messages = [r.getMessage() for r in registry["records"]]
    assert any("now points at version" in m for m in messages)  # INFO lines do arrive
    assert not any("customers' transactions" in m for m in messages), messages
    assert registry["level_after"] == logging.INFO  # the level is given back


@pytest.mark.slow
def test_training_run_records_the_churn_choice_and_level(
    registry: dict[str, Any], fitted: ChurnGuardModel
) -> None:
    params = mlflow.get_run(registry["info"]["run_id"]).data.params
    assert params["churn_model_chosen"] == fitted.churn_model_name_
    if fitted.churn_model_name_ == "prior":
        assert params["churn_level_source"] == fitted.level_.source
        assert float(params["churn_level_offset"]) == pytest.approx(fitted.level_.offset)
    else:
        assert params["churn_level_source"] == "not applied"
    assert float(params["spend_level_factor"]) == pytest.approx(np.exp(fitted.value_level_.offset))
    assert float(params["churn_level_blend_offset"]) == pytest.approx(fitted.level_blend_.offset)


@pytest.mark.slow
def test_champion_alias_scores_like_the_model_directory(
    registry: dict[str, Any], raw: pd.DataFrame
) -> None:
    from_registry = resolve_model("models:/churnguard@champion")
    assert isinstance(from_registry, ChurnGuardModel)
    expected = score_transactions(raw, registry["model_dir"], as_of="1998-03-31").retention
    got = score_transactions(raw, "models:/churnguard@champion", as_of="1998-03-31").retention
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["churnguard", "model_dir"])
def test_runs_uris_resolve(registry: dict[str, Any], suffix: str) -> None:
    model = load_churnguard_model(f"runs:/{registry['info']['run_id']}/{suffix}")
    assert isinstance(model, ChurnGuardModel)
    assert model.training_end_.isoformat() == "1998-06-30"


@pytest.mark.slow
def test_pyfunc_predict_returns_the_retention_list(
    registry: dict[str, Any], raw: pd.DataFrame
) -> None:
    pyfunc = mlflow.pyfunc.load_model("models:/churnguard@champion")
    sample = raw[raw["customer_id"].isin(raw["customer_id"].unique()[:60])]
    out = pyfunc.predict(sample, params={"as_of": "1998-03-31"})
    assert list(out.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert out["priority"].tolist() == list(range(1, len(out) + 1))
    assert set(out["customer_id"]) <= set(sample["customer_id"])
    bought = sample.loc[pd.to_datetime(sample["date"]) <= pd.Timestamp("1998-03-31"), "customer_id"]
    assert len(out) == bought.nunique()


@pytest.mark.slow
@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("models:/no_such_model@champion", "no_such_model"),
        ("models:/churnguard/7", "churnguard/7"),
        ("models:/churnguard@challenger", "challenger"),
    ],
)
def test_unresolvable_uri_names_uri_store_and_fix(
    registry: dict[str, Any], uri: str, fragment: str
) -> None:
    with pytest.raises(InvalidModelError) as err:
        resolve_model(uri)
    message = str(err.value)
    assert fragment in message
    assert registry["tracking_uri"] in message
    assert "MLFLOW_TRACKING_URI" in message and "--alias champion" in message


@pytest.mark.parametrize("uri", ["models:/", "models:/a/b/c", "runs:/", "s3://bucket/model"])
def test_malformed_uri_is_rejected_before_mlflow(uri: str) -> None:
    with pytest.raises(InvalidModelError, match="not an MLflow model URI"):
        load_churnguard_model(uri)


def test_non_string_uri_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="string"):
        load_churnguard_model(3)  # type: ignore[arg-type]


def test_log_pyfunc_model_needs_an_active_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="inside an MLflow run"):
        log_pyfunc_model(tmp_path)


def test_alias_without_registered_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="register_as"):
        log_pyfunc_model(tmp_path, register_as=None, alias="champion")


@pytest.mark.slow
def test_input_example_has_the_models_columns(fitted: ChurnGuardModel) -> None:
    example = input_example(fitted)
    assert list(example.columns) == ["customer_id", "date", "amount", "quantity"]
    assert all(isinstance(v, str) for v in example["customer_id"])
    assert example["date"].max() <= pd.Timestamp(fitted.training_end_)
    assert example["customer_id"].nunique() == 3


@pytest.mark.slow
def test_a_training_run_is_not_registered_unless_asked(registry: dict[str, Any]) -> None:
    from churnguard.tracking import log_training_run

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(registry["root"])
        mp.setenv("MLFLOW_TRACKING_URI", registry["tracking_uri"])
        mlflow.set_tracking_uri(registry["tracking_uri"])
        before = mlflow.MlflowClient().search_model_versions("name='churnguard'")
        info = log_training_run(resolve_model(str(registry["model_dir"])), registry["model_dir"])
        after = mlflow.MlflowClient().search_model_versions("name='churnguard'")
    assert "registered_model" not in info and info["run_id"]
    assert len(after) == len(before)
