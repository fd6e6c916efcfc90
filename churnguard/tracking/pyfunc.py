"""The churnguard model as an MLflow ``pyfunc``: log it, register it, load it back.

:class:`ChurnGuardPyfunc` wraps a saved model directory (see
:mod:`churnguard.model.bundle`) so any MLflow consumer can score a transaction
log with ``mlflow.pyfunc.load_model(uri).predict(transactions)`` and get the
retention list back. :func:`log_pyfunc_model` is what
:func:`churnguard.tracking.log_training_run` calls inside its run: it logs the
pyfunc with a signature and an input example, registers a new version and
points an alias (``champion``) at it. :func:`load_churnguard_model` turns
``models:/churnguard@champion``, ``models:/churnguard/3`` or
``runs:/<run_id>/churnguard`` back into the underlying :class:`ChurnGuardModel`,
which is what ``churnguard score --model models:/...`` uses.

The logged environment pins churnguard's dependencies, not churnguard itself
(it is installed from source, not from a package index): the scoring side needs
``pip install churnguard``. On Spark, see :mod:`churnguard.execution.spark` (the pyfunc maps
a log to a customer list, so it is not a row-wise ``spark_udf``).

This module imports MLflow (slow) at import time because the wrapper subclasses
``PythonModel``; the pipeline and tracking modules import it only when needed.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnguard.exceptions import InvalidModelError, ParameterError, ParameterTypeError
from churnguard.tracking._store import tracking_uri

if TYPE_CHECKING:
    from churnguard.model.estimator import ChurnGuardModel

from mlflow.pyfunc import PythonModel

__all__ = ["ChurnGuardPyfunc", "input_example", "load_churnguard_model", "log_pyfunc_model"]

log = logging.getLogger(__name__)

_ARTIFACT = "model_dir"
_URI = re.compile(r"^(models:/[^/@]+(@[^/]+|/\d+|/latest)?|runs:/[0-9a-zA-Z]+/.+)$")
_FIX = (
    "Point MLFLOW_TRACKING_URI at the tracking server or SQLite store the model was logged to "
    "(e.g. export MLFLOW_TRACKING_URI=sqlite:///$PWD/mlruns/mlflow.db), and register a version "
    "with an alias with 'churnguard train --transactions LOG --alias champion'; or pass a model "
    "directory instead of a URI."
)


class ChurnGuardPyfunc(PythonModel):  # type: ignore[misc]
    """MLflow ``pyfunc`` wrapper: transactions in, retention list out.

    The fitted model is not pickled into the pyfunc: it travels as the
    ``model_dir`` artifact (the model directory written by ``save_model``) and
    is loaded in :meth:`load_context`.

    Attributes
    ----------
    model_ : ChurnGuardModel
        The loaded model (after :meth:`load_context`).
    """

    def load_context(self, context: Any) -> None:
        """Load the model directory artifact."""
        from churnguard.model.bundle import load_model

        self.model_ = load_model(context.artifacts[_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score a transaction log and return the prioritised retention list.

        Parameters
        ----------
        context : PythonModelContext
            Unused (the model was loaded by :meth:`load_context`).
        model_input : DataFrame
            Transactions with ``customer_id``, ``date``, ``amount`` (and the
            optional columns the model was trained with); raw values are cleaned
            and unusable rows dropped, as by ``churnguard score``.
        params : dict, optional
            ``as_of`` (``YYYY-MM-DD``; empty or missing means the last date in the log).

        Returns
        -------
        DataFrame
            The retention list (:data:`churnguard.decision.retention.CONTRACT_COLUMNS` first).
        """
        if not isinstance(model_input, pd.DataFrame):
            raise ParameterTypeError(
                "model_input must be a pandas DataFrame of transactions; "
                f"got {type(model_input).__name__}."
            )
        return _score(model_input, self.model_, (params or {}).get("as_of") or None)


@contextmanager
def _quiet_example() -> Iterator[None]:
    """Hide churnguard's INFO lines while the three-customer input example is scored.

    The signature and MLflow's own check of the example each score it; in the middle of a
    ``train`` their "scoring 3 customers' transactions" lines read as if the run had
    scored the wrong log. Warnings still show.
    """
    logger = logging.getLogger("churnguard")
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(level)


def _score(transactions: pd.DataFrame, model: ChurnGuardModel, as_of: Any) -> pd.DataFrame:
    """The in-memory executor's retention list (what ``churnguard score`` writes)."""
    from churnguard.execution import ScoringRequest, score_in_memory

    result = score_in_memory(transactions, model, ScoringRequest.build(as_of=as_of))
    assert result.retention is not None
    return result.retention


def input_example(model: ChurnGuardModel, n_customers: int = 3) -> pd.DataFrame:
    """A few canonical transactions in the shape ``model`` scores (for signatures and docs).

    Parameters
    ----------
    model : ChurnGuardModel
        Fitted model; its optional columns (``quantity``, ``margin``...) are included.
    n_customers : int
        Customers in the example, with two to four purchases each.
    """
    end = pd.Timestamp(model.training_end_)
    rows = []
    for i in range(n_customers):
        for k in range(2 + i % 3):
            rows.append(
                {
                    "customer_id": f"C{i + 1:04d}",
                    "date": end - pd.Timedelta(days=20 + 37 * k + 11 * i),
                    "amount": round(19.5 + 7.25 * i + 3.0 * k, 2),
                }
            )
    frame = pd.DataFrame(rows)
    for col in model.builder_.optional_columns_:
        frame[col] = 1.0 if col in ("margin", "cost", "quantity") else "a"
    return frame.sort_values(["customer_id", "date"]).reset_index(drop=True)


def _pip_requirements() -> list[str]:
    """churnguard's runtime dependencies pinned to the versions installed here."""
    try:
        requires = importlib.metadata.requires("churnguard") or []
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        requires = []
    names = [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    pinned = []
    for name in names or [
        "pandas",
        "numpy",
        "scipy",
        "scikit-learn",
        "lightgbm",
        "lifetimes",
        "mlflow",
        "joblib",
        "pyarrow",
        "duckdb",
    ]:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def _signature(model: ChurnGuardModel, example: pd.DataFrame) -> Any:
    """Input: the log's columns, of any type (the model cleans raw values itself, so an
    integer quantity or a text date must not be rejected by MLflow's schema check);
    output and params inferred from scoring the example."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    try:
        output: pd.DataFrame | None = _score(example, model, None)
    except Exception as exc:
        log.warning("could not score the input example (%s); logging an input-only signature", exc)
        output = None
    with warnings.catch_warnings():
        # The list's integer columns never hold missing values; MLflow's hint does not apply.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inferred = infer_signature(example, output, params={"as_of": ""})  # type: ignore[arg-type]
    required = ("customer_id", "date", "amount")
    inputs = Schema([ColSpec(AnyType(), str(c), required=c in required) for c in example.columns])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def log_pyfunc_model(
    model_dir: str | os.PathLike[str],
    *,
    register_as: str | None = None,
    alias: str | None = None,
    name: str = "churnguard",
    version_tags: dict[str, str] | None = None,
) -> dict[str, str]:
    """Log a saved model directory as an MLflow pyfunc in the active run.

    Parameters
    ----------
    model_dir : path
        Directory written by :func:`churnguard.model.bundle.save_model`.
    register_as : str, optional
        Registered model name; ``None`` logs without registering.
    alias : str, optional
        Alias (e.g. ``champion``) pointed at the new version; needs ``register_as``.
    name : str
        Name of the logged model in the run (``runs:/<run_id>/<name>``).
    version_tags : dict, optional
        Tags of the registered version (data range, horizon, ...).

    Returns
    -------
    dict
        ``model_uri`` (``models:/<name>/<version>`` when registered, else the
        ``runs:/`` URI), and when registered ``registered_model``,
        ``model_version`` and ``alias``.

    Raises
    ------
    InvalidModelError
        ``model_dir`` is not a churnguard model directory.
    RuntimeError
        No MLflow run is active (call it inside ``mlflow.start_run()``).
    """
    import mlflow

    from churnguard.model.bundle import load_model

    if alias is not None and register_as is None:
        raise ParameterError(
            f"alias={alias!r} needs a registered model; pass register_as='churnguard'."
        )
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "log_pyfunc_model() must run inside an MLflow run; wrap it in "
            "`with mlflow.start_run():` or use churnguard.tracking.log_training_run."
        )
    path = Path(model_dir)
    model = load_model(path)
    example = input_example(model)
    with _quiet_example():
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=ChurnGuardPyfunc(),
            artifacts={_ARTIFACT: str(path.resolve())},
            signature=_signature(model, example),
            input_example=example,
            pip_requirements=_pip_requirements(),
            registered_model_name=register_as,
            await_registration_for=60,
        )
    result = {"model_uri": f"runs:/{run.info.run_id}/{name}"}
    version = getattr(info, "registered_model_version", None)
    if register_as is not None and version is not None:
        result.update(
            model_uri=f"models:/{register_as}/{version}",
            registered_model=register_as,
            model_version=str(version),
        )
        client = mlflow.MlflowClient()
        for key, value in (version_tags or {}).items():
            client.set_model_version_tag(register_as, str(version), key, value)
        if alias is not None:
            client.set_registered_model_alias(register_as, alias, str(version))
            result["alias"] = alias
            log.info("models:/%s@%s now points at version %s", register_as, alias, version)
    return result


def load_churnguard_model(uri: str) -> ChurnGuardModel:
    """Load the :class:`ChurnGuardModel` behind an MLflow model URI.

    Parameters
    ----------
    uri : str
        ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
        ``runs:/<run_id>/<name>`` (the logged pyfunc) or
        ``runs:/<run_id>/model_dir`` (the raw model directory artifact).

    Returns
    -------
    ChurnGuardModel

    Raises
    ------
    InvalidModelError
        The URI is malformed or does not resolve in the tracking store in use
        (``MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``).
    """
    import mlflow

    if not isinstance(uri, str):
        raise ParameterTypeError(
            f"uri must be a string such as 'models:/churnguard@champion'; got {type(uri).__name__}."
        )
    tracking = tracking_uri()
    if not _URI.match(uri):
        raise InvalidModelError(
            f"'{uri}' is not an MLflow model URI churnguard understands; expected "
            "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/churnguard. " + _FIX
        )
    mlflow.set_tracking_uri(tracking)
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
        model = pyfunc.unwrap_python_model().model_
    except Exception as exc:
        model = _load_raw_model_dir(uri)
        if model is None:
            raise InvalidModelError(
                f"could not load '{uri}' from tracking store {tracking} "
                f"({type(exc).__name__}: {_first_line(exc)}). " + _FIX
            ) from exc
    from churnguard.model.estimator import ChurnGuardModel

    if not isinstance(model, ChurnGuardModel):
        raise InvalidModelError(
            f"'{uri}' holds a {type(model).__name__}, not a churnguard model. " + _FIX
        )
    return model


def _load_raw_model_dir(uri: str) -> ChurnGuardModel | None:
    """``runs:/<id>/model_dir`` points at the plain model directory, not a pyfunc."""
    import mlflow

    from churnguard.model.bundle import load_model

    if not uri.startswith("runs:/"):
        return None
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        return load_model(local)
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
