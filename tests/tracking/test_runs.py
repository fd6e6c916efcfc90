"""MLflow tracking: embedded SQLite store under ./mlruns, or the team server from the env."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.tracking import setup_tracking


def test_embedded_store_keeps_everything_in_mlruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = setup_tracking("exp-a")
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    location = mlflow.get_experiment_by_name("exp-a").artifact_location
    assert location == (tmp_path / "mlruns" / "artifacts").as_uri()


def test_env_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    team = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    assert setup_tracking("exp-b") == team
    assert not (tmp_path / "mlruns").exists()
