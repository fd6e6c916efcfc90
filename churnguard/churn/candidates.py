"""Churn-model candidates and their out-of-time comparison.

Three ways to turn a customer's snapshot into a churn probability compete on the
validation snapshot (see :mod:`churnguard.churn.training`):

* ``prior``: the buy-till-you-die model's closed-form P(no purchase in the horizon),
  no learning at all. It is the fallback: whatever is chosen must not be worse than it.
* ``anchored``: LightGBM started from the prior's log-odds, learning corrections from
  the behavioural features (:class:`~churnguard.churn.ChurnClassifier` with ``prior``).
* ``plain``: LightGBM on the same features (the prior is one of them), no anchor.

The candidate with the lowest validation log loss wins, but a learned model only replaces
the prior when its log loss is lower by at least :data:`MIN_LOG_LOSS_GAIN` of the prior's:
a smaller edge is within what one validation snapshot can tell apart. Where the BTYD
structure is the truth, learned models won validation by such slivers and then ranked
slightly worse than the prior out of time (``benchmarks/README.md``, sixth session).

With ``tolerance_se`` > 0 (the validation plan is optimistic: its evaluation snapshot is
closer to the learning ones than a horizon), the simplest candidate (prior, then
anchored, then plain) whose log loss is within that many standard errors of the best
one's wins instead: the paired standard error of the per-customer log-loss difference on
the evaluation rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from churnguard._checks import check_number
from churnguard.churn.classifier import ChurnClassifier, logit
from churnguard.churn.metrics import classification_report
from churnguard.exceptions import InputDataError, ParameterError

__all__ = [
    "CANDIDATES",
    "MIN_LOG_LOSS_GAIN",
    "PRIOR_COLUMN",
    "CandidateComparison",
    "PriorChurnModel",
    "compare_candidates",
    "fit_candidate",
]

#: Candidate names, in the order they are reported.
CANDIDATES: tuple[str, ...] = ("prior", "anchored", "plain")
#: The feature holding the BTYD model's P(no purchase in the horizon).
PRIOR_COLUMN = "p_no_purchase"
#: The smallest relative validation log-loss gain over the prior for which a learned
#: candidate replaces it (see the module's docstring).
MIN_LOG_LOSS_GAIN = 0.001


class PriorChurnModel(ClassifierMixin, BaseEstimator):
    """The structural prior used as the churn probability, with the classifier's interface.

    Parameters
    ----------
    prior : str
        Column of P(no purchase in the horizon).
    level : float
        Log-odds added to the prior's (its level correction at the scoring date, see
        :func:`churnguard.churn.level.choose_level`); 0 keeps the prior as it is.
    """

    def __init__(self, prior: str = PRIOR_COLUMN, level: float = 0.0) -> None:
        self.prior = prior
        self.level = level

    def fit(self, X: pd.DataFrame, y: Any = None, *args: Any, **kwargs: Any) -> PriorChurnModel:
        """Nothing to learn; records the feature it reads (other arguments are ignored)."""
        if not isinstance(X, pd.DataFrame) or self.prior not in X.columns:
            raise InputDataError(f"PriorChurnModel needs a DataFrame with a {self.prior!r} column.")
        self.feature_names_ = [self.prior]
        self.classes_ = np.array([0, 1])
        self.calibration_ = "none"
        self.best_iteration_ = 0
        return self

    def churn_probability(
        self, X: pd.DataFrame, *, calibrated: bool = True, num_threads: int | None = None
    ) -> np.ndarray:
        """The prior clipped to [0, 1], its log-odds shifted by ``level`` when not 0.

        ``num_threads`` is accepted for the classifiers' signature (there are no trees).
        """
        check_is_fitted(self, "feature_names_")
        p = np.clip(X[self.prior].to_numpy(dtype=float), 0.0, 1.0)
        level = self._level()
        if level == 0.0:
            return p
        return np.asarray(1.0 / (1.0 + np.exp(-(logit(p) + level))), dtype=float)

    def _level(self) -> float:
        # Models pickled before the level existed have none.
        return float(getattr(self, "level", 0.0))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of the prior, plus ``level``."""
        check_is_fitted(self, "feature_names_")
        return logit(X[self.prior].to_numpy(dtype=float)) + self._level()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape ``(n, 2)``: stayed, churned."""
        p = self.churn_probability(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 (churn) where the prior is at least 0.5."""
        return (self.churn_probability(X) >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame, *, num_threads: int | None = None) -> pd.DataFrame:
        """The prior's log-odds as its own contribution, the level as the bias: one driver."""
        z = self.decision_function(X) - self._level()
        bias = np.full(len(z), self._level())
        return pd.DataFrame({self.prior: z, "bias": bias}, index=X.index)

    def feature_importance(self) -> pd.DataFrame:
        """A single row: the prior carries everything."""
        return pd.DataFrame({"feature": [self.prior], "gain": [1.0], "split": [0]})


def fit_candidate(
    name: str,
    fit_rows: pd.DataFrame,
    cal_rows: pd.DataFrame,
    features: Sequence[str],
    *,
    classifier_params: Mapping[str, Any] | None = None,
    random_state: int = 0,
) -> Any:
    """Fit candidate ``name`` on snapshot rows (``churned`` and ``customer_id`` columns).

    Returns
    -------
    PriorChurnModel or ChurnClassifier
    """
    if name == "prior":
        return PriorChurnModel(PRIOR_COLUMN).fit(fit_rows[list(features)])
    if name not in CANDIDATES:
        raise ParameterError(f"unknown churn candidate {name!r}; expected one of {CANDIDATES}.")
    params = dict(classifier_params or {})
    if name == "anchored":
        params["prior"] = PRIOR_COLUMN
    else:
        params.pop("prior", None)
    clf = ChurnClassifier(**params, random_state=random_state)
    f = list(features)
    return clf.fit(
        fit_rows[f],
        fit_rows["churned"],
        cal_rows[f],
        cal_rows["churned"],
        groups=fit_rows["customer_id"].to_numpy(),
        groups_cal=cal_rows["customer_id"].to_numpy(),
    )


@dataclass
class CandidateComparison:
    """The validation scores of every candidate and the one chosen."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    chosen: str = "prior"
    reason: str = ""
    models: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)


def compare_candidates(
    fit_rows: pd.DataFrame,
    cal_rows: pd.DataFrame,
    eval_rows: pd.DataFrame,
    features: Sequence[str],
    *,
    candidates: Sequence[str] = CANDIDATES,
    classifier_params: Mapping[str, Any] | None = None,
    random_state: int = 0,
    tolerance_se: float = 0.0,
    min_gain: float = MIN_LOG_LOSS_GAIN,
) -> CandidateComparison:
    """Fit every candidate on the learning rows and score them on ``eval_rows``.

    A candidate that cannot be fitted (e.g. its training labels hold one class) is
    reported with its error and not chosen. The winner has the lowest log loss on the
    evaluation rows, provided it is below the prior's by at least ``min_gain`` of the
    prior's log loss (a share, default :data:`MIN_LOG_LOSS_GAIN`; 0 keeps any strict
    gain); otherwise the prior wins, as it does when nothing else fits.
    With ``tolerance_se`` > 0, the simplest candidate (in :data:`CANDIDATES` order)
    within ``tolerance_se`` paired standard errors of the best log loss wins.
    """
    # Checked before any fit; NaN would compare as no requirement at all.
    min_gain = check_number(min_gain, "min_gain", low=0.0, high=1.0, example=str(MIN_LOG_LOSS_GAIN))
    y = eval_rows["churned"].to_numpy()
    rows: list[dict[str, Any]] = []
    out = CandidateComparison()
    for name in candidates:
        try:
            model = fit_candidate(
                name,
                fit_rows,
                cal_rows,
                features,
                classifier_params=classifier_params,
                random_state=random_state,
            )
        except ValueError as exc:
            rows.append({"candidate": name, "error": str(exc)})
            continue
        p = model.churn_probability(eval_rows[list(features)])
        out.models[name] = model
        out.scores[name] = p
        rows.append({"candidate": name, **classification_report(y, p)})
    table = pd.DataFrame(rows).set_index("candidate")
    scored = table["log_loss"].dropna() if "log_loss" in table else pd.Series(dtype=float)
    best = lowest = "prior"
    small = ""
    if not scored.empty:
        best = str(scored.idxmin())
        if "prior" in scored and scored[best] >= scored["prior"]:
            best = "prior"
        elif "prior" in scored and scored["prior"] - scored[best] < min_gain * scored["prior"]:
            gain = float(scored["prior"] - scored[best])
            small = (
                f" by the required {min_gain:.1%}: {best} was lower by {gain:.3g} "
                f"({gain / float(scored['prior']):.2%}), within what one validation "
                "snapshot can tell apart"
            )
            best = "prior"
        lowest = best
        if tolerance_se > 0:
            best = _simplest_within(out.scores, y, best, float(tolerance_se))
    out.table, out.chosen = table, best
    if best != lowest:
        out.reason = (
            f"{best} is the simplest candidate within {tolerance_se:g} standard error(s) of "
            f"the lowest validation log loss ({lowest}); the validation is optimistic"
        )
    elif best == "prior":
        out.reason = "no learned candidate beat the BTYD prior's validation log loss" + small
    else:
        gain = float(scored["prior"] - scored[best]) if "prior" in scored else float("nan")
        # Three significant digits and a share: a gain of 3e-5 must not print as 0.0000.
        share = gain / float(scored["prior"]) if "prior" in scored else float("nan")
        out.reason = f"{best} beat the BTYD prior's validation log loss by {gain:.3g} ({share:.2%})"
    return out


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def _simplest_within(
    scores: Mapping[str, np.ndarray], y: np.ndarray, best: str, tolerance_se: float
) -> str:
    """The first candidate of :data:`CANDIDATES` within ``tolerance_se`` SEs of ``best``."""
    ref = _row_log_loss(y, scores[best])
    for name in CANDIDATES:
        if name == best:
            return best
        if name not in scores:
            continue
        diff = _row_log_loss(y, scores[name]) - ref
        se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if float(np.mean(diff)) <= tolerance_se * se:
            return name
    return best
