"""The MLflow warm-up that overlaps training: same store as the run, never raises."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
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


def test_a_team_server_is_not_contacted_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the imports are done ahead: a dead server must not delay a failed training."""
    monkeypatch.chdir(tmp_path)
    team = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team)
    warmup = warm_up_tracking()
    warmup.wait()
    assert warmup.uri == team and warmup.error is None
    assert not (tmp_path / "team.db").exists()
    assert not (tmp_path / "mlruns").exists()
    warmup.discard()  # nothing to remove


def test_a_failing_warm_up_is_kept_for_the_real_call(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    warmup = warm_up_tracking(root=blocked)
    warmup.wait()  # does not raise
    assert isinstance(warmup.error, OSError)
    with pytest.raises(OSError):
        setup_tracking(root=blocked)


def test_discard_removes_only_what_the_warm_up_created(tmp_path: Path) -> None:
    early = warm_up_tracking(root=tmp_path / "early")
    early.discard()  # before the store is built: it never is
    _join_warmups()
    assert not (tmp_path / "early").exists()
    built = warm_up_tracking(root=tmp_path / "built")
    built.wait()
    assert (tmp_path / "built" / "mlflow.db").is_file()
    built.discard()
    assert not (tmp_path / "built").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("the user's")
    warm_up_tracking(root=shared).discard()
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]
    kept = warm_up_tracking(root=tmp_path / "kept")
    kept.wait()
    warm_up_tracking(root=tmp_path / "kept").discard()  # the store existed: untouched
    assert (tmp_path / "kept" / "mlflow.db").is_file()


def test_a_failed_training_leaves_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.exceptions import ChurnguardError
    from churnguard.pipeline import train_model

    monkeypatch.chdir(tmp_path)
    log = pd.DataFrame(
        {"customer_id": ["a", "b", "a"], "date": ["2024-01-01", "2024-01-02", "2024-01-05"],
         "amount": [10.0, 20.0, 5.0]}
    )  # fmt: skip
    with pytest.raises(ChurnguardError):
        train_model(log, tmp_path / "model", horizon_days=90)
    _join_warmups()  # a warm-up still running would create it later
    assert not (tmp_path / "mlruns").exists()


def _join_warmups() -> None:
    """Wait for every warm-up thread, including one started by another."""
    while running := [t for t in threading.enumerate() if t.name == "churnguard-mlflow-warmup"]:
        for thread in running:
            thread.join()
