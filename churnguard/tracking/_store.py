"""Which MLflow store to use, in one place for runs and model loading.

A team server when ``MLFLOW_TRACKING_URI`` is set, else an embedded SQLite store in
``./mlruns/mlflow.db`` (MLflow 3 no longer accepts a plain ``./mlruns`` file store).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_tracking_uri", "run_store_uri", "tracking_uri"]


def default_tracking_uri(root: str | os.PathLike[str] = "mlruns", *, create: bool = True) -> str:
    """The embedded store: ``sqlite:///<abs path>/mlruns/mlflow.db`` (folder made if asked)."""
    path = Path(root).resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def run_store_uri(root: str | os.PathLike[str] = "mlruns", *, create: bool = True) -> str:
    """Where a run logs: ``MLFLOW_TRACKING_URI`` when set (a team server), else the
    embedded store under ``root``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root, create=create)


def tracking_uri() -> str:
    """The store in use: ``MLFLOW_TRACKING_URI``, else one set in this process, else
    the embedded store that ``churnguard train`` writes to."""
    import mlflow

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if mlflow.tracking.is_tracking_uri_set():
        return str(mlflow.get_tracking_uri())
    return default_tracking_uri(create=False)
