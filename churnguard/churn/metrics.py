"""Evaluation metrics for churn probabilities and churn rankings.

Labels follow one convention throughout: ``y_true == 1`` means the customer
churned (made no purchase in the prediction window). Inputs are taken
positionally (a pandas index is ignored), so align them before calling.

Two kinds of quality matter for a retention list and are measured separately:

* **ranking** -- does the score put churners first? (ROC AUC, average
  precision, lift and cumulative gains). Any score can be ranked, including
  baselines that are not probabilities, such as recency in days.
* **calibration** -- when the model says 30 %, do 30 % churn? (Brier score,
  log loss, expected calibration error). Only meaningful for probabilities,
  and it matters because value at risk is ``churn_probability x CLV``.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, roc_auc_score

from churnguard.exceptions import ParameterError, ParameterTypeError

__all__ = [
    "CLASSIFICATION_METRICS",
    "classification_report",
    "compare_scores",
    "expected_calibration_error",
    "gains_table",
    "reliability_table",
    "top_decile_lift",
]

#: Keys of :func:`classification_report`, in order (also the metric columns of
#: :func:`compare_scores`).
CLASSIFICATION_METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "top_decile_lift",
    "ece",
    "base_rate",
    "n",
)

_STRATEGIES = ("quantile", "uniform")
# Log loss is infinite for a confident wrong answer; clipping keeps one such
# customer from swamping the average while still punishing it heavily.
_LOG_LOSS_EPS = 1e-15

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- validation
def _as_1d(values: Any, name: str) -> npt.NDArray[Any]:
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        raise ParameterTypeError(
            f"{name} must be a 1-D array-like (list, numpy array or pandas Series); "
            f"received {type(values).__name__}. Pass one value per customer."
        )
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ParameterError(
            f"{name} must be 1-D; received an array of shape {arr.shape}. "
            "Pass one value per customer (e.g. a single column)."
        )
    if arr.size == 0:
        raise ParameterError(f"{name} is empty; expected at least one customer.")
    return arr


def _to_float(arr: npt.NDArray[Any], name: str) -> FloatArray:
    if arr.dtype.kind not in "biuf":
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterTypeError(
                f"{name} must be numeric; received dtype {arr.dtype} "
                f"(first values: {arr[:3].tolist()}). Convert it to numbers first."
            ) from exc
    return arr.astype(np.float64)


def _check_labels(y_true: Any) -> FloatArray:
    y = _to_float(_as_1d(y_true, "y_true"), "y_true")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        examples = np.unique(y[bad])[:5].tolist()
        raise ParameterError(
            f"y_true must hold binary churn labels (1 = churned, 0 = retained); found "
            f"{int(bad.sum())} other value(s), e.g. {examples}. Map your labels to 0/1 and "
            "drop or fill missing outcomes."
        )
    return y


def _check_scores(score: Any, name: str, n: int) -> FloatArray:
    s = _to_float(_as_1d(score, name), name)
    if s.shape[0] != n:
        raise ParameterError(
            f"{name} has {s.shape[0]} values but y_true has {n}; expected one score per "
            "labelled customer. Align both on customer_id first."
        )
    if not np.isfinite(s).all():
        raise ParameterError(
            f"{name} contains {int((~np.isfinite(s)).sum())} missing or infinite value(s); "
            "expected finite numbers. Fill or drop those customers first."
        )
    return s


def _check_probabilities(y_prob: Any, name: str, n: int) -> FloatArray:
    p = _check_scores(y_prob, name, n)
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        raise ParameterError(
            f"{name} must be probabilities within [0, 1]; {int(outside.sum())} value(s) fall "
            f"outside (min {p.min():.4g}, max {p.max():.4g}). Pass churn probabilities, or "
            "use compare_scores for a ranking score."
        )
    return p


def _check_bins(n_bins: int, strategy: str | None = None) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise ParameterTypeError(f"n_bins must be an int; received {type(n_bins).__name__}.")
    if n_bins < 1:
        raise ParameterError(f"n_bins must be at least 1; received {n_bins}.")
    if strategy is not None and strategy not in _STRATEGIES:
        raise ParameterError(
            f"strategy must be one of {_STRATEGIES}; received {strategy!r}. Use 'quantile' "
            "for equal-count bins or 'uniform' for equal-width bins on [0, 1]."
        )


# --------------------------------------------------------------------------- calibration
def _bin_edges(p: FloatArray, n_bins: int, strategy: str) -> FloatArray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    # Tied predictions make repeated quantiles; merging them keeps every bin non-empty.
    return np.unique(edges)


def _reliability(y: FloatArray, p: FloatArray, n_bins: int, strategy: str) -> pd.DataFrame:
    edges = _bin_edges(p, n_bins, strategy)
    n_edges = max(edges.shape[0] - 1, 1)
    idx = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(idx, minlength=n_edges)
    sum_p = np.bincount(idx, weights=p, minlength=n_edges)
    sum_y = np.bincount(idx, weights=y, minlength=n_edges)
    keep = count > 0
    lower = edges[:-1] if edges.shape[0] > 1 else edges
    upper = edges[1:] if edges.shape[0] > 1 else edges
    return pd.DataFrame(
        {
            "bin": np.arange(n_edges)[keep],
            "bin_lower": lower[keep],
            "bin_upper": upper[keep],
            "mean_predicted": sum_p[keep] / count[keep],
            "observed_rate": sum_y[keep] / count[keep],
            "count": count[keep].astype(np.int64),
        }
    )


def reliability_table(
    y_true: Any, y_prob: Any, n_bins: int = 10, strategy: str = "quantile"
) -> pd.DataFrame:
    """Observed churn rate against mean predicted probability, per probability bin.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    y_prob : array-like of shape (n,)
        Predicted churn probabilities within [0, 1].
    n_bins : int, default 10
        Number of bins requested.
    strategy : {"quantile", "uniform"}, default "quantile"
        ``"quantile"``: edges at the 0, 1/n_bins, ..., 1 quantiles of ``y_prob``, so bins
        hold about equally many customers; repeated edges (tied predictions) are merged,
        so fewer bins may come back. ``"uniform"``: ``n_bins`` equal-width bins on [0, 1].
        In both, a bin is ``[lower, upper)`` except the last, which includes its upper
        edge. Empty bins are dropped.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin`` (0-based position of the bin among the
        edges), ``bin_lower``, ``bin_upper``, ``mean_predicted``, ``observed_rate`` and
        ``count``.
    """
    _check_bins(n_bins, strategy)
    y = _check_labels(y_true)
    p = _check_probabilities(y_prob, "y_prob", y.shape[0])
    return _reliability(y, p, int(n_bins), strategy)


def expected_calibration_error(
    y_true: Any, y_prob: Any, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """Expected calibration error: count-weighted mean gap between prediction and outcome.

    ``ECE = sum_b (count_b / n) * |observed_rate_b - mean_predicted_b|`` over the bins of
    :func:`reliability_table` (same ``n_bins`` and ``strategy``; see there for the
    binning). 0 is perfect; the value is on the probability scale, so 0.05 means
    predictions are off by five percentage points on average.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    y_prob : array-like of shape (n,)
        Predicted churn probabilities within [0, 1].
    n_bins : int, default 10
        Number of bins requested.
    strategy : {"quantile", "uniform"}, default "quantile"
        Equal-count or equal-width bins.

    Returns
    -------
    float
    """
    return _ece(reliability_table(y_true, y_prob, n_bins=n_bins, strategy=strategy))


def _ece(table: pd.DataFrame) -> float:
    gap = (table["observed_rate"] - table["mean_predicted"]).abs()
    return float((gap * table["count"]).sum() / table["count"].sum())


# --------------------------------------------------------------------------- ranking
def _gains_points(y: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Corners of the cumulative gains curve, one per distinct score, highest first.

    Between corners the curve is linear: inside a group of tied scores that is the
    expected capture under random tie-breaking, so ties are never resolved in the
    model's favour.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last position of each run of equal scores.
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    cum_n = (ends + 1).astype(np.float64)
    cum_y = np.cumsum(y_sorted)[ends]
    x = np.r_[0.0, cum_n / s.shape[0]]
    g = np.r_[0.0, cum_y / y.sum()]
    return x, g


def _warn_no_churners(what: str) -> None:
    warnings.warn(
        f"{what} is undefined because y_true holds no churner (base rate 0); returning NaN. "
        "Evaluate on a sample that contains churned customers.",
        UndefinedMetricWarning,
        stacklevel=3,
    )


def top_decile_lift(y_true: Any, score: Any, fraction: float = 0.1) -> float:
    """Churn rate among the top ``fraction`` of customers by score, over the base rate.

    The top group is exactly ``fraction * n`` customers: a customer straddling the cut
    counts pro rata, and customers with tied scores share the places left at the cut
    (the expectation over random tie-breaking), so a constant score has lift 1. A
    perfect ranker scores ``min(1 / base_rate, 1 / fraction)``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    score : array-like of shape (n,)
        Any score where higher means more likely to churn (need not be a probability).
    fraction : float, default 0.1
        Share of customers contacted, within (0, 1].

    Returns
    -------
    float
        1 = no better than random; NaN (with a warning) when nobody churned.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ParameterError(
            f"fraction must be within (0, 1]; received {fraction}. Use 0.1 for the top decile."
        )
    y = _check_labels(y_true)
    s = _check_scores(score, "score", y.shape[0])
    if y.sum() == 0:
        _warn_no_churners("top_decile_lift")
        return float("nan")
    x, g = _gains_points(y, s)
    return float(np.interp(fraction, x, g) / fraction)


def gains_table(y_true: Any, score: Any, n_bins: int = 10) -> pd.DataFrame:
    """Cumulative gains and lift when contacting customers in descending score order.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    score : array-like of shape (n,)
        Any score where higher means more likely to churn.
    n_bins : int, default 10
        Number of equal steps of contacted share (10 gives deciles).

    Returns
    -------
    pandas.DataFrame
        One row per step ``i = 1..n_bins`` with ``bin``, ``fraction_contacted``
        (``i / n_bins``), ``customers_contacted`` (``fraction * n``, may be fractional),
        ``churners_captured``, ``fraction_of_churners_captured`` (the gains curve),
        ``cumulative_churn_rate``, ``lift`` (cumulative: captured share / contacted
        share), ``bin_churn_rate`` and ``bin_lift`` (for the step alone). Boundaries and
        ties are handled as in :func:`top_decile_lift`. Gains and lifts are NaN (with a
        warning) when nobody churned.
    """
    _check_bins(n_bins)
    y = _check_labels(y_true)
    s = _check_scores(score, "score", y.shape[0])
    n, n_churn = y.shape[0], y.sum()
    frac = np.arange(1, n_bins + 1) / n_bins
    if n_churn == 0:
        _warn_no_churners("gains_table")
        gain = np.full(n_bins, np.nan)
    else:
        x, g = _gains_points(y, s)
        gain = np.interp(frac, x, g)
    base_rate = n_churn / n
    captured = gain * n_churn
    step_captured = np.diff(np.r_[0.0, captured])
    step_rate = step_captured / (n / n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_lift = step_rate / base_rate
    return pd.DataFrame(
        {
            "bin": np.arange(1, n_bins + 1),
            "fraction_contacted": frac,
            "customers_contacted": frac * n,
            "churners_captured": captured,
            "fraction_of_churners_captured": gain,
            "cumulative_churn_rate": captured / (frac * n),
            "lift": gain / frac,
            "bin_churn_rate": step_rate,
            "bin_lift": bin_lift,
        }
    )


# --------------------------------------------------------------------------- reports
def _rank_metrics(y: FloatArray, s: FloatArray) -> dict[str, float]:
    """AUCs and lift; NaN for AUCs when only one class is present (caller warns)."""
    n_churn = y.sum()
    two_classes = 0 < n_churn < y.shape[0]
    out = {
        "roc_auc": float(roc_auc_score(y, s)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if two_classes else float("nan"),
        "top_decile_lift": float("nan"),
    }
    if n_churn > 0:
        x, g = _gains_points(y, s)
        out["top_decile_lift"] = float(np.interp(0.1, x, g) / 0.1)
    return out


def _probability_metrics(y: FloatArray, p: FloatArray) -> dict[str, float]:
    clipped = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    log_loss = -np.mean(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped))
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(log_loss),
        "ece": _ece(_reliability(y, p, 10, "quantile")),
    }


def _warn_single_class(y: FloatArray, what: str) -> None:
    if y.sum() in (0, y.shape[0]):
        label = "churned" if y.sum() else "retained"
        warnings.warn(
            f"{what}: every customer in y_true {label}, so roc_auc and pr_auc are undefined "
            "and set to NaN"
            + ("" if y.sum() else " (and top_decile_lift too)")
            + ". Evaluate on a sample with both churners and retained customers.",
            UndefinedMetricWarning,
            stacklevel=3,
        )


def classification_report(y_true: Any, y_prob: Any) -> dict[str, float]:
    """Headline ranking and calibration metrics for churn probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    y_prob : array-like of shape (n,)
        Predicted churn probabilities within [0, 1].

    Returns
    -------
    dict of str to float
        Keys, in order: ``roc_auc``; ``pr_auc`` (average precision); ``brier``;
        ``log_loss`` (probabilities clipped to ``[1e-15, 1 - 1e-15]``);
        ``top_decile_lift``; ``ece`` (10 quantile bins); ``base_rate``; ``n``.
        When ``y_true`` holds a single class, ``roc_auc`` and ``pr_auc`` are NaN and an
        ``UndefinedMetricWarning`` is emitted (``top_decile_lift`` is NaN as well when
        nobody churned); the probability metrics are still computed.
    """
    y = _check_labels(y_true)
    p = _check_probabilities(y_prob, "y_prob", y.shape[0])
    _warn_single_class(y, "classification_report")
    metrics = {**_rank_metrics(y, p), **_probability_metrics(y, p)}
    metrics["base_rate"] = float(y.mean())
    metrics["n"] = float(y.shape[0])
    return {key: metrics[key] for key in CLASSIFICATION_METRICS}


def compare_scores(
    y_true: Any,
    scores: Mapping[str, Any],
    higher_is_churn: Mapping[str, bool] | None = None,
    *,
    probabilities: Collection[str] = (),
) -> pd.DataFrame:
    """Evaluate a model and baselines side by side on the same customers.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        1 = churned, 0 = retained.
    scores : mapping of str to array-like of shape (n,)
        Named scores, e.g. ``{"model": proba, "recency_days": recency}``.
    higher_is_churn : mapping of str to bool, optional
        Direction of each score; missing names default to True. Use False for scores
        where a *low* value signals churn (e.g. purchase frequency); they are negated
        before ranking.
    probabilities : collection of str, default ()
        Names of the scores that are churn probabilities. Only these get the
        probability metrics (``brier``, ``log_loss``, ``ece``); every other score is a
        ranking and gets NaN there, because a min-max scaled recency lying in [0, 1] is
        still not a probability. A flagged score must lie within [0, 1] and cannot have
        ``higher_is_churn`` False (otherwise ``ValueError``).

    Returns
    -------
    pandas.DataFrame
        One row per score, in the order given: ``score`` (the name),
        ``is_probability``, then the columns of :data:`CLASSIFICATION_METRICS`. Rank
        metrics (``roc_auc``, ``pr_auc``, ``top_decile_lift``) are computed for every
        score; single-class ``y_true`` gives NaN AUCs with one warning.
    """
    if not isinstance(scores, Mapping) or not scores:
        raise ParameterTypeError(
            "scores must be a non-empty mapping of name to array, e.g. "
            f"{{'model': proba, 'recency_days': recency}}; received {type(scores).__name__}."
        )
    if isinstance(probabilities, str):
        raise ParameterTypeError(
            f"probabilities must be a collection of score names; received the string "
            f"{probabilities!r}. Wrap it in a list: [{probabilities!r}]."
        )
    direction = dict(higher_is_churn or {})
    flagged = set(probabilities)
    unknown = (set(direction) | flagged) - set(scores)
    if unknown:
        raise ParameterError(
            f"higher_is_churn/probabilities name unknown score(s) {sorted(unknown)}; the "
            f"scores given are {list(scores)}. Check the spelling."
        )
    contradictory = sorted(name for name in flagged if direction.get(name) is False)
    if contradictory:
        raise ParameterError(
            f"score(s) {contradictory} are flagged as churn probabilities but also as "
            "higher_is_churn=False; a churn probability rises with churn. Pass 1 - p or "
            "drop the flag."
        )
    y = _check_labels(y_true)
    _warn_single_class(y, "compare_scores")
    rows = []
    for name, values in scores.items():  # one row per named score, not per customer
        label = f"scores[{name!r}]"
        is_prob = name in flagged
        s = (
            _check_probabilities(values, label, y.shape[0])
            if is_prob
            else _check_scores(values, label, y.shape[0])
        )
        ranked = s if direction.get(name, True) else -s
        row: dict[str, Any] = {"score": name, "is_probability": is_prob}
        row.update(_rank_metrics(y, ranked))
        row.update(
            _probability_metrics(y, s)
            if is_prob
            else {"brier": np.nan, "log_loss": np.nan, "ece": np.nan}
        )
        row["base_rate"] = float(y.mean())
        row["n"] = float(y.shape[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=["score", "is_probability", *CLASSIFICATION_METRICS])
