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

This module also holds the RFM-frame validation and the penalizer-retry loop that the
spend model reuses.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from churnguard.clv import _fitting, _likelihood
from churnguard.clv._fitting import FitFailed
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

_RFM_COLUMNS = ("frequency", "recency", "T")
# Float noise from date arithmetic may put recency a hair above T; beyond this it is an error.
_RECENCY_TOLERANCE = 1e-9

_Result = TypeVar("_Result")


class DegenerateFitWarning(ConvergenceWarning):
    """A purchase model fitted, but degenerately (see ``PurchaseModel.degenerate_``)."""


@dataclass(frozen=True)
class _PurchaseFit:
    """One successful fitting attempt: what `PurchaseModel.fit` adopts."""

    fitter: Any
    params: dict[str, float]
    log_likelihood: float
    backend: str
    # customers with a non-finite likelihood in churnguard's objective (-1: not counted)
    n_nonfinite: int
    # parameters that ended on the box of churnguard's optimiser
    at_bound: tuple[str, ...] = ()


def check_rfm(
    rfm: pd.DataFrame, columns: Sequence[str] = _RFM_COLUMNS, *, caller: str = "the model"
) -> dict[str, np.ndarray]:
    """Validate an RFM frame and return the requested columns as positional float arrays.

    Parameters
    ----------
    rfm : pandas.DataFrame
        One row per customer, columns as ``lifetimes.utils.summary_data_from_transaction_data``
        defines them.
    columns : sequence of str
        Required columns, any of frequency, recency, T, monetary_value.
    caller : str
        Named in error messages.

    Returns
    -------
    dict of str to numpy.ndarray
        The columns as float arrays (the index is dropped on purpose: callers work by row).

    Raises
    ------
    TypeError
        If ``rfm`` is not a DataFrame.
    churnguard.exceptions.InputDataError
        Missing column, no rows, non-numeric/NaN/negative values, non-integer frequency,
        recency > T, or recency != 0 with frequency 0.
    """
    if not isinstance(rfm, pd.DataFrame):
        raise TypeError(
            f"{caller} expects an RFM pandas DataFrame, received {type(rfm).__name__}. "
            "Build one with churnguard.features or "
            "lifetimes.utils.summary_data_from_transaction_data."
        )
    missing = [c for c in columns if c not in rfm.columns]
    if missing:
        raise InputDataError(
            f"{caller}: the RFM frame is missing column(s) {missing}; expected {list(columns)}, "
            f"received {list(map(str, rfm.columns))}. Rename the columns (e.g. x -> frequency, "
            "t_x -> recency, zbar -> monetary_value) or rebuild the frame."
        )
    if len(rfm) == 0:
        raise InputDataError(f"{caller}: the RFM frame has no rows; pass at least one customer.")
    arrays: dict[str, np.ndarray] = {}
    for col in columns:
        series = rfm[col]
        if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
            raise InputDataError(
                f"{caller}: column '{col}' must be numeric, received dtype {series.dtype}. "
                "Convert it with pd.to_numeric."
            )
        values = series.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputDataError(
                f"{caller}: column '{col}' has {int(bad.sum())} missing or infinite value(s) "
                f"(first at row {int(np.argmax(bad))}); every customer needs a finite value."
            )
        if (values < 0).any():
            raise InputDataError(
                f"{caller}: column '{col}' has negative values (min {values.min():g}); "
                "frequency, recency, T and monetary_value are all >= 0."
            )
        arrays[col] = values
    if "frequency" in arrays:
        freq = arrays["frequency"]
        if (freq != np.round(freq)).any():
            raise InputDataError(
                f"{caller}: frequency must count repeat purchase occasions (whole numbers); "
                f"received e.g. {freq[freq != np.round(freq)][0]:g}."
            )
    if "recency" in arrays and "T" in arrays:
        rec, age = arrays["recency"], arrays["T"]
        over = rec > age + _RECENCY_TOLERANCE
        if over.any():
            i = int(np.argmax(over))
            raise InputDataError(
                f"{caller}: recency exceeds T for {int(over.sum())} customer(s) (first at row {i}: "
                f"recency={rec[i]:g}, T={age[i]:g}). Recency is the age at the last purchase, so "
                "it cannot exceed T; check that both use the same time unit and end date."
            )
        if "frequency" in arrays:
            ghost = (arrays["frequency"] == 0) & (rec != 0)
            if ghost.any():
                raise InputDataError(
                    f"{caller}: {int(ghost.sum())} customer(s) have frequency 0 but recency != 0; "
                    "with no repeat purchase the recency must be 0."
                )
    return arrays


def customer_id_column(rfm: pd.DataFrame, *, caller: str) -> np.ndarray:
    """Return the customer_id column as given (never cast), or explain how to provide it."""
    if "customer_id" not in rfm.columns:
        raise InputDataError(
            f"{caller}: the RFM frame has no customer_id column; received "
            f"{list(map(str, rfm.columns))}. If the id is the index, call rfm.reset_index() "
            "(and rename the column to customer_id) first."
        )
    return rfm["customer_id"].to_numpy()


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


@contextlib.contextmanager
def quiet_fit() -> Iterator[None]:
    """Silence lifetimes' stdout dumps and the optimiser's probing overflow warnings."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_horizon(t: float, name: str = "t") -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of time units, received {type(t).__name__}.")
    if not math.isfinite(float(t)) or t < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0 (in the model's time unit), got {t}."
        )
    return float(t)


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


class PurchaseModel(PicklableFitterMixin, BaseEstimator):
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
    degenerate_ : str or None
        One-line reason why the fit is degenerate, or None for a healthy fit: the dropout
        process at its boundary (``dropout_share_ < DROPOUT_SHARE_THRESHOLD``, "nobody ever
        leaves") and/or ``n_nonfinite_ > 0``. `fit` also warns `DegenerateFitWarning` then.
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
        cls = _FITTER_CLASSES[model_key]
        names = _PARAM_NAMES[model_key]
        data = _fitting.prepare_purchase(freq, rec, age, weights)

        def fit_own(pen: float) -> _PurchaseFit:
            result = _fitting.fit_purchase(model_key, data, pen)
            if not result.converged:
                raise FitFailed(
                    f"churnguard's optimiser did not converge ({result.message.strip()}; "
                    f"projected gradient {result.projected_gradient:.2g})"
                )
            params = result.params
            if not np.isfinite(list(params.values())).all() or min(params.values()) <= 0:
                raise FitFailed(f"non-finite or non-positive estimate {params}")
            return _PurchaseFit(
                lifetimes_fitter(cls(), params),
                params,
                result.log_likelihood,
                "churnguard",
                int(result.n_nonfinite),
                result.at_bound,
            )

        def fit_lifetimes(pen: float) -> _PurchaseFit:
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
            ll = _log_likelihood(model_key, params, freq, rec, age, weights)
            if not np.isfinite(ll):
                raise FitFailed(f"non-finite log-likelihood at {params}")
            return _PurchaseFit(fitter, params, ll, "lifetimes", -1)

        def fit_once(pen: float) -> _PurchaseFit:
            try:
                return fit_own(pen)
            except FitFailed as own:
                try:
                    return fit_lifetimes(pen)
                except (ConvergenceError, np.linalg.LinAlgError, FitFailed) as exc:
                    theirs = str(exc).strip() or type(exc).__name__
                    raise FitFailed(f"{own}; lifetimes: {theirs}") from exc

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
            else self._count_nonfinite(freq, rec, age, weights)
        )
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
        self.degenerate_ = self._degenerate_reason()
        return self

    def _count_nonfinite(
        self, freq: np.ndarray, rec: np.ndarray, age: np.ndarray, weights: np.ndarray
    ) -> int:
        """Customers (pattern weights) with a non-finite log-likelihood or P(alive).

        lifetimes' public P(alive) shares the ``hyp2f1`` term of the Pareto/NBD objective its
        optimiser minimised, so it shows where that objective was NaN without calling
        lifetimes' private likelihood functions. It is evaluated where the optimiser
        evaluated it: lifetimes fits in time scaled by ``1 / max(T)``, and ``hyp2f1``
        over/underflows differently at other scales (full CDNOW has a customer whose
        unscaled lifetimes P(alive) is NaN although the fit never saw one).
        """
        scale = 1.0 / float(age.max())
        scaled = {k: v * scale if k in ("alpha", "beta") else v for k, v in self.params_.items()}
        backend_fitter = self._new_fitter()
        backend_fitter.params_ = pd.Series(scaled)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            backend = np.asarray(
                backend_fitter.conditional_probability_alive(freq, rec * scale, age * scale)
            )
        ours_ll = _likelihood.log_likelihood(self.model, self.params_, freq, rec, age)
        ours_alive = _likelihood.p_alive(self.model, self.params_, freq, rec, age)
        bad = ~(np.isfinite(backend) & np.isfinite(ours_ll) & np.isfinite(ours_alive))
        return int(weights[bad].sum())

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
                f"({detail}; threshold {DROPOUT_SHARE_THRESHOLD:g})"
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

    def p_alive_arrays(
        self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """P(alive) for raw arrays, without RFM-frame validation (used for grids and plots).

        Computed by churnguard (`churnguard.clv._likelihood.p_alive`), not lifetimes: it
        agrees with lifetimes to ~1e-14 wherever lifetimes is finite, stays finite for heavy
        Pareto/NBD buyers where lifetimes gives NaN, and is no slower (1M customers in 100k
        patterns: 0.26 s against lifetimes' 0.42 s for Pareto/NBD, 0.05 s each for BG/NBD).
        The arrays broadcast; only NaN, negatives and recency > T are rejected
        (`churnguard.exceptions.InputDataError`). Frequency 0 with recency > 0 is allowed
        (P(alive) grids use it).
        """
        self._check_fitted()
        return _likelihood.p_alive(self.model, self.params_, frequency, recency, T)

    def p_alive(self, rfm: pd.DataFrame) -> np.ndarray:
        """Probability that each customer is still alive at the end of their observation.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency, recency, T.

        Returns
        -------
        numpy.ndarray
            One probability per row of ``rfm``, in row order.
        """
        self._check_fitted()
        arr = check_rfm(rfm, caller="PurchaseModel.p_alive")
        return self.p_alive_arrays(arr["frequency"], arr["recency"], arr["T"])

    def expected_purchases(self, rfm: pd.DataFrame, t: float) -> np.ndarray:
        """Conditional expected repeat purchases in (T, T + t] for each customer.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency, recency, T.
        t : float
            Horizon, in the frame's time unit, >= 0.

        Returns
        -------
        numpy.ndarray
            One expectation per row of ``rfm``, in row order.
        """
        self._check_fitted()
        horizon = _check_horizon(t)
        arr = check_rfm(rfm, caller="PurchaseModel.expected_purchases")
        return self.expected_purchases_arrays(horizon, arr["frequency"], arr["recency"], arr["T"])

    def expected_purchases_arrays(
        self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Conditional expected purchases in (T, T + t] for raw arrays, without RFM validation.

        lifetimes computes it; where its Pareto/NBD value is not finite (its likelihood
        overflows for heavy buyers) the same closed form is evaluated with churnguard's
        stable P(alive) instead (`churnguard.clv._likelihood.pareto_expected_purchases`).
        """
        self._check_fitted()
        horizon = _check_horizon(t)
        x, tx, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        shape = np.broadcast(x, tx, age).shape
        if horizon == 0:
            return np.zeros(shape)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            out = self.fitter_.conditional_expected_number_of_purchases_up_to_time(
                horizon, x, tx, age
            )
        out = np.array(np.broadcast_to(out, shape), dtype=float)
        bad = ~np.isfinite(out)
        if self.model == "pareto" and bad.any():
            xb, txb, ageb = (np.broadcast_to(v, shape)[bad] for v in (x, tx, age))
            out[bad] = _likelihood.pareto_expected_purchases(self.params_, xb, txb, ageb, horizon)
        return out

    def p_no_purchase(self, rfm: pd.DataFrame, t: float) -> np.ndarray:
        """Probability that each customer makes no purchase in (T, T + t].

        This is the model's churn-like event that can be checked against data: a silent
        horizon. It equals ``L(x, tx, T + t) / L(x, tx, T)`` exactly (no purchase in
        (T, T + t] is the same observation as a window ending at T + t with nothing new), and
        mixes customers who have left (silent for sure) with live ones who happen not to buy.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency, recency, T.
        t : float
            Horizon, in the frame's time unit, >= 0.

        Returns
        -------
        numpy.ndarray
            One probability per row of ``rfm``, in row order; 1 at ``t = 0``, non-increasing
            in ``t``, and ``>= 1 - p_alive``.

        Raises
        ------
        churnguard.exceptions.InputDataError
            If the frame is invalid.
        """
        self._check_fitted()
        horizon = _check_horizon(t)
        arr = check_rfm(rfm, caller="PurchaseModel.p_no_purchase")
        return self.p_no_purchase_arrays(horizon, arr["frequency"], arr["recency"], arr["T"])

    def p_no_purchase_arrays(
        self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """P(no purchase in (T, T + t]) for raw arrays (broadcast), without RFM validation.

        Computed as ``1 - P(alive) * P(a purchase in (T, T + t] | alive)`` from churnguard's
        stable likelihood terms, on unique patterns (1M customers in 100k patterns: ~0.5 s
        for Pareto/NBD, ~0.06 s for BG/NBD and MBG/NBD).
        """
        self._check_fitted()
        horizon = _check_horizon(t)
        return _likelihood.p_no_purchase(self.model, self.params_, frequency, recency, T, horizon)

    def expected_purchases_if_alive(self, rfm: pd.DataFrame, t: float) -> np.ndarray:
        """Expected repeat purchases in (T, T + t] of each customer if they stay a customer.

        The "value if retained" count: ``t * (r + x) / (α + T)``, the posterior mean purchase
        rate of a customer who is alive at T (Gamma(r + x, α + T) in all three models) times
        the horizon, with the dropout process switched off over (T, T + t]. Compare
        `expected_purchases`, which also weighs in that the customer may already be gone
        (``P(alive)``) or leave during the horizon. For BG/NBD and MBG/NBD this is the
        *retained* count, not the average over customers who happen to survive: those drop
        out only after purchases, so the ones who survive a horizon are biased to have bought
        less; for Pareto/NBD, whose dropout is independent of buying, the two coincide.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns frequency, recency, T (recency is validated but not needed).
        t : float
            Horizon, in the frame's time unit, >= 0.

        Returns
        -------
        numpy.ndarray
            One expectation per row of ``rfm``, in row order.
        """
        self._check_fitted()
        horizon = _check_horizon(t)
        arr = check_rfm(rfm, caller="PurchaseModel.expected_purchases_if_alive")
        return self.expected_purchases_if_alive_arrays(
            horizon, arr["frequency"], arr["recency"], arr["T"]
        )

    def expected_purchases_if_alive_arrays(
        self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """``t (r + x) / (α + T)`` for raw arrays (broadcast); recency only checked <= T."""
        self._check_fitted()
        horizon = _check_horizon(t)
        x, _, age = _likelihood.check_arrays(frequency, recency, T)
        return horizon * _likelihood.purchase_rate_if_alive(self.params_, x, age)

    def expected_purchases_new(self, t: float | np.ndarray) -> np.ndarray:
        """Unconditional E[X(t)]: expected repeat purchases of a new customer by age t.

        Parameters
        ----------
        t : float or array_like
            Ages in the model's time unit, >= 0.

        Returns
        -------
        numpy.ndarray
            Same shape as ``t`` (0-d for a scalar; use ``float()``).
        """
        self._check_fitted()
        ages = np.asarray(t, dtype=float)
        if not np.isfinite(ages).all() or (ages < 0).any():
            raise ValueError("t must be finite and >= 0 (ages in the model's time unit).")
        with np.errstate(divide="ignore", over="ignore"):
            out = self.fitter_.expected_number_of_purchases_up_to_time(ages)
        return np.asarray(out, dtype=float)

    def predict(self, rfm: pd.DataFrame, horizon: float) -> pd.DataFrame:
        """P(alive) and expected repeat purchases over ``horizon`` for each customer.

        Parameters
        ----------
        rfm : pandas.DataFrame
            Columns customer_id, frequency, recency, T.
        horizon : float
            Prediction horizon in the frame's time unit.

        Returns
        -------
        pandas.DataFrame
            Columns customer_id (copied as is), p_alive, expected_purchases; same index as
            ``rfm``.
        """
        self._check_fitted()
        horizon = _check_horizon(horizon, "horizon")
        arr = check_rfm(rfm, caller="PurchaseModel.predict")
        customer_ids = customer_id_column(rfm, caller="PurchaseModel.predict")
        return pd.DataFrame(
            {
                "customer_id": customer_ids,
                "p_alive": self.p_alive_arrays(arr["frequency"], arr["recency"], arr["T"]),
                "expected_purchases": self.expected_purchases_arrays(
                    horizon, arr["frequency"], arr["recency"], arr["T"]
                ),
            },
            index=rfm.index,
        )


def _log_likelihood(
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
