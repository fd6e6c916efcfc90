"""Get MLflow ready in the background while a model trains.

Logging a training run starts with about five seconds of fixed work before the first
byte is logged: importing MLflow and its model flavours, and, for the embedded SQLite
store, creating ``mlruns/mlflow.db`` and running MLflow's schema migrations. None of
it depends on the model, and most of training runs inside LightGBM and NumPy with the
interpreter lock released, so :func:`warm_up_tracking` does that work on a thread
while the model fits; :func:`churnguard.tracking.log_training_run` then finds MLflow
imported and the store built (MLflow caches stores by URI, behind its own lock).

The warm-up changes nothing that is logged and never raises: if it fails (a team
server that does not answer, a read-only folder), the real call repeats the work and
reports the error where it always did. The thread is not a daemon, so a process that
ends early still lets a started migration finish instead of leaving a half-built
store behind.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path

from churnguard.tracking._store import default_tracking_uri

__all__ = ["TrackingWarmup", "warm_up_tracking"]

log = logging.getLogger(__name__)


class TrackingWarmup:
    """A started warm-up: :meth:`wait` joins it (and never raises).

    Attributes
    ----------
    uri : str
        The store it prepared: ``MLFLOW_TRACKING_URI``, else the embedded store.
    error : BaseException or None
        What went wrong, if anything (logged at debug level; the real call reports it).
    """

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment = experiment
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="churnguard-mlflow-warmup", daemon=False
        )

    def start(self) -> TrackingWarmup:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            import mlflow.pyfunc  # noqa: F401  (the flavour log_pyfunc_model needs)
            from mlflow import MlflowClient

            # Building the client builds (and caches) the store: for SQLite, the
            # database file and its migrations. A read makes sure it answers.
            MlflowClient(tracking_uri=self.uri).get_experiment_by_name(self.experiment)
            # start_run looks for a Databricks notebook through IPython when it is
            # installed; the import alone takes about half a second.
            if importlib.util.find_spec("IPython") is not None:
                import IPython  # noqa: F401
        except Exception as exc:  # the real call reports it, where it always did
            self.error = exc
            log.debug("MLflow warm-up failed (the run will retry): %r", exc)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the warm-up to end (at most ``timeout`` seconds)."""
        if self._thread.is_alive():
            self._thread.join(timeout)


def warm_up_tracking(
    experiment: str = "churnguard", root: str | os.PathLike[str] = "mlruns"
) -> TrackingWarmup:
    """Start preparing MLflow for a run of ``experiment`` on a background thread.

    Parameters
    ----------
    experiment : str
        The experiment the run will use (only read, never created here).
    root : path-like
        The embedded store's folder when ``MLFLOW_TRACKING_URI`` is not set, as in
        :func:`churnguard.tracking.setup_tracking` (it is created, as a run would).

    Returns
    -------
    TrackingWarmup
        Already started; call :meth:`TrackingWarmup.wait` before logging.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path(root))
    return TrackingWarmup(uri, experiment).start()
