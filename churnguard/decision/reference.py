"""The reference customers the decisions are measured against, learned once and stored.

A tier, a risk band or an RFM score is a position *among customers*. If it were
recomputed among the customers of each scoring call, scoring five customers would
rank them among themselves: a VIP of the full base could come back "stable". So the
positions are measured against a fixed reference, the whole base as of the end of
training, stored in the model: the empirical distributions of the value columns, of the
RFM inputs and of the churn probability, the tier and risk-band edges, the look-alike
(growth) model and the historical value that marks a lost VIP. Scoring one customer
through the CLI, Python or the MLflow model then gives the answer of the full run.
(``DecisionReference.fit`` on the scored base itself recomputes them, on request.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from churnguard._checks import require_frame, require_numeric
from churnguard._money import net_monetary_value
from churnguard.exceptions import InputDataError, ParameterError

__all__ = [
    "DEFAULT_BAND_SHARES",
    "RISK_METHODS",
    "DecisionReference",
    "EmpiricalCDF",
    "RiskBands",
]

#: Risk-band methods: edges at quantiles of the reference churn probabilities, at odds
#: ratios to the reference base rate, or fixed probabilities.
RISK_METHODS = ("quantile", "odds", "fixed")
#: Default shares of the low, medium and high risk bands among the reference customers.
DEFAULT_BAND_SHARES = (0.5, 0.3, 0.2)
# Distinct values kept per distribution; beyond, an equally spaced quantile grid.
_MAX_POINTS = 20_001
# Customers the look-alike model is fitted on at most (a handful of coefficients).
_GROWTH_ROWS = 200_000
_GROWTH_FEATURES = ("frequency", "monetary_value", "recency", "T", "expected_purchases")


def _sorted_quantile(v: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(v, q)`` (its default linear method) of an already sorted ``v``.

    numpy partitions around every requested index first; for 20,001 of them that is
    ~30 ms a call even on sorted data, and a training run asks for dozens. The same
    interpolation, with numpy's own operations in its own order, is then bit for bit
    numpy's answer (tested).
    """
    n = v.size
    virtual = (n - 1) * np.asarray(q, dtype=float)
    previous = np.floor(virtual)
    following = previous + 1
    last = virtual >= n - 1  # numpy takes the last value there
    previous[last] = -1
    following[last] = -1
    first = virtual < 0
    previous[first] = 0
    following[first] = 0
    i, j = previous.astype(np.intp), following.astype(np.intp)
    gamma = virtual - i
    a, b = v[i], v[j]
    diff = b - a
    out = a + diff * gamma
    # numpy interpolates from the nearer end, for monotone results.
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


@dataclass(frozen=True)
class EmpiricalCDF:
    """A column's distribution among the reference customers: distinct values and counts.

    With more than ~20,000 distinct values (continuous money amounts on a large base)
    an equally spaced quantile grid stands in, so the model stays small.
    """

    values: np.ndarray
    cumulative: np.ndarray  # customers with a value <= values[i]
    n: int

    @classmethod
    def fit(cls, values: Any) -> EmpiricalCDF:
        """The distribution of the finite values of ``values``."""
        v = np.asarray(values, dtype=float)
        v = np.sort(v[np.isfinite(v)])
        if v.size == 0:
            return cls(np.array([0.0]), np.array([0]), 0)
        if v.size > _MAX_POINTS:
            # Quantile grid: each point stands for an equal share of the customers.
            grid = _sorted_quantile(v, np.linspace(0.0, 1.0, _MAX_POINTS))
            uniq, first = np.unique(grid, return_index=True)
            last = np.r_[first[1:], len(grid)] - 1
            share = (last + 1) / len(grid)
            return cls(uniq, np.round(share * v.size).astype(np.int64), int(v.size))
        uniq, counts = np.unique(v, return_counts=True)
        return cls(uniq, np.cumsum(counts), int(v.size))

    def below_upto(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Reference customers strictly below and at or below each value of ``x``."""
        v = np.asarray(x, dtype=float)
        cum = np.r_[0, self.cumulative]
        left = np.searchsorted(self.values, v, side="left")
        # The reference values are distinct, so side="right" is one further exactly
        # where the value is found: one binary search instead of two.
        found = np.zeros(left.shape, dtype=bool)
        inside = left < len(self.values)
        found[inside] = self.values[left[inside]] == v[inside]
        return cum[left], cum[left + found]

    def percentile_rank(self, x: Any) -> np.ndarray:
        """Mean-rank percentile as ``Series.rank(pct=True)`` would give among the reference.

        ``(below + upto + 1) / (2 n)`` for a value tied with reference customers; NaN
        stays NaN.
        """
        v = np.asarray(x, dtype=float)
        below, upto = self.below_upto(v)
        out = (below + upto + 1) / (2.0 * max(self.n, 1))
        return np.where(np.isnan(v), np.nan, np.clip(out, 0.0, 1.0))

    def quantile(self, q: float) -> float:
        """The reference value at quantile ``q`` (lower value at a tie)."""
        if self.n == 0:
            return float("nan")
        k = np.searchsorted(self.cumulative, q * self.n, side="left")
        return float(self.values[min(int(k), len(self.values) - 1)])

    def quintile_score(self, x: Any, *, higher_is_better: bool) -> np.ndarray:
        """RFM score 1..5: 1 + floor(5 x share of differently valued reference customers beaten).

        The rule of :func:`churnguard.decision.segments.rfm_scores`, measured against
        the reference: ties share a score, the worst value scores 1 and the best 5.
        """
        v = np.asarray(x, dtype=float)
        below, upto = self.below_upto(v)
        above = self.n - upto
        beaten, others = (below, below + above) if higher_is_better else (above, below + above)
        scaled = np.where(others > 0, (5 * beaten) // np.maximum(others, 1), 2)
        return np.minimum(5, 1 + scaled).astype(np.int8)


@dataclass(frozen=True)
class RiskBands:
    """How churn probabilities are cut into low / medium / high risk.

    Parameters
    ----------
    method : {"odds", "quantile", "fixed"}
        ``odds`` (default): relative to the base rate, a customer is high risk when
        their odds of churning are ``odds_ratios[1]`` times the reference base rate's,
        low risk below ``odds_ratios[0]`` times, so a 75% risk reads "high" among 40%
        churners and "low" among 90% churners; ``quantile``: the bands hold ``shares``
        of the reference customers (edges at their churn-probability quantiles), never
        empty but blind to the base rate; ``fixed``: ``thresholds`` on the probability.
    shares, odds_ratios, thresholds
        The settings of each method.
    """

    method: str = "odds"
    shares: tuple[float, float, float] = DEFAULT_BAND_SHARES
    odds_ratios: tuple[float, float] = (0.67, 1.5)
    thresholds: tuple[float, float] = (0.3, 0.6)

    def __post_init__(self) -> None:
        if self.method not in RISK_METHODS:
            raise ParameterError(
                f"risk band method must be one of {RISK_METHODS}; got {self.method!r}."
            )
        if (
            len(self.shares) != 3
            or not math.isclose(sum(self.shares), 1.0, abs_tol=1e-9)
            or (min(self.shares) < 0)
        ):
            raise ParameterError(
                f"risk band shares must be three numbers >= 0 summing to 1 (low, medium, "
                f"high), e.g. [0.5, 0.3, 0.2]; got {list(self.shares)}."
            )
        lo, hi = self.odds_ratios
        if not 0 < lo < 1 < hi:
            raise ParameterError(
                f"risk band odds_ratios must be [low, high] with 0 < low < 1 < high, e.g. "
                f"[0.67, 1.5]; got {list(self.odds_ratios)}."
            )
        t_lo, t_hi = self.thresholds
        if not 0 <= t_lo < t_hi <= 1:
            raise ParameterError(
                f"risk band thresholds must be increasing probabilities in [0, 1], e.g. "
                f"[0.3, 0.6]; got {list(self.thresholds)}."
            )

    def edges(self, churn: EmpiricalCDF) -> tuple[float, float]:
        """The (low/medium, medium/high) probability edges against a reference."""
        if self.method == "fixed" or churn.n == 0:
            return float(self.thresholds[0]), float(self.thresholds[1])
        if self.method == "quantile":
            lo = churn.quantile(self.shares[0])
            hi = churn.quantile(self.shares[0] + self.shares[1])
            return lo, max(hi, np.nextafter(lo, 1.0))
        base = float(np.sum(np.diff(np.r_[0, churn.cumulative]) * churn.values) / churn.n)
        base = min(max(base, 1e-6), 1 - 1e-6)
        odds = base / (1 - base)
        lo_odds, hi_odds = odds * self.odds_ratios[0], odds * self.odds_ratios[1]
        return lo_odds / (1 + lo_odds), hi_odds / (1 + hi_odds)

    def describe(self) -> str:
        """One line for the summary and the README."""
        if self.method == "quantile":
            low, mid, high = (round(100 * s) for s in self.shares)
            return f"by quantile of the reference base: {low}% low, {mid}% medium, {high}% high"
        if self.method == "odds":
            lo, hi = self.odds_ratios
            return f"by odds against the reference base rate: low < {lo:g}x, high >= {hi:g}x"
        lo, hi = self.thresholds
        return f"fixed: low < {lo:g} <= medium < {hi:g} <= high"


@dataclass
class DecisionReference:
    """Distributions and edges of the reference base (see the module docstring).

    Build with :meth:`fit`; every field is plain data (pickled with the model).
    """

    value_cdfs: dict[str, EmpiricalCDF] = field(default_factory=dict)
    tier_weights: dict[str, float] = field(default_factory=dict)
    tier_edges: tuple[float, float] = (0.0, 0.0)
    rfm_cdfs: dict[str, EmpiricalCDF] = field(default_factory=dict)
    churn_cdf: EmpiricalCDF | None = None
    base_rate: float = float("nan")
    growth_cdfs: dict[str, EmpiricalCDF] = field(default_factory=dict)
    growth_model: Any = None
    vip_revenue: float = float("inf")
    n_customers: int = 0
    source: str = "scored base"

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        tier_weights: Mapping[str, float] | None = None,
        tier_shares: Sequence[float] = (0.2, 0.6, 0.2),
        source: str = "scored base",
    ) -> DecisionReference:
        """Learn the reference from one row per customer (features, value, churn columns).

        Parameters
        ----------
        frame : DataFrame
            Needs the value columns of the tier weights (default ``value_if_retained``,
            or ``predicted_clv`` without it, and ``total_spend``, or ``margin_total`` when
            present; :func:`churnguard.decision.tiers.default_tier_weights`), ``days_since_last``,
            ``frequency``, ``monetary_value`` and ``churn_probability``; with
            ``total_spend`` and ``returned_amount``, the RFM monetary distribution is
            that of the monetary value net of returns.
        tier_weights : mapping, optional
            Weights of the value score (see :func:`churnguard.decision.tiers.value_score`).
        tier_shares : three floats
            Shares of the vip, stable and low tiers among the reference customers.
        source : str
            What the reference is, for the summary ("training base as of 1998-06-30").
        """
        from churnguard.decision.tiers import default_tier_weights

        require_frame(frame, "DecisionReference.fit")
        if len(frame) == 0:
            raise InputDataError("DecisionReference.fit needs at least one customer.")
        weights = dict(tier_weights or default_tier_weights(frame))
        require_numeric(
            frame,
            [*weights, "days_since_last", "frequency", "monetary_value", "churn_probability"],
            func="DecisionReference.fit",
            hint="Pass the scored customers of ChurnGuardModel.predict.",
        )
        total = sum(weights.values())
        value_cdfs = {c: EmpiricalCDF.fit(frame[c]) for c in weights}
        score = sum(
            (w / total) * value_cdfs[c].percentile_rank(frame[c]) for c, w in weights.items()
        )
        score_cdf = EmpiricalCDF.fit(score)
        vip_share, stable_share, _ = (float(s) for s in tier_shares)
        edges = (
            score_cdf.quantile(1.0 - vip_share - stable_share),
            score_cdf.quantile(1.0 - vip_share),
        )
        ref = cls(
            value_cdfs=value_cdfs,
            tier_weights=weights,
            tier_edges=(float(edges[0]), float(edges[1])),
            rfm_cdfs={
                "days_since_last": EmpiricalCDF.fit(frame["days_since_last"]),
                "frequency": EmpiricalCDF.fit(frame["frequency"]),
                "monetary_value": EmpiricalCDF.fit(net_monetary_value(frame)),
            },
            churn_cdf=EmpiricalCDF.fit(frame["churn_probability"]),
            base_rate=float(frame["churn_probability"].mean()),
            n_customers=len(frame),
            source=source,
        )
        history = "margin_total" if "margin_total" in frame.columns else "total_spend"
        ref.vip_revenue = EmpiricalCDF.fit(frame[history]).quantile(1.0 - vip_share)
        ref._fit_growth(frame)
        return ref

    # ------------------------------------------------------------------ apply
    def value_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Weighted mean of the value columns' percentile ranks among the reference."""
        total = sum(self.tier_weights.values())
        return np.asarray(
            sum(
                (w / total) * self.value_cdfs[c].percentile_rank(frame[c])
                for c, w in self.tier_weights.items()
            ),
            dtype=float,
        )

    def tier_codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Value tier codes: 0 low, 1 stable, 2 vip (edges of the reference)."""
        score = self.value_score(frame)
        lo, hi = self.tier_edges
        return np.where(score >= hi, 2, np.where(score >= lo, 1, 0)).astype(np.int8)

    def rfm(self, frame: pd.DataFrame) -> pd.DataFrame:
        """r, f, m scores (1..5, 5 best) against the reference.

        ``frame`` has ``days_since_last``, ``frequency`` and ``monetary_value``; with
        ``total_spend`` and ``returned_amount`` too, the m score ranks the monetary value
        net of returns (:func:`churnguard.clv.kept_share`), as :meth:`fit` measured it.
        """
        return pd.DataFrame(
            {
                "r_score": self.rfm_cdfs["days_since_last"].quintile_score(
                    frame["days_since_last"], higher_is_better=False
                ),
                "f_score": self.rfm_cdfs["frequency"].quintile_score(
                    frame["frequency"], higher_is_better=True
                ),
                "m_score": self.rfm_cdfs["monetary_value"].quintile_score(
                    net_monetary_value(frame), higher_is_better=True
                ),
            },
            index=frame.index,
        )

    def risk_edges(self, bands: RiskBands) -> tuple[float, float]:
        """The probability edges of ``bands`` measured against the reference."""
        assert self.churn_cdf is not None
        return bands.edges(self.churn_cdf)

    def _growth_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        cols = list(self.growth_cdfs)
        x = np.empty((len(frame), len(cols)))
        for j, col in enumerate(cols):
            x[:, j] = np.nan_to_num(self.growth_cdfs[col].percentile_rank(frame[col]), nan=0.5)
        return x

    def _fit_growth(self, frame: pd.DataFrame) -> None:
        cols = [c for c in _GROWTH_FEATURES if c in frame.columns and frame[c].notna().any()]
        self.growth_cdfs = {c: EmpiricalCDF.fit(frame[c]) for c in cols}
        is_vip = self.tier_codes(frame) == 2
        if not cols or is_vip.all() or not is_vip.any():
            self.growth_model = None
            return
        x = self._growth_matrix(frame)
        rows = np.arange(len(x))
        if len(x) > _GROWTH_ROWS:
            rows = np.sort(np.random.default_rng(0).choice(len(x), _GROWTH_ROWS, replace=False))
        self.growth_model = LogisticRegression(C=1.0, class_weight="balanced").fit(
            x[rows], is_vip[rows].astype(int)
        )

    def growth_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """P(looks like a VIP) from behaviour alone; NaN when no look-alike model exists."""
        if self.growth_model is None:
            return np.full(len(frame), np.nan)
        out = np.empty(len(frame))
        step = 1_000_000  # predict_proba's temporaries stay bounded at millions of rows
        x_all = self._growth_matrix(frame)
        for i in range(0, len(frame), step):
            out[i : i + step] = self.growth_model.predict_proba(x_all[i : i + step])[:, 1]
        return out

    def describe(self, bands: RiskBands | None = None) -> dict[str, Any]:
        """Plain data for the summary and the model metadata."""
        bands = bands or RiskBands()
        return {
            "reference": self.source,
            "reference_customers": self.n_customers,
            "tier_weights": dict(self.tier_weights),
            "risk_bands": bands.describe(),
            "risk_edges": [round(float(e), 4) for e in self.risk_edges(bands)],
            "reference_base_rate": round(float(self.base_rate), 4),
            "win_back_min_revenue": round(float(self.vip_revenue), 2),
        }
