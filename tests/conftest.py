"""Shared fixtures: the CDNOW log shipped inside lifetimes, cleaned once per session."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.data import clean_transactions, load_cdnow


@pytest.fixture(scope="session")
def cdnow_tx() -> pd.DataFrame:
    """The full CDNOW master log (23,570 customers), canonical columns."""
    return clean_transactions(load_cdnow()).transactions


@pytest.fixture(scope="session")
def cdnow_sample_tx() -> pd.DataFrame:
    """The 1/10th CDNOW sample (2,357 customers), canonical columns."""
    return clean_transactions(load_cdnow(sample=True)).transactions


@pytest.fixture(autouse=True)
def _isolate_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 exports the tracking URI to the environment; keep it from leaking across tests."""
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", ""))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
