"""Spend per purchase: the Gamma-Gamma model of monetary value.

`SpendModel` fits Fader, Hardie and Lee's (2005) Gamma-Gamma model by maximum likelihood
on unique (frequency, monetary_value) pairs with counts as weights, with churnguard's own
fitter (`churnguard.clv._fitting`: L-BFGS-B with an analytic gradient, lifetimes' objective
and penalizer; ``lifetimes`` is the fallback when it does not converge), and computes the
conditional expected spend per purchase itself, in closed form.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from lifetimes import GammaGammaFitter
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard.clv import _fitting
from churnguard.clv._estimator_support import (
    PicklableFitterMixin,
    check_penalizers,
    fit_with_penalizer_retry,
    lifetimes_fitter,
    own_then_lifetimes,
    quiet_fit,
)
from churnguard.clv._fitting import FitFailed
from churnguard.clv._rfm_checks import check_rfm
from churnguard.exceptions import InsufficientHistoryError, ModelFitError

__all__ = ["CORRELATION_WARNING_THRESHOLD", "SpendModel"]

#: |Pearson corr(frequency, monetary_value)| above which the independence assumption is flagged.
CORRELATION_WARNING_THRESHOLD = 0.3

_SPEND_COLUMNS = ("frequency", "monetary_value")
_PARAM_NAMES = ("p", "q", "v")

# The fallback optimiser; looked up at fit time so tests can substitute a failing fitter.
_FITTER_CLASSES: dict[str, type] = {"gamma_gamma": GammaGammaFitter}


class SpendModel(PicklableFitterMixin, BaseEstimator):
    """Gamma-Gamma model of the average spend per repeat purchase.

    The model assumes a customer's transaction values vary around their own mean, and that
    this mean is independent of how often they buy.

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters, relative to the mean per-customer log-likelihood.
    penalizer_grid : tuple of float
        Stronger penalizers tried, ascending, when the fit fails to converge.

    Attributes
    ----------
    params_ : dict of str to float
        ``p``, ``q`` and ``v``. ``v`` is the scale parameter called gamma (γ) in Fader,
        Hardie and Lee (2005) and in Hardie's note 025; the two names mean the same thing.
    penalizer_ : float
        Penalizer actually used.
    log_likelihood_ : float
        Total (unpenalized) log-likelihood over the repeat buyers fitted.
    n_customers_ : int
        Repeat buyers (frequency > 0 and monetary_value > 0) the model was fitted on.
    frequency_monetary_corr_ : float
        Pearson correlation of frequency and monetary_value among those repeat buyers
        (NaN if either is constant).
    population_mean_ : float
        Expected spend per purchase of a customer with no repeat history, ``p * v / (q - 1)``.
    backend_ : {"churnguard", "lifetimes"} or None
        Which optimiser produced the estimate (lifetimes' only when churnguard's did not
        converge at that penalizer); None for `from_params`.
    at_bound_ : tuple of str
        Parameters that ended on the edge of churnguard's search box (``e^±30``); empty
        for healthy fits, lifetimes fits and `from_params`.
    fitter_ : lifetimes.GammaGammaFitter
        lifetimes' model with the fitted ``params_`` (the fitted object itself when
        ``backend_ == "lifetimes"``).

    Warns
    -----
    UserWarning
        From ``fit`` when ``|frequency_monetary_corr_| > 0.3``.
    """

    backend_: str | None
    at_bound_: tuple[str, ...]

    def __init__(
        self, penalizer: float = 0.0, penalizer_grid: tuple[float, ...] = (0.001, 0.01, 0.1)
    ) -> None:
        self.penalizer = penalizer
        self.penalizer_grid = penalizer_grid

    def fit(self, rfm: pd.DataFrame) -> SpendModel:
        """Fit on the repeat buyers of an RFM frame.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency and monetary_value (others are ignored). Customers with
            frequency 0 or monetary_value 0 carry no spend information and are skipped.

        Returns
        -------
        SpendModel
            ``self``, fitted.

        Raises
        ------
        churnguard.exceptions.InsufficientHistoryError
            If fewer than two customers have repeat purchases with positive value.
        ModelFitError
            If no penalizer gives a usable fit, or the fit implies an infinite mean spend.
        """
        check_penalizers(self.penalizer, self.penalizer_grid)
        arr = check_rfm(rfm, _SPEND_COLUMNS, caller="SpendModel.fit")
        repeat = (arr["frequency"] > 0) & (arr["monetary_value"] > 0)
        n_repeat = int(repeat.sum())
        if n_repeat < 2:
            raise InsufficientHistoryError(
                "the spend model (Gamma-Gamma) needs at least 2 customers who bought again "
                "after their first purchase day with a positive spend (frequency > 0 and "
                f"monetary_value > 0); {n_repeat} of {len(repeat)} customers did. churnguard "
                "learns value from repeat purchases: use a log with a longer history or more "
                "customers (a log of first purchases only cannot be modelled)."
            )
        freq, money = arr["frequency"][repeat], arr["monetary_value"][repeat]
        with np.errstate(all="ignore"):
            corr = float(np.corrcoef(freq, money)[0, 1]) if n_repeat > 2 else float("nan")
        pairs = (
            pd.DataFrame({"frequency": freq, "monetary_value": money})
            .groupby(list(_SPEND_COLUMNS), sort=True)
            .size()
            .reset_index(name="w")
        )
        x = pairs["frequency"].to_numpy(dtype=float)
        m = pairs["monetary_value"].to_numpy(dtype=float)
        w = pairs["w"].to_numpy(dtype=np.int64)

        data = _fitting.prepare_gamma_gamma(x, m, w)

        def fit_own(pen: float) -> tuple[Any, dict[str, float], float, str, tuple[str, ...]]:
            result = _fitting.fit_gamma_gamma(data, pen)
            if not result.converged:
                raise FitFailed(
                    f"churnguard's optimiser did not converge ({result.message.strip()}; "
                    f"projected gradient {result.projected_gradient:.2g})"
                )
            fitter = lifetimes_fitter(GammaGammaFitter(), result.params)
            return fitter, result.params, result.log_likelihood, "churnguard", result.at_bound

        def fit_lifetimes(pen: float) -> tuple[Any, dict[str, float], float, str, tuple[str, ...]]:
            fitter = _FITTER_CLASSES["gamma_gamma"](penalizer_coef=pen)
            with quiet_fit():
                fitter.fit(x, m, weights=w)
                params = {k: float(fitter.params_[k]) for k in _PARAM_NAMES}
                log_params = np.log([params[k] for k in _PARAM_NAMES])
                nll = GammaGammaFitter._negative_log_likelihood(log_params, x, m, w, 0.0)
                ll = float(-nll * w.sum())
            if not np.isfinite([*params.values(), ll]).all():
                raise FitFailed(f"non-finite estimate {params}, ll={ll}")
            return fitter, params, ll, "lifetimes", ()

        fit_once = own_then_lifetimes(fit_own, fit_lifetimes, what="Gamma-Gamma")

        (fitter, params, ll, backend, at_bound), pen = fit_with_penalizer_retry(
            fit_once, float(self.penalizer), self.penalizer_grid, what="Gamma-Gamma"
        )
        if params["q"] <= 1:
            raise ModelFitError(
                f"Gamma-Gamma fit gave q={params['q']:.3g} <= 1, which makes the mean spend "
                "infinite, so expected spend and CLV are undefined. The monetary values are "
                "too heavy-tailed: cap or remove extreme order values (e.g. at the 99.9th "
                "percentile) and refit."
            )
        if abs(corr) > CORRELATION_WARNING_THRESHOLD:
            warnings.warn(
                f"frequency and monetary_value are correlated among repeat buyers (Pearson "
                f"r={corr:.2f}, |r| > {CORRELATION_WARNING_THRESHOLD}); the Gamma-Gamma model "
                "assumes they are independent, so expected spend may be biased.",
                UserWarning,
                stacklevel=2,
            )
        self.backend_ = backend
        self.at_bound_ = at_bound
        self.fitter_ = fitter
        self.params_ = params
        self.penalizer_ = pen
        self.log_likelihood_ = ll
        self.n_customers_ = n_repeat
        self.frequency_monetary_corr_ = corr
        self.population_mean_ = params["p"] * params["v"] / (params["q"] - 1)
        return self

    def _new_fitter(self) -> Any:
        return GammaGammaFitter()

    @classmethod
    def from_params(cls, params: Mapping[str, float]) -> SpendModel:
        """Build a ready-to-predict model from known ``p``, ``q``, ``v`` (``gamma`` accepted).

        Parameters
        ----------
        params : mapping of str to float
            ``p``, ``q`` and ``v`` (or ``gamma`` for ``v``), all > 0 and ``q > 1``.

        Returns
        -------
        SpendModel
            With ``params_`` set; statistics that need data are NaN / 0.
        """
        given = dict(params)
        if "gamma" in given and "v" not in given:
            given["v"] = given.pop("gamma")
        if set(given) != set(_PARAM_NAMES):
            raise ValueError(f"Gamma-Gamma needs parameters p, q, v; received {sorted(params)}.")
        values = {k: float(given[k]) for k in _PARAM_NAMES}
        if not all(math.isfinite(v) and v > 0 for v in values.values()) or values["q"] <= 1:
            raise ValueError(f"parameters must be finite and > 0 with q > 1, received {values}.")
        self = cls()
        fitter = lifetimes_fitter(GammaGammaFitter(), values)
        self.backend_ = None
        self.at_bound_ = ()
        self.fitter_ = fitter
        self.params_ = values
        self.penalizer_ = float(self.penalizer)
        self.log_likelihood_ = float("nan")
        self.n_customers_ = 0
        self.frequency_monetary_corr_ = float("nan")
        self.population_mean_ = values["p"] * values["v"] / (values["q"] - 1)
        return self

    def expected_spend_arrays(
        self, frequency: np.ndarray, monetary_value: np.ndarray
    ) -> np.ndarray:
        """Conditional expected spend per purchase for raw arrays, without validation."""
        check_is_fitted(self, "params_", msg="This SpendModel is not fitted yet; call fit(rfm).")
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        p, q, v = (self.params_[k] for k in _PARAM_NAMES)
        informative = (x > 0) & (m > 0)
        # Hardie's note 025, eq. (5): a credibility-weighted mix of the customer's own mean
        # spend and the population mean, written as one fraction.
        with np.errstate(divide="ignore", invalid="ignore"):
            conditional = p * (v + x * m) / (p * x + q - 1)
        return np.where(informative, conditional, self.population_mean_)

    def expected_spend(self, rfm: pd.DataFrame) -> np.ndarray:
        """Conditional expected spend per purchase for each customer.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency and monetary_value.

        Returns
        -------
        numpy.ndarray
            One value per row of ``rfm``, in row order. Customers with frequency 0 or
            monetary_value 0 get the population mean ``p * v / (q - 1)``.
        """
        check_is_fitted(self, "params_", msg="This SpendModel is not fitted yet; call fit(rfm).")
        arr = check_rfm(rfm, _SPEND_COLUMNS, caller="SpendModel.expected_spend")
        return self.expected_spend_arrays(arr["frequency"], arr["monetary_value"])
