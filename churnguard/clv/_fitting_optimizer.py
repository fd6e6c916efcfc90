"""The optimiser every churnguard fitter shares, and what one fit returns.

The purchase-model and Gamma-Gamma fitters (`churnguard.clv._fitting`) each reduce a fit to
an objective in log-parameters with its gradient; this module minimises it
(`minimize_in_box`: L-BFGS-B on ``[-LOG_BOUND, LOG_BOUND]`` with one BLAS thread) and
defines the outcome (`FitResult`), the failure the penalizer ladder catches (`FitFailed`),
and the BLAS-free inner product the objectives use (`dot`). Kept apart so that the model
formulas and the optimisation settings can be read (and changed) separately.

Boundaries
----------
Log-parameters live in ``[-LOG_BOUND, LOG_BOUND]`` (times scaled so the oldest customer is
1). Where nobody leaves, ``a`` or ``s`` heads for the lower bound; the objective is flat
there, so the optimiser stops on it (``a ~ 1e-9``) and `PurchaseModel` flags the fit as
degenerate. When a parameter does reach the box (``r`` when every customer buys at one
rate), the fit finishes there without error and `FitResult.at_bound` names it
(`names_at_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

__all__ = [
    "LOG_BOUND",
    "FitFailed",
    "FitResult",
    "dot",
    "minimize_in_box",
    "names_at_bound",
]

#: Log-parameters are bounded to ``[-LOG_BOUND, LOG_BOUND]`` (``e^±30``, in scaled time).
LOG_BOUND = 30.0

# L-BFGS-B settings: the objective is a mean log-likelihood (O(1)..O(10)), so these stop
# when rounding noise dominates the progress, far below what moves the parameters by 1e-6.
_FTOL = 1e-15
_GTOL = 1e-9
_MAXITER = 2_000
# An optimiser that stops on a line-search failure has still converged when the projected
# gradient (per customer, in log-parameters) is this small.
_PG_ACCEPT = 1e-5


class FitFailed(Exception):
    """One fitting attempt gave unusable parameters (the penalizer ladder tries the next).

    Raised by `PurchaseModel.fit` and `SpendModel.fit` internally (after the lifetimes
    fallback also failed); `churnguard.clv._estimator_support.fit_with_penalizer_retry`
    catches it.
    """


@dataclass(frozen=True)
class FitResult:
    """Outcome of one fit.

    Attributes
    ----------
    params : dict of str to float
        Fitted parameters in the data's own units (time unit of the RFM frame, money unit of
        the spend).
    log_likelihood : float
        Total unpenalized log-likelihood (weights included) in the data's own units.
    objective : float
        Penalized objective at the optimum: minus the mean log-likelihood (in scaled time
        for the purchase models) plus the penalty.
    converged : bool
        Whether the optimiser finished at a stationary point with a finite objective.
    message : str
        The optimiser's message.
    n_iterations, n_evaluations : int
        Optimiser iterations and objective evaluations.
    projected_gradient : float
        Largest component of the projected gradient at the end.
    at_bound : tuple of str
        Parameters whose log ended within 1e-6 of ``±LOG_BOUND``.
    n_nonfinite : float
        Weight (customers) of the patterns whose log-likelihood or P(alive) is not finite
        at the optimum.
    n_fallback : int
        Pareto/NBD ``(x, u)`` pairs whose integral needed the quadrature at the optimum
        (0 for the other models).
    """

    params: dict[str, float]
    log_likelihood: float
    objective: float
    converged: bool
    message: str
    n_iterations: int
    n_evaluations: int
    projected_gradient: float
    at_bound: tuple[str, ...]
    n_nonfinite: float
    n_fallback: int


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two 1-d arrays, without BLAS."""
    # OpenBLAS wakes its threads for every ddot; between the other work of an objective
    # evaluation they have gone to sleep, and waking them costs up to 10 ms per call.
    return float(np.einsum("i,i->", a, b))


def minimize_in_box(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], theta0: np.ndarray
) -> tuple[np.ndarray, float, bool, str, int, int, float]:
    """L-BFGS-B in the box; returns theta, value, converged, message, nit, nfev, |pg|."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(theta0)

    def safe(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = fun(theta)
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            # tells the line search to step back instead of aborting the fit
            return math.inf, np.zeros_like(theta)
        return value, grad

    # L-BFGS-B's own linear algebra is a few BLAS calls on 4-vectors per iteration; with
    # OpenBLAS free to use both cores each call waits for its threads to wake (~3 ms, 10x the
    # whole iteration on small data). One thread is faster for everything done here.
    with threadpool_limits(1, user_api="blas"):
        res = minimize(
            safe,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": _MAXITER, "ftol": _FTOL, "gtol": _GTOL, "maxcor": 20},
        )
    theta = np.clip(res.x, -LOG_BOUND, LOG_BOUND)
    value, grad = fun(theta)
    # projected gradient: components pushing out of the box at a bound do not count
    pg = grad.copy()
    pg[(theta <= -LOG_BOUND) & (grad > 0)] = 0.0
    pg[(theta >= LOG_BOUND) & (grad < 0)] = 0.0
    pg_norm = float(np.max(np.abs(pg))) if np.isfinite(pg).all() else math.inf
    converged = bool(math.isfinite(value) and (res.success or pg_norm <= _PG_ACCEPT))
    return theta, value, converged, str(res.message), int(res.nit), int(res.nfev), pg_norm


def names_at_bound(names: tuple[str, ...], theta: np.ndarray) -> tuple[str, ...]:
    return tuple(k for k, t in zip(names, theta, strict=True) if abs(t) >= LOG_BOUND - 1e-6)
