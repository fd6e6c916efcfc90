"""What `PurchaseModel` and `SpendModel` share as estimators built on lifetimes' fitters.

Both models fit with churnguard's optimiser and fall back to a ``lifetimes`` fitter, which
also computes some of their predictions. Common to both, and kept here so that neither
model module depends on the other for it:

* the penalizer ladder: `check_penalizers` and `fit_with_penalizer_retry` (retry a failed
  fit with each stronger penalizer of the grid, warn which one was used);
* lifetimes interop: `lifetimes_fitter` (an unfitted lifetimes fitter made to predict from
  known parameters) and `quiet_fit` (silence its stdout and overflow warnings);
* pickling: `PicklableFitterMixin` drops the unpicklable lifetimes fitter and rebuilds it
  from ``params_`` on load.

Re-exported from `churnguard.clv.purchase`, where they were defined first.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from lifetimes.utils import ConvergenceError

from churnguard.clv._fitting_optimizer import FitFailed
from churnguard.exceptions import ConvergenceWarning, ModelFitError

log = logging.getLogger(__name__)

__all__ = [
    "own_then_lifetimes",
    "PicklableFitterMixin",
    "check_penalizers",
    "fit_with_penalizer_retry",
    "lifetimes_fitter",
    "quiet_fit",
]

_Result = TypeVar("_Result")


def own_then_lifetimes(
    fit_own: Callable[[float], _Result],
    fit_lifetimes: Callable[[float], _Result],
    *,
    what: str = "the model",
) -> Callable[[float], _Result]:
    """``fit_once(penalizer)``: churnguard's optimiser first, lifetimes' when it fails.

    Raises ``FitFailed`` naming both failures when neither gives a usable fit, so that
    :func:`fit_with_penalizer_retry` moves on to the next penalizer. The fallback is
    logged with its time: lifetimes' optimiser can take a minute where churnguard's takes
    a second, and a run that slows down should say why.
    """

    def fit_once(pen: float) -> _Result:
        try:
            return fit_own(pen)
        except FitFailed as own:
            log.info(
                "%s (penalizer %g): %s; fitting with lifetimes' optimiser instead (slower)",
                what, pen, own,
            )  # fmt: skip
            start = time.perf_counter()
            try:
                result = fit_lifetimes(pen)
                log.info("%s: lifetimes' fit took %.1f s", what, time.perf_counter() - start)
                return result
            except (ConvergenceError, np.linalg.LinAlgError, FitFailed) as exc:
                theirs = str(exc).strip() or type(exc).__name__
                raise FitFailed(f"{own}; lifetimes: {theirs}") from exc

    return fit_once


def fit_with_penalizer_retry(
    fit_once: Callable[[float], _Result],
    penalizer: float,
    penalizer_grid: Sequence[float],
    *,
    what: str,
) -> tuple[_Result, float]:
    """Run ``fit_once(penalizer)``; on failure retry with each stronger grid penalizer.

    ``fit_once`` signals an unusable fit by raising ``lifetimes.utils.ConvergenceError``,
    ``numpy.linalg.LinAlgError`` or the internal ``FitFailed``. Grid values not larger
    than ``penalizer`` are skipped. Returns ``(result, penalizer_used)``; warns
    `ConvergenceWarning` naming the fallback penalizer; raises `ModelFitError` (listing
    every attempt) when all fail. ``what`` names the model in messages.
    """
    attempts = [penalizer] + sorted(p for p in set(penalizer_grid) if p > penalizer)
    failures: list[str] = []
    for pen in attempts:
        try:
            result = fit_once(pen)
        except (ConvergenceError, np.linalg.LinAlgError, FitFailed) as exc:
            failures.append(f"penalizer={pen:g}: {str(exc).strip() or type(exc).__name__}")
            continue
        if pen != penalizer:
            warnings.warn(
                f"{what} did not converge with penalizer={penalizer:g}; fitted with "
                f"penalizer={pen:g} instead (parameters are shrunk towards 0). Check the data "
                "for extreme customers or pass a penalizer explicitly.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result, pen
    raise ModelFitError(
        f"{what} could not be fitted with any penalizer in {attempts}: {'; '.join(failures)}. "
        "Check the RFM frame (time unit, extreme frequencies) or pass a larger penalizer_grid."
    )


def lifetimes_fitter(fitter: Any, params: Mapping[str, float]) -> Any:
    """Set up an unfitted lifetimes ``fitter`` to predict from ``params``, as if fitted.

    lifetimes' ``fit`` also binds ``predict`` (its conditional expectation), which its own
    CLV helper calls; churnguard's fits never run lifetimes' ``fit``, so it is bound here.
    Returns ``fitter``.
    """
    fitter.params_ = pd.Series(dict(params))
    conditional = getattr(fitter, "conditional_expected_number_of_purchases_up_to_time", None)
    if conditional is not None:
        fitter.predict = conditional
    return fitter


def check_penalizers(penalizer: float, penalizer_grid: Sequence[float]) -> None:
    """Raise TypeError / ValueError unless every penalizer is a finite number >= 0."""
    for v in (penalizer, *penalizer_grid):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"penalizers must be numbers, received {v!r} ({type(v).__name__}).")
        if not math.isfinite(float(v)) or v < 0:
            raise ValueError(f"penalizers must be finite and >= 0, received {v}.")


#: One lifetimes fit at a time in the process: the fits below swap the process-wide
#: ``sys.stdout`` and warning filters, and lifetimes' Hessian nests autograd traces, whose
#: stack is global. Fits on several threads (training snapshots) would leave ``sys.stdout``
#: pointing at another fit's buffer or mix their traces; serialised, they cannot.
_LIFETIMES_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_fit() -> Iterator[None]:
    """Silence lifetimes' stdout dumps and the optimiser's probing overflow warnings.

    Holds a process-wide lock for the whole fit (see ``_LIFETIMES_LOCK``).
    """
    with (
        _LIFETIMES_LOCK,
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class PicklableFitterMixin:
    """Pickle a model without its lifetimes fitter and rebuild it from ``params_``.

    lifetimes' fitters hold lambdas and cannot be pickled; the parameters are all a
    fitted model needs to predict. Subclasses say which fitter to rebuild.
    """

    params_: dict[str, float]

    def _new_fitter(self) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().__getstate__())  # type: ignore[misc, call-overload]
        state.pop("fitter_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        if "params_" in state:
            self.fitter_ = lifetimes_fitter(self._new_fitter(), self.params_)
