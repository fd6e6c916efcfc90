"""The early-abandonment classifier: LightGBM on top of a structural prior, calibrated.

A buy-till-you-die (BTYD) model gives every customer a closed-form probability of
making no purchase in the horizon. It extrapolates in customer age and calendar time,
which trees cannot (they only know the ages and base rates of the training
snapshots), but it knows nothing of the behavioural features. :class:`ChurnClassifier`
therefore starts the trees from the prior's log-odds (``init_score``), so they learn
*corrections* to it, and calibrates on a later snapshot than the one the trees learned
from. Without a prior it is a plain calibrated LightGBM classifier.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss
from sklearn.utils.validation import check_is_fitted

from churnguard._crossfit import customer_folds
from churnguard._resources import thread_count
from churnguard.churn._treeshap import PathTables, path_tables
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError

__all__ = ["CALIBRATIONS", "DEFAULT_LGBM_PARAMS", "DEFAULT_MONOTONE", "ChurnClassifier", "logit"]

#: Defaults for a tabular problem of a few thousand to a few million rows and ~40
#: features: small trees (purchase behaviour has few strong interactions, and
#: TreeSHAP reasons cost grows with leaves x depth), a strong leaf minimum
#: (customers are noisy), row and column subsampling, and early stopping to pick
#: the number of trees. Learning rate 0.1 (LightGBM's own default): out of time on
#: CDNOW at three as-of dates it scored as 0.05 did with half the trees, and scoring
#: and TreeSHAP reasons cost is linear in trees.
DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 1000,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "max_depth": 4,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "max_bin": 255,
}

#: Business directions known in advance (+1: more of it, more churn risk). The prior
#: itself is not constrained: a correction may need to temper an over-confident prior.
DEFAULT_MONOTONE: dict[str, int] = {
    "days_since_last": 1,
    "p_alive": -1,
    "expected_purchases": -1,
    "purchases_30d": -1,
    "purchases_90d": -1,
}

#: Accepted ``calibration`` values.
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "correction", "none")

_EPS = 1e-6

#: Scoring threads share one classifier: its TreeSHAP tables are built once.
_TABLES_LOCK = threading.Lock()


def logit(p: Any) -> np.ndarray:
    """Log-odds of probabilities, clipped to ``[1e-6, 1 - 1e-6]`` first."""
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class _Platt:
    """Logistic regression on the raw log-odds: ``sigmoid(a * z + b)``."""

    def fit(self, z: np.ndarray, offset: np.ndarray, y: np.ndarray) -> _Platt:
        self.coef_ = _fit_logistic(np.column_stack([z, np.ones_like(z)]), np.zeros_like(z), y)
        return self

    def predict(self, z: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return _sigmoid(self.coef_[0] * z + self.coef_[1])


class _Correction:
    """Scale of the trees' correction only: ``sigmoid(prior + a * (z - prior))``.

    The prior's log-odds keep a coefficient of one and no intercept is fitted, so when
    the base rate moves between the calibration snapshot and the scoring date, the
    prior (refitted on the latest data) carries the move and the calibrator does not
    pin the old level. Only how far to trust the trees is learned.
    """

    def fit(self, z: np.ndarray, offset: np.ndarray, y: np.ndarray) -> _Correction:
        corr = z - offset
        self.coef_ = _fit_logistic(corr.reshape(-1, 1), offset, y)
        return self

    def predict(self, z: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return _sigmoid(offset + self.coef_[0] * (z - offset))


class _Isotonic:
    def fit(self, z: np.ndarray, offset: np.ndarray, y: np.ndarray) -> _Isotonic:
        self.iso_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(z, y)
        return self

    def predict(self, z: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return np.asarray(self.iso_.predict(z), dtype=float)


def _fit_logistic(design: np.ndarray, offset: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic coefficients with a fixed offset (tiny L2 for stability)."""

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = offset + design @ beta
        # log(1 + e^z) - y z, written to stay finite for large |z|
        nll = np.logaddexp(0.0, z) - y * z
        grad = design.T @ (_sigmoid(z) - y)
        return float(nll.sum() + 1e-6 * beta @ beta), grad + 2e-6 * beta

    start = np.zeros(design.shape[1])
    start[0] = 1.0
    return np.asarray(minimize(loss, start, jac=True, method="L-BFGS-B").x, dtype=float)


def _make_calibrator(kind: str) -> Any:
    return {"isotonic": _Isotonic, "sigmoid": _Platt, "correction": _Correction}[kind]()


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated LightGBM churn classifier (``y = 1`` means churned), optionally anchored.

    Parameters
    ----------
    lgbm_params : dict, optional
        Overrides of :data:`DEFAULT_LGBM_PARAMS` (any ``LGBMClassifier`` argument).
    monotone : dict, optional
        Feature -> +1/-1 monotone constraints; defaults to :data:`DEFAULT_MONOTONE`
        (features absent from the data are ignored). Pass ``{}`` for none.
    calibration : {"auto", "isotonic", "sigmoid", "correction", "none"}
        ``auto`` picks the method with the lowest 2-fold log loss on the calibration
        set: among ``none``, ``isotonic`` and ``sigmoid`` without a prior, and among
        ``none`` and ``correction`` with one. ``correction`` (only with ``prior``)
        rescales the trees' correction and leaves the prior's log-odds untouched (see
        :class:`_Correction`): with a prior, the level of the probabilities is the
        prior's, refitted at the scoring date, not the calibration snapshot's.
    early_stopping_rounds : int
        Rounds without log-loss improvement on the calibration set before stopping.
    class_weight : {None, "balanced"}
        Re-weighting distorts probabilities (calibration then has to undo it), so
        the default keeps the natural weights.
    prior : str, optional
        Name of a feature holding a structural model's probability of *no purchase*
        in the horizon (``p_no_purchase`` from a BTYD model). The trees then start
        from its log-odds and learn corrections on top of it; ``decision_function``
        includes the prior.
    cross_fit : int
        Folds of customer cross-fitting, used when ``fit`` gets ``groups``: fold ``k``'s
        trees learn from the other folds' customers and are early-stopped on fold
        ``k``'s calibration rows; the calibrator is fitted on those out-of-fold scores,
        and one model refitted on all rows with the folds' mean number of trees
        makes the predictions (as ``CalibratedClassifierCV(ensemble=False)``).
        Rolling snapshots repeat the same customers with nearly the same label
        windows, so without it a training snapshot close to the calibration one
        leaks its labels into early stopping and into the calibrator. 0 or 1: one model.
    n_jobs : int, optional
        LightGBM threads (default: every core this process may use, container CPU
        limits and ``CHURNGUARD_THREADS`` included).
    random_state : int
        Seed; training is deterministic for a given seed and data.

    Attributes
    ----------
    classes_ : ndarray
        ``[0, 1]``.
    model_ : lightgbm.LGBMClassifier
        The trees that score (corrections to the prior when there is one).
    calibrator_ : object or None
    calibration_ : str
        The calibration method in use.
    calibration_scores_ : dict
        Cross-validated log loss of each candidate method on the calibration set.
    feature_names_ : list of str
    best_iteration_ : int
    """

    def __init__(
        self,
        lgbm_params: Mapping[str, Any] | None = None,
        monotone: Mapping[str, int] | None = None,
        calibration: str = "auto",
        early_stopping_rounds: int = 50,
        class_weight: str | None = None,
        prior: str | None = None,
        cross_fit: int = 2,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.lgbm_params = lgbm_params
        self.monotone = monotone
        self.calibration = calibration
        self.early_stopping_rounds = early_stopping_rounds
        self.class_weight = class_weight
        self.prior = prior
        self.cross_fit = cross_fit
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _check_params(self, columns: list[str]) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ParameterError(
                f"calibration must be one of {CALIBRATIONS}; got {self.calibration!r}."
            )
        if self.calibration == "correction" and self.prior is None:
            raise ParameterError(
                "calibration='correction' rescales the trees' correction to a prior; "
                "pass prior='p_no_purchase' (a column of P(no purchase)) or another method."
            )
        if self.prior is not None and self.prior not in columns:
            raise ParameterError(
                f"prior column {self.prior!r} is not among the features {columns}."
            )

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        X_cal: pd.DataFrame,
        y_cal: Any,
        *,
        groups: Any = None,
        groups_cal: Any = None,
    ) -> ChurnClassifier:
        """Train on ``(X, y)``; early-stop and calibrate on the later ``(X_cal, y_cal)``.

        Parameters
        ----------
        X, X_cal : DataFrame
            Numeric feature frames with the same columns.
        y, y_cal : array-like of {0, 1}
            Churn labels.
        groups, groups_cal : array-like, optional
            Customer ids of the rows; with ``cross_fit >= 2`` they drive customer
            cross-fitting (see the class docstring).

        Returns
        -------
        ChurnClassifier
            ``self``, fitted.
        """
        for name, frame in (("X", X), ("X_cal", X_cal)):
            if not isinstance(frame, pd.DataFrame):
                raise ParameterTypeError(
                    f"{name} must be a pandas DataFrame; got {type(frame).__name__}."
                )
        if list(X.columns) != list(X_cal.columns):
            raise ParameterError(
                "X and X_cal must have the same columns in the same order; "
                f"got {list(X.columns)} and {list(X_cal.columns)}."
            )
        self._check_params(list(X.columns))
        y_arr, y_cal_arr = _labels(y, "y"), _labels(y_cal, "y_cal")
        self.feature_names_ = list(X.columns)
        self.classes_ = np.array([0, 1])
        mono = DEFAULT_MONOTONE if self.monotone is None else self.monotone
        params = {**DEFAULT_LGBM_PARAMS, **(self.lgbm_params or {})}
        k = int(self.cross_fit) if groups is not None and groups_cal is not None else 1
        if k >= 2:
            fold, fold_cal = customer_folds(groups, k), customer_folds(groups_cal, k)
        else:
            fold, fold_cal = np.zeros(len(X), dtype=int), np.zeros(len(X_cal), dtype=int)
        offset, offset_cal = self._offset(X), self._offset(X_cal)
        models = []
        oof = np.zeros(len(X_cal))
        for f in range(max(k, 1)):
            tr, ca = (fold != f) if k >= 2 else np.ones(len(X), dtype=bool), fold_cal == f
            model = self._new_model(params, mono)
            extra: dict[str, Any] = {}
            if self.prior is not None:
                extra = {"init_score": offset[tr], "eval_init_score": [offset_cal[ca]]}
            Xc = X_cal.loc[ca]
            model.fit(
                X.loc[tr],
                _labels(y_arr[tr], "y"),
                eval_X=(Xc,),
                eval_y=(_labels(y_cal_arr[ca], "y_cal"),),
                eval_metric="binary_logloss",
                callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
                **extra,
            )
            models.append(model)
            oof[ca] = np.asarray(model.predict(Xc, raw_score=True), dtype=float) + offset_cal[ca]
        self.offset_mean_ = float(np.mean(offset)) if self.prior is not None else 0.0
        self.best_iteration_ = int(
            round(np.mean([m.best_iteration_ or params["n_estimators"] for m in models]))
        )
        if k >= 2:
            # The folds choose the number of trees and give honest scores for the
            # calibrator; one model refitted on every customer with that many trees then
            # scores (half the scoring and TreeSHAP cost of averaging the folds).
            final = self._new_model({**params, "n_estimators": self.best_iteration_}, mono)
            extra = {"init_score": offset} if self.prior is not None else {}
            final.fit(X, y_arr, **extra)
            models = [final]
        # Fitted on this machine's budget; kept as "every core" (LightGBM's -1) so that a
        # saved model does not carry the training machine's count to the scoring one.
        self.model_ = models[0].set_params(n_jobs=-1 if self.n_jobs is None else self.n_jobs)
        # Calibrate on out-of-fold scores: a row's own fold never saw its label.
        self.calibration_scores_ = _cv_calibration_scores(
            oof, offset_cal, y_cal_arr, self.random_state, with_prior=self.prior is not None
        )
        if self.calibration == "auto":
            self.calibration_ = min(
                self.calibration_scores_, key=self.calibration_scores_.__getitem__
            )
        else:
            self.calibration_ = self.calibration
        self.calibrator_ = None
        if self.calibration_ != "none":
            self.calibrator_ = _make_calibrator(self.calibration_).fit(oof, offset_cal, y_cal_arr)
        return self

    def _new_model(self, params: Mapping[str, Any], mono: Mapping[str, int]) -> Any:
        return lgb.LGBMClassifier(
            **params,
            monotone_constraints=[int(mono.get(c, 0)) for c in self.feature_names_],
            monotone_constraints_method="basic",
            class_weight=self.class_weight,
            random_state=self.random_state,
            deterministic=True,
            force_row_wise=True,
            n_jobs=thread_count(self.n_jobs),
            verbose=-1,
        )

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "model_")
        if not isinstance(X, pd.DataFrame):
            raise ParameterTypeError(f"X must be a pandas DataFrame; got {type(X).__name__}.")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InputDataError(
                f"X lacks the features {missing} the classifier was trained on; build them "
                "with the same FeatureBuilder (and value model) as at training."
            )
        return X[self.feature_names_]

    def _offset(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of the prior (0 without one)."""
        if self.prior is None:
            return np.zeros(len(X))
        return logit(X[self.prior].to_numpy(dtype=float))

    def decision_function(self, X: pd.DataFrame, *, num_threads: int | None = None) -> np.ndarray:
        """Raw (uncalibrated) log-odds of churn, the prior included, shape ``(n,)``.

        ``num_threads``: LightGBM threads (default: every core the process may use; see
        :meth:`contributions`).
        """
        frame = self._frame(X)
        extra = {"num_threads": thread_count(num_threads)}
        raw = np.asarray(self.model_.predict(frame, raw_score=True, **extra), dtype=float)
        return raw + self._offset(frame)

    def churn_probability(
        self, X: pd.DataFrame, *, calibrated: bool = True, num_threads: int | None = None
    ) -> np.ndarray:
        """Calibrated (or raw) probability of churn, shape ``(n,)``.

        ``num_threads``: LightGBM threads (default: every core the process may use; see
        :meth:`contributions`).
        """
        frame = self._frame(X)
        z = self.decision_function(frame, num_threads=num_threads)
        if not calibrated or self.calibrator_ is None:
            return _sigmoid(z)
        p = self.calibrator_.predict(z, self._offset(frame))
        return np.clip(np.asarray(p, dtype=float), 0.0, 1.0)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities, shape ``(n, 2)``: stayed, churned."""
        p = self.churn_probability(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 (churn) where the calibrated churn probability is at least 0.5."""
        return (self.churn_probability(X) >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame, *, num_threads: int | None = None) -> pd.DataFrame:
        """Per-feature contributions to the raw log-odds (TreeSHAP, as ``pred_contrib``).

        The numbers are LightGBM's ``pred_contrib`` up to the order of floating-point
        additions; for trees of churnguard's depth they come from per-leaf lookup
        tables on one thread (:mod:`churnguard.churn._treeshap`), else from LightGBM.

        Parameters
        ----------
        X : DataFrame
            Features.
        num_threads : int, optional
            LightGBM threads when LightGBM computes; default all cores. Pass 1 when
            other work runs alongside (OpenMP threads spin while they wait, so
            oversubscribing the cores slows everything down).

        Returns
        -------
        DataFrame
            One column per feature plus ``bias``; rows sum to the raw log-odds. With a
            prior, its log-odds count as the prior feature's contribution, centred on
            the training mean (which goes to the bias).
        """
        frame = self._frame(X)
        # Tables take numbers only; LightGBM rejects (and explains) other columns.
        numeric = all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)
        tables = self._path_tables() if numeric else None
        if tables is not None:  # LightGBM's numbers, about 5x faster (see _treeshap)
            values = tables.contributions(frame.to_numpy(dtype=float))
        else:
            extra = {"num_threads": thread_count(num_threads)}
            values = np.asarray(self.model_.predict(frame, pred_contrib=True, **extra), dtype=float)
        out = pd.DataFrame(values, columns=[*self.feature_names_, "bias"], index=X.index)
        if self.prior is not None:
            off = self._offset(frame)
            out[self.prior] += off - self.offset_mean_
            out["bias"] += self.offset_mean_
        return out

    def _path_tables(self) -> PathTables | None:
        """The booster's TreeSHAP tables, built on first use (None: LightGBM computes)."""
        with _TABLES_LOCK:
            cached = self.__dict__.get("_tables")
            if cached is None or cached[0] is not self.model_:
                cached = (self.model_, path_tables(self.model_.booster_))
                self.__dict__["_tables"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # The tables are a cache: rebuilt in a fraction of a second, not saved.
        state = dict(super().__getstate__())
        state.pop("_tables", None)
        return state

    def feature_importance(self) -> pd.DataFrame:
        """Gain and split importance per feature, sorted by gain."""
        check_is_fitted(self, "model_")
        booster = self.model_.booster_
        return (
            pd.DataFrame(
                {
                    "feature": self.feature_names_,
                    "gain": booster.feature_importance("gain"),
                    "split": booster.feature_importance("split"),
                }
            )
            .sort_values("gain", ascending=False)
            .reset_index(drop=True)
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1} or len(values) < 2:
        raise ParameterError(
            f"{name} must contain both classes 0 (stayed) and 1 (churned); "
            f"got values {sorted(values)}."
        )
    return arr.astype(int)


def _cv_calibration_scores(
    z: np.ndarray, offset: np.ndarray, y: np.ndarray, seed: int, *, with_prior: bool
) -> dict[str, float]:
    """2-fold log loss of each calibration method on the (out-of-fold) calibration scores."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % 2
    scores: dict[str, float] = {"none": float(log_loss(y, np.clip(_sigmoid(z), _EPS, 1 - _EPS)))}
    # With a prior, only calibrators that leave its level alone: the calibration snapshot
    # is one horizon older than the scoring date, and its base rate may not hold there.
    kinds = ("correction",) if with_prior else ("isotonic", "sigmoid")
    for kind in kinds:
        losses = []
        for k in (0, 1):
            tr, te = fold != k, fold == k
            if len(np.unique(y[tr])) < 2:
                continue
            cal = _make_calibrator(kind).fit(z[tr], offset[tr], y[tr])
            p = np.clip(np.asarray(cal.predict(z[te], offset[te]), dtype=float), _EPS, 1 - _EPS)
            losses.append(log_loss(y[te], p, labels=[0, 1]))
        if losses:
            scores[kind] = float(np.mean(losses))
    return scores
