"""Get MLflow ready in the background while a model trains.

Logging a training run starts with about five seconds of fixed work before the first
byte is logged: importing MLflow and its model flavours, and, for the embedded SQLite
store, creating ``mlruns/mlflow.db`` and running MLflow's schema migrations. None of
it depends on the model, and most of training runs inside LightGBM and NumPy with the
interpreter lock released, so :func:`warm_up_tracking` does that work on a thread
while the model fits; :func:`churnguard.tracking.log_training_run` then finds MLflow
imported and the store built (MLflow caches stores by URI, behind its own lock).

What it does not do, so that a failed or interrupted training behaves as before:

* A team server (``MLFLOW_TRACKING_URI``) is never contacted: only the imports are
  done ahead. A server that does not answer is reported by the run itself, once, and a
  training that fails does not wait for MLflow's retries.
* A migration is never cut short (SQLite would keep the schema half-upgraded), so the
  embedded store is built on a thread the interpreter waits for; the imports run on a
  daemon thread first. If training fails, :meth:`TrackingWarmup.discard` cancels a
  build not yet started, or waits for one under way (a few seconds) and removes what it
  created: no ``./mlruns`` is left by a training that logged nothing, and a training
  that fails early is not held up.

The warm-up changes nothing that is logged and never raises: if it fails, the real call
repeats the work and reports the error where it always did.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path

from churnguard.tracking._store import run_store_uri
from churnguard.tracking.runs import DEFAULT_EXPERIMENT

__all__ = ["TrackingWarmup", "warm_up_tracking"]

log = logging.getLogger(__name__)

#: What MLflow writes when it creates the embedded store (SQLite and its journals).
_STORE_FILES = {"mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db-shm"}


class TrackingWarmup:
    """A started warm-up: :meth:`wait` before logging, :meth:`discard` when nothing will be.

    Attributes
    ----------
    uri : str
        The store the run will use: ``MLFLOW_TRACKING_URI``, else the embedded store.
    error : BaseException or None
        What went wrong, if anything (logged at debug level; the real call reports it).
    """

    def __init__(self, experiment: str, root: Path | None) -> None:
        self.experiment = experiment
        self.error: BaseException | None = None
        self._root = root  # the embedded store's folder; None for a team server
        self._created_root = root is not None and not root.exists()
        self._created_db = root is not None and not (root / "mlflow.db").exists()
        self.uri = run_store_uri(root if root is not None else "mlruns", create=False)
        self._lock = threading.Lock()
        self._cancelled = False
        # Imports may be cut short at exit; a store build may not (see _build).
        self._imports = threading.Thread(
            target=self._import, name="churnguard-mlflow-warmup", daemon=True
        )
        self._build: threading.Thread | None = None

    def start(self) -> TrackingWarmup:
        self._imports.start()
        return self

    def _import(self) -> None:
        try:
            import mlflow.pyfunc  # noqa: F401  (the flavour log_pyfunc_model needs)

            # start_run looks for a Databricks notebook through IPython when it is
            # installed; the import alone takes about half a second.
            if importlib.util.find_spec("IPython") is not None:
                import IPython  # noqa: F401
        except Exception as exc:  # the real call reports it, where it always did
            self._failed(exc)
            return
        with self._lock:
            if self._root is None or self._cancelled:
                return
            self._build = threading.Thread(
                target=self._build_store, name="churnguard-mlflow-warmup", daemon=False
            )
            self._build.start()

    def _build_store(self) -> None:
        assert self._root is not None
        try:
            from mlflow import MlflowClient

            self._root.mkdir(parents=True, exist_ok=True)
            # Building the client builds (and caches) the store: the database file and
            # its migrations. A read makes sure it answers.
            MlflowClient(tracking_uri=self.uri).get_experiment_by_name(self.experiment)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.error = exc
        log.debug("MLflow warm-up failed (the run will retry): %r", exc)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the warm-up to end (at most ``timeout`` seconds)."""
        self._imports.join(timeout)
        build = self._build
        if build is not None:
            build.join(timeout)

    def discard(self) -> None:
        """Nothing will be logged: cancel the store, or remove it if it was built.

        A build not yet started never starts; one under way is waited for (a cut
        migration would leave the store unusable). Only MLflow's own files are removed,
        and the folder only when nothing else is in it.
        """
        with self._lock:
            self._cancelled = True
            build = self._build
        if self._root is None or not self._created_db or build is None:
            return
        build.join()
        root = self._root
        try:
            if self._created_root and {p.name for p in root.iterdir()} <= _STORE_FILES:
                shutil.rmtree(root)
            else:
                for name in _STORE_FILES:
                    (root / name).unlink(missing_ok=True)
        except OSError as exc:  # never hide the training's own error behind this
            log.debug("could not remove the unused MLflow store in %s: %r", root, exc)


def warm_up_tracking(
    experiment: str = DEFAULT_EXPERIMENT, root: str | os.PathLike[str] = "mlruns"
) -> TrackingWarmup:
    """Start preparing MLflow for a run of ``experiment`` on a background thread.

    Parameters
    ----------
    experiment : str
        The experiment the run will use (only read, never created here).
    root : path-like
        The embedded store's folder when ``MLFLOW_TRACKING_URI`` is not set, as in
        :func:`churnguard.tracking.setup_tracking`.

    Returns
    -------
    TrackingWarmup
        Already started: call :meth:`TrackingWarmup.wait` before logging, or
        :meth:`TrackingWarmup.discard` if the run will not happen.
    """
    team = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    return TrackingWarmup(experiment, None if team else Path(root).resolve()).start()
