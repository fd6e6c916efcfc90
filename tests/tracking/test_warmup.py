"""The MLflow warm-up that overlaps training: same store as the run, never raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.tracking import setup_tracking, warm_up_tracking


def test_warm_up_builds_the_store_the_run_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    warmup = warm_up_tracking("exp-w")
    warmup.wait()
    assert warmup.error is None
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    # MLflow caches stores by URI: the run must ask for exactly this one.
    assert setup_tracking("exp-w") == warmup.uri


def test_warm_up_follows_the_team_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    team = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    warmup = warm_up_tracking()
    warmup.wait()
    assert warmup.uri == team and warmup.error is None
    assert (tmp_path / "team.db").is_file()
    assert not (tmp_path / "mlruns").exists()


def test_a_failing_warm_up_is_kept_for_the_real_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    warmup = warm_up_tracking()
    warmup.wait()  # does not raise
    assert warmup.error is not None
    with pytest.raises(Exception, match="nosuchscheme"):
        setup_tracking()
