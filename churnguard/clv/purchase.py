"""Purchase-count models: how many repeat purchases will a customer make, and are they alive?

`PurchaseModel` fits the buy-till-you-die models BG/NBD, Pareto/NBD and MBG/NBD behind
churnguard's own interface. Fitting collapses customers into their unique (frequency,
recency, T) patterns with the pattern counts as likelihood weights, and maximises the
likelihood with churnguard's own fitters (`churnguard.clv._fitting`: L-BFGS-B with analytic
gradients, the same objective and penalizer as ``lifetimes``, the same estimates to ~1e-6;
1M customers in 600k patterns take ~1 s for BG/NBD and 3-5 s for Pareto/NBD on 2 cores,
against 7 s and 5-7 minutes with lifetimes). ``lifetimes`` remains the fallback when that
optimiser does not converge, and still computes a few predictions (conditional and
unconditional expected purchases) from the fitted parameters.

Likelihoods and P(alive) are churnguard's own (`churnguard.clv._likelihood`), which stay
finite for heavy buyers where lifetimes' Pareto/NBD ``hyp2f1`` form does not. After
fitting, the model records whether the fit is degenerate (``degenerate_``): a dropout
process at its boundary ("nobody ever leaves"), or customers whose likelihood was not
finite in the objective the optimiser saw.

`PurchaseModel` is defined here (pickled models refer to this path) with its fit and
learned state; its prediction methods are in `churnguard.clv._purchase_predictions`, the
per-penalizer fit in `churnguard.clv._purchase_fit`. The RFM-frame validation
(`churnguard.clv._rfm_checks`) and the penalizer ladder and lifetimes helpers shared with
the spend model (`churnguard.clv._estimator_support`) are re-exported from here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard.clv import _likelihood
from churnguard.clv._estimator_support import (
    PicklableFitterMixin,
    check_penalizers,
    fit_with_penalizer_retry,
    lifetimes_fitter,
    quiet_fit,
)
from churnguard.clv._purchase_fit import count_nonfinite, pattern_fitter
from churnguard.clv._purchase_predictions import PurchasePredictions
from churnguard.clv._rfm_checks import check_rfm, customer_id_column
from churnguard.exceptions import ConvergenceWarning, InputDataError, ModelFitError

__all__ = [
    "BACKENDS",
    "DROPOUT_SHARE_THRESHOLD",
    "DegenerateFitWarning",
    "MODEL_NAMES",
    "ModelFitError",
    "PurchaseModel",
    "check_penalizers",
    "check_rfm",
    "customer_id_column",
    "fit_with_penalizer_retry",
    "lifetimes_fitter",
    "quiet_fit",
]

#: Accepted ``model`` keys and their names in the literature.
MODEL_NAMES: dict[str, str] = {"bgnbd": "BG/NBD", "pareto": "Pareto/NBD", "mbgnbd": "MBG/NBD"}

_PARAM_NAMES: dict[str, tuple[str, ...]] = _likelihood.MODEL_PARAMS

#: A fit whose model expects fewer than this share of customers to drop out within the span
#: seen in fit (max T) has its dropout process at the boundary: "nobody ever leaves", so
#: P(alive) is ~1 for everyone and churn is not identified. Healthy fits are 200x above it
#: (CDNOW calibration sample: 0.20 BG/NBD, 0.57 MBG/NBD, 0.59 Pareto/NBD), boundary fits
#: 1000x below (BG/NBD a = 1e-6 on CDNOW: 4e-7; Pareto/NBD s = 1e-13: 1e-13; steady buyers
#: who never leave fit to 1e-8..1e-13). A real base where fewer than 1 in 1,000 customers
#: leave over the whole observation window gives churn scoring nothing to learn either.
DROPOUT_SHARE_THRESHOLD = 1e-3

#: Names of ``backend_``: who produced the estimate.
BACKENDS = ("churnguard", "lifetimes")

# lifetimes' fitters: the fallback optimiser and the prediction backend. Looked up at fit
# time (not bound at import) so tests can substitute a failing fitter.
_FITTER_CLASSES: dict[str, type] = {
    "bgnbd": BetaGeoFitter,
    "pareto": ParetoNBDFitter,
    "mbgnbd": ModifiedBetaGeoFitter,
}


class DegenerateFitWarning(ConvergenceWarning):
    """A purchase model fitted, but degenerately (see ``PurchaseModel.degenerate_``)."""


class PurchaseModel(PurchasePredictions, PicklableFitterMixin, BaseEstimator):
    """Buy-till-you-die model of repeat purchases (BG/NBD, Pareto/NBD or MBG/NBD).

    Parameters
    ----------
    model : {"bgnbd", "pareto", "mbgnbd"}
        Which model to fit.
    penalizer : float
        L2 penalty on the parameters, relative to the mean per-customer log-likelihood
        (the same meaning for every model). 0 gives the maximum-likelihood estimate.
    penalizer_grid : tuple of float
        Stronger penalizers tried, ascending, when the fit fails to converge.

    Attributes
    ----------
    params_ : dict of str to float
        ``r, alpha, a, b`` (BG/NBD, MBG/NBD) or ``r, alpha, s, beta`` (Pareto/NBD), with
        ``alpha``/``beta`` in the RFM frame's time unit.
    penalizer_ : float
        Penalizer actually used.
    log_likelihood_ : float
        Total (unpenalized) log-likelihood over customers, in the frame's time unit.
    n_customers_ : int
        Customers fitted.
    n_patterns_ : int
        Unique (frequency, recency, T) patterns the likelihood was evaluated on.
    max_frequency_, max_T_ : float
        Largest frequency and T seen in fit (defaults for the P(alive) matrix).
    dropout_share_ : float
        Share of new customers the fitted model expects to have dropped out by ``max_T_``
        (see `churnguard.clv._likelihood.dropout_share`); NaN without data (`from_params`).
    n_nonfinite_ : int
        Customers whose log-likelihood or P(alive) at the fitted parameters is not finite in
        the objective the optimiser saw: churnguard's stable likelihood (0 unless the data
        are extreme), or, when the fit fell back to lifetimes, also lifetimes' P(alive) (the
        ``hyp2f1`` term of the objective its optimiser minimised, evaluated in its scaled
        time). Non-zero means the optimiser saw NaN for them, so the estimate may not be the
        maximum-likelihood one.
    n_nonfinite_predictions_ : int
        Customers (estimated from a sample of patterns beyond 20,000) whose conditional
        expected purchases over one observed span are not finite at the fitted parameters;
        non-zero makes the fit degenerate (its value predictions are unusable).
    degenerate_ : str or None
        One-line reason why the fit is degenerate, or None for a healthy fit: the dropout
        process at its boundary (``dropout_share_ < DROPOUT_SHARE_THRESHOLD``, "nobody ever
        leaves"), ``n_nonfinite_ > 0`` and/or ``n_nonfinite_predictions_ > 0``. `fit` also
        warns `DegenerateFitWarning` then.
    backend_ : {"churnguard", "lifetimes"} or None
        Which optimiser produced the estimate: churnguard's (`churnguard.clv._fitting`), or
        lifetimes' when churnguard's did not converge at that penalizer; None for
        `from_params`.
    at_bound_ : tuple of str
        Parameters that ended on the edge of churnguard's search box (``e^±30``, with
        ``alpha``/``beta`` in units of ``max T``), e.g. ``("r",)`` when every customer buys
        at the same rate and the Gamma heterogeneity collapses. The fit is still returned;
        empty for healthy fits, lifetimes fits and `from_params`.
    fitter_ : lifetimes fitter
        lifetimes' model with the fitted ``params_``, used for the predictions churnguard
        does not compute itself. When ``backend_ == "lifetimes"`` it is the fitted object
        (its ``data`` holds the weighted patterns, not customers).

    Examples
    --------
    >>> model = PurchaseModel("bgnbd").fit(rfm)  # doctest: +SKIP
    >>> model.predict(rfm, horizon=39)  # doctest: +SKIP
    """

    backend_: str | None
    at_bound_: tuple[str, ...]

    def __init__(
        self,
        model: str = "bgnbd",
        penalizer: float = 0.0,
        penalizer_grid: tuple[float, ...] = (0.001, 0.01, 0.1),
    ) -> None:
        self.model = model
        self.penalizer = penalizer
        self.penalizer_grid = penalizer_grid

    @property
    def model_name(self) -> str:
        """Human name of the model: "BG/NBD", "Pareto/NBD" or "MBG/NBD"."""
        self._check_model_key()
        return MODEL_NAMES[self.model]

    def _check_model_key(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(
                f"model must be one of {sorted(MODEL_NAMES)}, received {self.model!r}. "
                "Use 'bgnbd' (BG/NBD), 'pareto' (Pareto/NBD) or 'mbgnbd' (MBG/NBD)."
            )

    def fit(self, rfm: pd.DataFrame) -> PurchaseModel:
        """Fit the model to an RFM frame.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency, recency, T (customer_id and others are ignored).

        Returns
        -------
        PurchaseModel
            ``self``, fitted.

        Raises
        ------
        churnguard.exceptions.InputDataError
            If the frame is invalid.
        ModelFitError
            If no penalizer in the grid gives a usable fit.

        Warns
        -----
        churnguard.exceptions.ConvergenceWarning
            If a penalizer from the grid had to be used.
        DegenerateFitWarning
            If the fit is degenerate (see ``degenerate_``); a healthy fit warns nothing.
        """
        self._check_model_key()
        check_penalizers(self.penalizer, self.penalizer_grid)
        arr = check_rfm(rfm, caller=f"PurchaseModel({self.model!r}).fit")
        if arr["T"].max() <= 0:
            raise InputDataError(
                "PurchaseModel.fit: every customer has T == 0, so there is no observed time to "
                "learn purchase rates from; use a later observation end date."
            )
        codes, (freq, rec, age) = _likelihood.unique_rows(
            arr["frequency"], arr["recency"], arr["T"]
        )
        weights = np.bincount(codes, minlength=len(freq))
        model_key = self.model
        fit_once = pattern_fitter(
            model_key, _FITTER_CLASSES[model_key], freq, rec, age, weights,
            what=MODEL_NAMES[model_key],
        )  # fmt: skip
        fitted, pen = fit_with_penalizer_retry(
            fit_once, float(self.penalizer), self.penalizer_grid, what=MODEL_NAMES[model_key]
        )
        fitter, params, ll = fitted.fitter, fitted.params, fitted.log_likelihood
        self._adopt(
            fitter,
            params,
            pen,
            ll,
            len(arr["T"]),
            len(weights),
            arr["frequency"].max(),
            arr["T"].max(),
        )
        self.backend_ = fitted.backend
        self.at_bound_ = fitted.at_bound
        self.n_nonfinite_ = (
            fitted.n_nonfinite
            if fitted.backend == "churnguard"
            else count_nonfinite(
                self.model, self.params_, self._new_fitter(), freq, rec, age, weights
            )
        )
        self.n_nonfinite_predictions_ = self._count_nonfinite_predictions(freq, rec, age, weights)
        self.degenerate_ = self._degenerate_reason()
        if self.degenerate_ is not None:
            warnings.warn(
                f"{MODEL_NAMES[model_key]} fit is degenerate: {self.degenerate_}. Treat its "
                "P(alive) and churn predictions with care: check the time unit and observation "
                "window, or compare models with churnguard.clv.compare_models.",
                DegenerateFitWarning,
                stacklevel=2,
            )
        return self

    def _adopt(
        self,
        fitter: Any,
        params: dict[str, float],
        penalizer: float,
        log_likelihood: float,
        n_customers: int,
        n_patterns: int,
        max_frequency: float,
        max_T: float,
    ) -> PurchaseModel:
        """Store the learned state (shared by `fit` and `from_params`)."""
        self.backend_ = None
        self.at_bound_ = ()
        self.fitter_ = fitter
        self.params_ = params
        self.penalizer_ = float(penalizer)
        self.log_likelihood_ = float(log_likelihood)
        self.n_customers_ = int(n_customers)
        self.n_patterns_ = int(n_patterns)
        self.max_frequency_ = float(max_frequency)
        self.max_T_ = float(max_T)
        self.dropout_share_ = _likelihood.dropout_share(self.model, params, self.max_T_)
        self.n_nonfinite_ = 0
        self.n_nonfinite_predictions_ = 0
        self.degenerate_ = self._degenerate_reason()
        return self

    def _count_nonfinite_predictions(
        self, freq: np.ndarray, rec: np.ndarray, age: np.ndarray, weights: np.ndarray
    ) -> int:
        """Customers (by pattern weight) whose expected purchases are not finite.

        Why: a fit can be finite in its likelihood and P(alive) yet not in the conditional
        expectation. MBG/NBD on a 9-month subscription-like log went to r = 1e9,
        alpha = 6e9 (every customer buys at one rate) and a, b = 3e-13 (each leaves at once
        or never): the hypergeometric term of the expectation is then NaN for everyone, and
        the value columns would read 0. Checked over one observed span (``max_T_``), on
        every pattern up to 20,000 and otherwise on the 5,000 heaviest buyers' patterns and
        15,000 spread over the rest (the expectation fails for heavy buyers first).
        """
        n = len(freq)
        if n > 20_000:
            heavy = np.argsort(freq, kind="stable")[-5_000:]
            rows = np.unique(np.concatenate([heavy, np.linspace(0, n - 1, 15_000).astype(int)]))
        else:
            rows = np.arange(n)
        horizon = float(self.max_T_) if np.isfinite(self.max_T_) and self.max_T_ > 0 else 1.0
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.expected_purchases_arrays(horizon, freq[rows], rec[rows], age[rows])
        bad = ~np.isfinite(out)
        if not bad.any():
            return 0
        # The sample stands for the patterns it was drawn from: scale to customers.
        share = float(weights[rows][bad].sum()) / float(weights[rows].sum())
        return max(1, round(share * float(weights.sum())))

    def _degenerate_reason(self) -> str | None:
        """One-line reason the fit is degenerate (from the learned attributes), or None."""
        reasons = []
        if not self.dropout_identified:
            p = self.params_
            if self.model == "pareto":
                detail = f"s={p['s']:.3g}, mean dropout rate s/beta={p['s'] / p['beta']:.3g}"
            else:
                detail = f"a={p['a']:.3g}, mean dropout probability a/(a+b)="
                detail += f"{p['a'] / (p['a'] + p['b']):.3g}"
            reasons.append(
                f"nobody ever leaves: the model expects a share of {self.dropout_share_:.2g} "
                f"of customers to drop out within the {self.max_T_:.4g} time units observed "
                f"({detail}; threshold {DROPOUT_SHARE_THRESHOLD:g}): it explains silent "
                "customers by slow buying, not by leaving, which is wrong where many buy "
                "once and never return"
            )
        if self.n_nonfinite_ > 0:
            # models pickled before backend_ existed were all fitted by lifetimes
            where = (
                "churnguard's likelihood of the"
                if getattr(self, "backend_", "lifetimes") == "churnguard"
                else "lifetimes'"
            )
            reasons.append(
                f"{self.n_nonfinite_} of {self.n_customers_} customers have a non-finite "
                f"log-likelihood or P(alive) at the fitted parameters in {where} "
                f"{MODEL_NAMES[self.model]} (typically heavy buyers), so its optimiser saw NaN "
                "and the estimate may not be the maximum-likelihood one"
            )
        bad_predictions = int(getattr(self, "n_nonfinite_predictions_", 0))
        if bad_predictions > 0:
            shown = ", ".join(f"{k}={v:.3g}" for k, v in self.params_.items())
            reasons.append(
                f"about {bad_predictions} of {self.n_customers_} customers get a non-finite "
                f"expected purchase count at the fitted parameters ({shown}: typically a "
                "limit the closed form cannot evaluate), so its value predictions are unusable"
            )
        return "; ".join(reasons) or None

    @property
    def dropout_identified(self) -> bool:
        """False when the fitted dropout process is at its boundary ("nobody ever leaves").

        True when the model expects at least ``DROPOUT_SHARE_THRESHOLD`` of customers to
        drop out within the span seen in fit, and also when that is unknown (`from_params`).
        """
        self._check_fitted()
        share = self.dropout_share_
        return bool(math.isnan(share) or share >= DROPOUT_SHARE_THRESHOLD)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "params_" in state and "backend_" not in state:
            # pickled before churnguard fitted itself: lifetimes did (or from_params)
            self.backend_ = "lifetimes"
            self.at_bound_ = ()
        if "params_" in state and "degenerate_" not in state:
            # Pickled before fits recorded diagnostics: recompute what the parameters and the
            # span tell; the non-finite count needs the data, so it is taken as 0.
            self.dropout_share_ = _likelihood.dropout_share(
                self.model, self.params_, float(state.get("max_T_", math.nan))
            )
            self.n_nonfinite_ = 0
            self.n_nonfinite_predictions_ = 0
            self.degenerate_ = self._degenerate_reason()

    def _new_fitter(self) -> Any:
        return _FITTER_CLASSES[self.model]()

    @classmethod
    def from_params(cls, params: Mapping[str, float], model: str = "bgnbd") -> PurchaseModel:
        """Build a ready-to-predict model from known parameters (e.g. published ones).

        ``params`` must hold exactly the model's parameter names (see ``params_``), all > 0.
        No data is seen, so ``log_likelihood_``, ``max_frequency_``, ``max_T_`` and
        ``dropout_share_`` are NaN, ``n_nonfinite_`` is 0 and ``degenerate_`` is None.
        """
        self = cls(model=model)
        self._check_model_key()
        names = _PARAM_NAMES[model]
        if set(params) != set(names):
            raise ValueError(
                f"{MODEL_NAMES[model]} needs parameters {list(names)}, received {sorted(params)}."
            )
        values = {k: float(params[k]) for k in names}
        if not all(math.isfinite(v) and v > 0 for v in values.values()):
            raise ValueError(f"parameters must be finite and > 0, received {values}.")
        fitter = lifetimes_fitter(_FITTER_CLASSES[model](), values)
        nan = float("nan")
        return self._adopt(fitter, values, float(self.penalizer), nan, 0, 0, nan, nan)

    def _check_fitted(self) -> None:
        check_is_fitted(
            self, "params_", msg="This PurchaseModel is not fitted yet; call fit(rfm) first."
        )
