"""A learned model of what an active customer spends in the next window.

Next-window spend has a mass of zeros (customers who buy nothing) and a heavy tail.
churnguard models it as a *hurdle*: whether the customer buys at all is the churn
model's job (its calibrated probability), and what they spend when they do buy is
this model's. :class:`WindowSpendModel` is LightGBM with a Tweedie objective (log
link) on the snapshot rows whose window holds at least one purchase, started from the
buy-till-you-die x Gamma-Gamma answer to the same question (``init_score``), so the
trees learn corrections to it from the behavioural features (recent spend, trend,
basket, returns) and the structural model carries the extrapolation.

    next-window spend = (1 - churn probability) x spend if active   (the hurdle)

The same correction carries over to the CLV horizon: ``predicted_clv`` and
``value_if_retained`` are the BTYD x Gamma-Gamma values times the learned spend of an
active window over the structural one (see :func:`spend_ratio`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from churnguard._crossfit import customer_folds
from churnguard._resources import thread_count
from churnguard.exceptions import InputDataError

__all__ = [
    "DEFAULT_SPEND_PARAMS",
    "RATIO_BOUNDS",
    "WindowSpendModel",
    "btyd_active_spend",
    "spend_ratio",
]

#: LightGBM settings: the same small, strongly regularised trees as the churn model.
DEFAULT_SPEND_PARAMS: dict[str, Any] = {
    "objective": "tweedie",
    "tweedie_variance_power": 1.8,
    "n_estimators": 1000,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "max_depth": 4,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}

#: The learned correction of the structural spend is kept within these factors: a
#: handful of extreme customers must not turn a correction into a different currency.
RATIO_BOUNDS = (0.1, 10.0)


def btyd_active_spend(
    expected_purchases: np.ndarray,
    p_no_purchase: np.ndarray,
    expected_spend: np.ndarray,
    purchases_if_alive: np.ndarray,
) -> np.ndarray:
    """BTYD x Gamma-Gamma spend in a window, given at least one purchase in it.

    ``E[X] * spend / (1 - P(X = 0))``. Where a purchase is all but impossible under
    the model (``1 - P(X = 0)`` below 1e-9) the ratio is numerically empty and the
    count of an active customer, at least one, takes its place.
    """
    ex = np.asarray(expected_purchases, dtype=float)
    buy = 1.0 - np.asarray(p_no_purchase, dtype=float)
    fallback = np.maximum(np.asarray(purchases_if_alive, dtype=float), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        count = np.where(buy > 1e-9, ex / np.where(buy > 1e-9, buy, 1.0), fallback)
    count = np.where(np.isfinite(count), np.maximum(count, 1.0), fallback)
    out = count * np.asarray(expected_spend, dtype=float)
    return np.where(np.isfinite(out) & (out > 0), out, np.nan)


def spend_ratio(learned: np.ndarray, structural: np.ndarray) -> np.ndarray:
    """``learned / structural`` within :data:`RATIO_BOUNDS`; 1 where either is unusable."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(learned, dtype=float) / np.asarray(structural, dtype=float)
    return np.where(np.isfinite(r) & (r > 0), np.clip(r, *RATIO_BOUNDS), 1.0)


class WindowSpendModel(RegressorMixin, BaseEstimator):
    """Spend in the next window of a customer who buys in it, anchored on BTYD x GG.

    Parameters
    ----------
    lgbm_params : dict, optional
        Overrides of :data:`DEFAULT_SPEND_PARAMS`.
    base : str
        Column with the structural answer (:func:`btyd_active_spend`); its log is the
        trees' starting point, and rows where it is missing start from the mean.
    early_stopping_rounds : int
        Rounds without improvement on the calibration rows before stopping.
    cross_fit : int
        Customer folds (see :mod:`churnguard._crossfit`): fold ``k``'s trees learn from
        the other folds and are early-stopped on fold ``k``'s calibration rows; one
        model refitted on all rows with the folds' mean number of trees predicts.
    n_jobs : int, optional
        LightGBM threads (default: every core this process may use, container CPU
        limits and ``CHURNGUARD_THREADS`` included).
    random_state : int
        Seed.

    Attributes
    ----------
    feature_names_ : list of str
    model_ : lightgbm.LGBMRegressor
    best_iteration_ : int
    level_ : float
        Multiplier that makes the out-of-fold predictions' total match the calibration
        rows' total (Tweedie trees stopped early are not exactly unbiased in sum).
    base_shift_ : float
        Divisor of the predictions, 1 after ``fit``: set by the owner when the base
        column it will be given at prediction time is on another scale than the one the
        trees learned on (see :func:`churnguard.model.value_choice.spend_base_shift`).
    """

    def __init__(
        self,
        lgbm_params: Mapping[str, Any] | None = None,
        base: str = "btyd_active_spend",
        early_stopping_rounds: int = 50,
        cross_fit: int = 2,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.lgbm_params = lgbm_params
        self.base = base
        self.early_stopping_rounds = early_stopping_rounds
        self.cross_fit = cross_fit
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _offset(self, X: pd.DataFrame, fill: float) -> np.ndarray:
        base = X[self.base].to_numpy(dtype=float)
        return np.log(np.where(np.isfinite(base) & (base > 0), base, fill))

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        X_cal: pd.DataFrame,
        y_cal: Any,
        *,
        groups: Any,
        groups_cal: Any,
    ) -> WindowSpendModel:
        """Learn from rows ``(X, y)``; early-stop and level on the later ``(X_cal, y_cal)``.

        Parameters
        ----------
        X, X_cal : DataFrame
            Features (same columns), including :attr:`base`.
        y, y_cal : array-like
            Spend in the window (>= 0) of customers with a purchase in it.
        groups, groups_cal : array-like
            Customer ids of the rows, for cross-fitting.

        Returns
        -------
        WindowSpendModel
            ``self``, fitted.
        """
        for name, frame in (("X", X), ("X_cal", X_cal)):
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(f"{name} must be a pandas DataFrame; got {type(frame).__name__}.")
        if self.base not in X.columns or list(X.columns) != list(X_cal.columns):
            raise InputDataError(
                f"X and X_cal need the same columns, including the base column {self.base!r}."
            )
        y_arr = np.clip(np.asarray(y, dtype=float), 0.0, None)
        y_cal_arr = np.clip(np.asarray(y_cal, dtype=float), 0.0, None)
        if len(y_arr) < 50 or len(y_cal_arr) < 20 or y_arr.sum() <= 0:
            raise InputDataError(
                f"too few active customers to learn spend from ({len(y_arr)} learning rows, "
                f"{len(y_cal_arr)} calibration rows); the structural value is used instead."
            )
        self.feature_names_ = list(X.columns)
        self.fill_ = float(np.mean(y_arr[y_arr > 0])) if (y_arr > 0).any() else 1.0
        params = {**DEFAULT_SPEND_PARAMS, **(self.lgbm_params or {})}
        k = max(int(self.cross_fit), 1)
        fold, fold_cal = customer_folds(groups, k), customer_folds(groups_cal, k)
        off, off_cal = self._offset(X, self.fill_), self._offset(X_cal, self.fill_)
        oof = np.zeros(len(X_cal))
        iterations = []
        for f in range(k):
            tr = fold != f if k > 1 else np.ones(len(X), dtype=bool)
            ca = fold_cal == f
            model = self._new_model(params)
            model.fit(
                X.loc[tr],
                y_arr[tr],
                init_score=off[tr],
                eval_X=(X_cal.loc[ca],),
                eval_y=(y_cal_arr[ca],),
                eval_init_score=[off_cal[ca]],
                callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
            )
            iterations.append(model.best_iteration_ or params["n_estimators"])
            raw = np.asarray(model.predict(X_cal.loc[ca], raw_score=True), dtype=float)
            oof[ca] = np.exp(raw + off_cal[ca])
        self.best_iteration_ = int(round(np.mean(iterations)))
        final = self._new_model({**params, "n_estimators": max(self.best_iteration_, 1)})
        final.fit(X, y_arr, init_score=off)
        # As in ChurnClassifier: the saved model keeps "every core", not this machine's.
        self.model_ = final.set_params(n_jobs=-1 if self.n_jobs is None else self.n_jobs)
        total = oof.sum()
        self.level_ = float(y_cal_arr.sum() / total) if total > 0 else 1.0
        self.base_shift_ = 1.0
        return self

    def _new_model(self, params: Mapping[str, Any]) -> Any:
        return lgb.LGBMRegressor(
            **params,
            random_state=self.random_state,
            deterministic=True,
            force_row_wise=True,
            n_jobs=thread_count(self.n_jobs),
            verbose=-1,
        )

    def predict(self, X: pd.DataFrame, *, num_threads: int | None = None) -> np.ndarray:
        """Spend in the next window if the customer buys in it, shape ``(n,)``.

        ``num_threads``: LightGBM threads (default: every core the process may use). Pass
        fewer when other work runs alongside: OpenMP threads spin while they wait, so
        oversubscribed cores slow everything down. The predictions do not depend on it.
        """
        check_is_fitted(self, "model_")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InputDataError(f"X lacks the features {missing} the spend model learned from.")
        frame = X[self.feature_names_]
        extra = {"num_threads": thread_count(num_threads)}
        raw = np.asarray(self.model_.predict(frame, raw_score=True, **extra), dtype=float)
        # ``base_shift_`` is absent from models saved before it: no shift.
        shift = float(getattr(self, "base_shift_", 1.0))
        return np.exp(raw + self._offset(frame, self.fill_)) * (self.level_ / shift)
