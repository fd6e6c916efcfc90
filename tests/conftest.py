"""Shared fixtures: the CDNOW log shipped inside lifetimes, cleaned once per session."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from churnguard.data import clean_transactions, load_cdnow

#: Folders of the working tree that commands write to by default; tests must not.
_REPO = Path(__file__).resolve().parents[1]
_GUARDED = ("mlruns", "models")


def _tree_files() -> set[Path]:
    return {p for name in _GUARDED if (_REPO / name).is_dir() for p in (_REPO / name).rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def _working_tree_untouched() -> Iterator[None]:
    """Fail the session if a test left files in ``./mlruns`` or ``./models`` of the repo."""
    before = _tree_files()
    yield
    new = sorted(str(p.relative_to(_REPO)) for p in _tree_files() - before)
    if new:
        pytest.fail(f"tests wrote into the working tree (use tmp_path): {new[:5]}")


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

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_LOGGING_LEVEL"):  # the CLI sets the level
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)


#: The churnguard logger as the session found it, before any command configured it.
_LOGGER_STATE = (
    list(logging.getLogger("churnguard").handlers),
    logging.getLogger("churnguard").level,
    logging.getLogger("churnguard").propagate,
)


@pytest.fixture(autouse=True)
def _restore_churnguard_logger() -> Iterator[None]:
    """The CLI sets up the churnguard logger for its process (own handler, no propagation).

    The tests share one process: left in place, a command run by one test (or by a
    module's fixture, set up before this one) would hide the churnguard records of every
    later test from ``caplog``, which listens at the root. Each test ends with the
    logger as the session found it.
    """
    yield
    logger = logging.getLogger("churnguard")
    handlers, level, propagate = _LOGGER_STATE
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
