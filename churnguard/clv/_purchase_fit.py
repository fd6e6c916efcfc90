"""How `PurchaseModel.fit` fits one penalizer: churnguard's optimiser, lifetimes as fallback.

`pattern_fitter` returns the function the penalizer ladder
(`churnguard.clv._estimator_support.fit_with_penalizer_retry`) calls with each penalizer:
it fits the unique ``(x, tx, T)`` patterns with churnguard's own optimiser
(``churnguard.clv._fitting.fit_purchase``, looked up at call time so tests can substitute
it) and, when that does not converge, with the lifetimes fitter given (with lifetimes'
penalizer rescaled to mean the same, and a fixed Pareto/NBD start). `count_nonfinite` tells
how many customers a lifetimes fit saw a non-finite objective for. Kept apart from
`PurchaseModel` so the estimator reads as its interface and learned state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnguard.clv import _fitting, _likelihood
from churnguard.clv._estimator_support import lifetimes_fitter, own_then_lifetimes, quiet_fit
from churnguard.clv._fitting_optimizer import FitFailed

__all__ = ["PurchaseFit", "count_nonfinite", "pattern_fitter", "pattern_log_likelihood"]


@dataclass(frozen=True)
class PurchaseFit:
    """One successful fitting attempt: what `PurchaseModel.fit` adopts."""

    fitter: Any
    params: dict[str, float]
    log_likelihood: float
    backend: str
    # customers with a non-finite likelihood in churnguard's objective (-1: not counted)
    n_nonfinite: int
    # parameters that ended on the box of churnguard's optimiser
    at_bound: tuple[str, ...] = ()


def pattern_fitter(
    model_key: str,
    cls: type,
    freq: np.ndarray,
    rec: np.ndarray,
    age: np.ndarray,
    weights: np.ndarray,
    *,
    what: str = "the purchase model",
) -> Callable[[float], PurchaseFit]:
    """The fit of one penalizer on weighted patterns, for `fit_with_penalizer_retry`.

    ``what`` names the model in the log line of a fallback to lifetimes' optimiser.

    Parameters
    ----------
    model_key : {"bgnbd", "mbgnbd", "pareto"}
        Which model.
    cls : type
        lifetimes' fitter class of the model (the fallback optimiser and the prediction
        backend of the result).
    freq, rec, age : numpy.ndarray
        The unique ``(x, tx, T)`` patterns.
    weights : numpy.ndarray
        Customers per pattern.

    Returns
    -------
    callable
        ``fit_once(penalizer) -> PurchaseFit``; raises ``FitFailed`` when neither optimiser
        gives a usable estimate.
    """
    names = _likelihood.MODEL_PARAMS[model_key]
    data = _fitting.prepare_purchase(freq, rec, age, weights)

    def fit_own(pen: float) -> PurchaseFit:
        result = _fitting.fit_purchase(model_key, data, pen)
        if not result.converged:
            raise FitFailed(
                f"churnguard's optimiser did not converge ({result.message.strip()}; "
                f"projected gradient {result.projected_gradient:.2g})"
            )
        params = result.params
        if not np.isfinite(list(params.values())).all() or min(params.values()) <= 0:
            raise FitFailed(f"non-finite or non-positive estimate {params}")
        return PurchaseFit(
            lifetimes_fitter(cls(), params),
            params,
            result.log_likelihood,
            "churnguard",
            int(result.n_nonfinite),
            result.at_bound,
        )

    def fit_lifetimes(pen: float) -> PurchaseFit:
        # lifetimes' Pareto objective is divided by mean(weight), the others by sum(weight);
        # rescaling its penalizer by the pattern count gives `penalizer` one meaning.
        coef = pen * len(weights) if model_key == "pareto" else pen
        fitter = cls(penalizer_coef=coef)
        with quiet_fit():
            if model_key == "pareto":
                # fixed start: lifetimes otherwise draws one from numpy's global RNG;
                # its Nelder-Mead default tol (1e-4) stops ~1e-3 short of the optimum
                fitter.fit(freq, rec, age, weights=weights, initial_params=np.ones(4), tol=1e-6)
            else:
                fitter.fit(freq, rec, age, weights=weights)
            params = {k: float(fitter.params_[k]) for k in names}
        if not np.isfinite(list(params.values())).all() or min(params.values()) <= 0:
            raise FitFailed(f"non-finite or non-positive estimate {params}")
        ll = pattern_log_likelihood(model_key, params, freq, rec, age, weights)
        if not np.isfinite(ll):
            raise FitFailed(f"non-finite log-likelihood at {params}")
        return PurchaseFit(fitter, params, ll, "lifetimes", -1)

    return own_then_lifetimes(fit_own, fit_lifetimes, what=what)


def pattern_log_likelihood(
    model: str,
    params: dict[str, float],
    freq: np.ndarray,
    rec: np.ndarray,
    age: np.ndarray,
    weights: np.ndarray,
) -> float:
    """Total unpenalized log-likelihood in the data's own time unit (not lifetimes' scaled one).

    churnguard's own per-pattern likelihood (`churnguard.clv._likelihood.log_likelihood`):
    identical to lifetimes' where that is finite, finite for heavy Pareto/NBD buyers.
    """
    ll = _likelihood.log_likelihood(model, params, freq, rec, age)
    return float(np.sum(weights * ll))


def count_nonfinite(
    model: str,
    params: dict[str, float],
    backend_fitter: Any,
    freq: np.ndarray,
    rec: np.ndarray,
    age: np.ndarray,
    weights: np.ndarray,
) -> int:
    """Customers (pattern weights) with a non-finite log-likelihood or P(alive).

    lifetimes' public P(alive) shares the ``hyp2f1`` term of the Pareto/NBD objective its
    optimiser minimised, so it shows where that objective was NaN without calling
    lifetimes' private likelihood functions. It is evaluated where the optimiser
    evaluated it: lifetimes fits in time scaled by ``1 / max(T)``, and ``hyp2f1``
    over/underflows differently at other scales (full CDNOW has a customer whose
    unscaled lifetimes P(alive) is NaN although the fit never saw one). ``backend_fitter``
    is a new lifetimes fitter of ``model``; its ``params_`` are set here.
    """
    scale = 1.0 / float(age.max())
    scaled = {k: v * scale if k in ("alpha", "beta") else v for k, v in params.items()}
    backend_fitter.params_ = pd.Series(scaled)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        backend = np.asarray(
            backend_fitter.conditional_probability_alive(freq, rec * scale, age * scale)
        )
    ours_ll = _likelihood.log_likelihood(model, params, freq, rec, age)
    ours_alive = _likelihood.p_alive(model, params, freq, rec, age)
    bad = ~(np.isfinite(backend) & np.isfinite(ours_ll) & np.isfinite(ours_alive))
    return int(weights[bad].sum())
