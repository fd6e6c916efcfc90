"""Retention playbook: what to do with each customer, what it costs, what it saves.

A playbook maps every value tier x churn-risk band to an action, a unit cost
and an assumed save rate (share of the value at risk the action keeps), with
optional overrides for named RFM segments. Applied to scored customers it gives
each one an ``expected_net_benefit = value_at_risk * save_rate - unit_cost``;
:func:`select_contacts` then spends a limited capacity or budget on the
customers where that benefit is largest, and :func:`contact_summary` reports
what the campaign is expected to return. Those two need only the assigned columns,
not the playbook: they live in :mod:`churnguard.decision._contacts` and are
re-exported here, their public import path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churnguard._checks import (
    check_number,
    require_columns,
    require_frame,
    require_numeric,
)
from churnguard.decision._config import read_toml, reject_unknown, with_context
from churnguard.decision._contacts import contact_summary, select_contacts
from churnguard.decision.reference import EmpiricalCDF, RiskBands
from churnguard.decision.tiers import RISK_BANDS, TIERS
from churnguard.exceptions import ConfigError, InputDataError, ParameterError, ParameterTypeError

__all__ = [
    "ASSIGN_COLUMNS",
    "NO_VALUE_ACTION",
    "Override",
    "Playbook",
    "Treatment",
    "WinBack",
    "contact_summary",
    "select_contacts",
]

ASSIGN_COLUMNS: tuple[str, ...] = (
    "risk_band",
    "action",
    "unit_cost",
    "save_rate",
    "expected_net_benefit",
)
"""Columns returned by :meth:`Playbook.assign`."""

_TREATMENT_KEYS = frozenset({"action", "unit_cost", "save_rate"})
_WIN_BACK_KEYS = _TREATMENT_KEYS | {"enabled", "min_overdue_ratio", "one_time_min_days"}
#: Action of customers whose historical value is zero or negative.
NO_VALUE_ACTION = "no paid action: no value to protect"
_OVERRIDE_KEYS = _TREATMENT_KEYS | {"segment", "tier", "band"}


@dataclass(frozen=True)
class Treatment:
    """One action with its unit cost (>= 0) and assumed save rate (0..1)."""

    action: str
    unit_cost: float
    save_rate: float

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not self.action.strip():
            raise ParameterTypeError(f"action must be non-empty text; received {self.action!r}.")
        cost = check_number(self.unit_cost, "unit_cost", low=0.0, high=math.inf, example="5.0")
        rate = check_number(self.save_rate, "save_rate", low=0.0, high=1.0, example="0.2")
        object.__setattr__(self, "unit_cost", cost)
        object.__setattr__(self, "save_rate", rate)


@dataclass(frozen=True)
class Override:
    """A treatment for customers of one RFM segment, optionally narrowed by tier and band."""

    segment: str
    treatment: Treatment
    tier: str | None = None
    band: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.segment, str) or not self.segment:
            raise ParameterTypeError(
                f"override segment must be a segment name; got {self.segment!r}."
            )
        if self.tier is not None and self.tier not in TIERS:
            raise ParameterError(f"override tier must be one of {TIERS}; received {self.tier!r}.")
        if self.band is not None and self.band not in RISK_BANDS:
            raise ParameterError(
                f"override band must be one of {RISK_BANDS}; received {self.band!r}."
            )


@dataclass(frozen=True)
class WinBack:
    """The win-back track: lost customers who used to be among the best.

    Recovering lost customers is a strategy of its own: a customer who is high risk,
    silent for ``min_overdue_ratio`` times their own usual gap between purchases (a
    one-time buyer: for ``one_time_min_days``), and whose historical value (revenue, or
    margin when known) was in the reference base's top 20%, gets ``treatment`` and the
    segment ``win_back``, priced by what they were worth.
    """

    treatment: Treatment = field(
        default_factory=lambda: Treatment(
            "win-back: personal call with a reason to come back", 15.0, 0.10
        )
    )
    min_overdue_ratio: float = 3.0
    one_time_min_days: int = 365

    def __post_init__(self) -> None:
        if not isinstance(self.treatment, Treatment):
            raise ParameterTypeError("win_back treatment must be a Treatment.")
        check_number(self.min_overdue_ratio, "min_overdue_ratio", low=1.0, high=1e6, example="3")
        check_number(self.one_time_min_days, "one_time_min_days", low=1, high=1e6, example="365")

    def lapsed(self, days_since_last: Any, mean_gap_days: Any) -> np.ndarray:
        """Whether each customer is silent long enough, measured against their own gap."""
        days = np.asarray(days_since_last, dtype=float)
        gap = np.asarray(mean_gap_days, dtype=float)
        repeat = np.isfinite(gap) & (gap > 0)
        with np.errstate(invalid="ignore"):
            overdue = days >= self.min_overdue_ratio * np.where(repeat, gap, np.inf)
        return np.where(repeat, overdue, days >= self.one_time_min_days)


@dataclass(frozen=True)
class Playbook:
    """Actions, unit costs and save rates by value tier x risk band.

    Parameters
    ----------
    treatments : mapping of (tier, band) to Treatment
        Must cover every tier in ``("vip", "stable", "low")`` x every band in
        ``("low", "medium", "high")``.
    risk_bands : RiskBands
        How churn probabilities are cut into bands (default: by quantile of the
        reference base, so no band is empty at any base rate).
    overrides : tuple of Override, default ()
        Segment-specific treatments, tried in order, first match wins.
    win_back : WinBack, optional
        The win-back track: lapsed customers who used to be among the best (see
        :class:`WinBack`); None switches it off.
    no_value : Treatment
        For customers whose historical value (revenue, or margin when known) is zero or
        negative: never a paid action.
    source : str
        Where the playbook came from, for error messages.

    Examples
    --------
    >>> book = Playbook.load()  # the packaged default
    >>> plan = customers.join(book.assign(customers))  # doctest: +SKIP
    """

    treatments: Mapping[tuple[str, str], Treatment]
    risk_bands: RiskBands = field(default_factory=RiskBands)
    overrides: tuple[Override, ...] = ()
    source: str = "<Playbook>"
    win_back: WinBack | None = field(default_factory=lambda: WinBack())
    no_value: Treatment = field(default_factory=lambda: Treatment(NO_VALUE_ACTION, 0.0, 0.0))

    def __post_init__(self) -> None:
        if not isinstance(self.treatments, Mapping):
            raise ParameterTypeError(
                f"{self.source}: treatments must map (tier, band) to Treatment."
            )
        expected = {(t, b) for t in TIERS for b in RISK_BANDS}
        unknown = sorted(set(self.treatments) - expected, key=str)
        if unknown:
            raise ParameterError(
                f"{self.source}: unknown tier x band pair(s) {unknown}; tiers are {TIERS} and "
                f"risk bands are {RISK_BANDS}."
            )
        missing = sorted(expected - set(self.treatments))
        if missing:
            tables = ", ".join(f"[actions.{t}.{b}]" for t, b in missing)
            raise ParameterError(
                f"{self.source}: every value tier x risk band needs a treatment; missing "
                f"{missing}. Add {tables} with action, unit_cost and save_rate."
            )
        for key, treatment in self.treatments.items():
            if not isinstance(treatment, Treatment):
                raise ParameterTypeError(f"{self.source}: treatment for {key} must be a Treatment.")
        if not all(isinstance(o, Override) for o in self.overrides):
            raise ParameterTypeError(f"{self.source}: overrides must be a tuple of Override.")
        if not isinstance(self.risk_bands, RiskBands):
            raise ParameterTypeError(f"{self.source}: risk_bands must be a RiskBands.")
        object.__setattr__(self, "treatments", dict(self.treatments))
        object.__setattr__(self, "overrides", tuple(self.overrides))

    @property
    def thresholds(self) -> tuple[float, float]:
        """The fixed probability edges (used when ``risk_bands.method == "fixed"``)."""
        return self.risk_bands.thresholds

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Playbook:
        """Build a playbook from parsed TOML (see the packaged ``playbook.toml``)."""
        if not isinstance(data, Mapping):
            raise ParameterTypeError(
                f"{source}: expected a table of settings; received {type(data)}."
            )
        reject_unknown(
            data,
            frozenset({"risk_bands", "actions", "overrides", "win_back", "no_value"}),
            source,
        )
        bands, actions = data.get("risk_bands", {}), data.get("actions", {})
        overrides_raw = data.get("overrides", [])
        if not (isinstance(bands, Mapping) and isinstance(actions, Mapping)) or not isinstance(
            overrides_raw, list
        ):
            raise ParameterTypeError(
                f"{source}: [risk_bands] and [actions] must be tables and overrides a list of "
                "[[overrides]] tables; compare with the packaged playbook.toml."
            )
        reject_unknown(
            bands,
            frozenset({"method", "shares", "odds_ratios", "thresholds"}),
            f"{source} [risk_bands]",
        )
        treatments: dict[tuple[str, str], Treatment] = {}
        for tier, by_band in actions.items():
            if tier not in TIERS or not isinstance(by_band, Mapping):
                raise ParameterError(
                    f"{source}: [actions.{tier}] is not a value tier table; tiers are {TIERS}, "
                    "each with [actions.<tier>.<band>] tables for bands low, medium, high."
                )
            for band, table in by_band.items():
                where = f"{source} [actions.{tier}.{band}]"
                if band not in RISK_BANDS or not isinstance(table, Mapping):
                    raise ParameterError(f"{where}: risk band must be one of {RISK_BANDS}.")
                treatments[(tier, band)] = _treatment(table, _TREATMENT_KEYS, where)
        overrides = []
        for i, table in enumerate(overrides_raw):
            where = f"{source} [[overrides]] #{i + 1}"
            if not isinstance(table, Mapping) or "segment" not in table:
                raise ParameterError(
                    f"{where}: needs at least segment, action, unit_cost, save_rate."
                )
            treatment = _treatment(table, _OVERRIDE_KEYS, where)
            overrides.append(
                with_context(
                    where,
                    Override,
                    table["segment"],
                    treatment,
                    table.get("tier"),
                    table.get("band"),
                )
            )
        band_args = {k: tuple(v) if isinstance(v, list) else v for k, v in bands.items()}
        if "thresholds" in bands and "method" not in bands:
            band_args["method"] = "fixed"  # a file of the earlier format
        risk = with_context(f"{source} [risk_bands]", RiskBands, *_ordered(band_args))
        win_back = _win_back(data.get("win_back"), source)
        none = data.get("no_value", {})
        if not isinstance(none, Mapping):
            raise ConfigError(f"{source} [no_value] must be a table with an action.")
        reject_unknown(none, frozenset({"action"}), f"{source} [no_value]")
        no_value = Treatment(str(none.get("action", NO_VALUE_ACTION)), 0.0, 0.0)
        return cls(treatments, risk, tuple(overrides), source, win_back, no_value)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Playbook:
        """Read a playbook TOML file (default: the packaged ``playbook.toml``).

        Parameters
        ----------
        path : path-like, optional
            Your own playbook; copy the packaged one as a starting point.

        Returns
        -------
        Playbook

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ValueError, TypeError
            Invalid TOML, unknown keys, a tier x band without treatment, a
            negative cost or a save rate outside [0, 1].
        """
        data, source = read_toml(path, "playbook.toml")
        return cls.from_dict(data, source)

    def risk_edges(self, churn_probability: Any) -> tuple[float, float]:
        """Band edges measured on these probabilities (when no reference is given)."""
        return self.risk_bands.edges(EmpiricalCDF.fit(churn_probability))

    def assign(
        self, df: pd.DataFrame, *, risk_edges: tuple[float, float] | None = None
    ) -> pd.DataFrame:
        """Give every customer its treatment and expected net benefit.

        Precedence: customers with no historical value get :attr:`no_value` (never a
        paid action); then the win-back track (rows flagged ``win_back``); then the
        segment overrides; then the tier x risk band table.

        Parameters
        ----------
        df : DataFrame
            One row per customer with ``value_tier``, ``churn_probability`` and
            ``value_at_risk``; ``segment`` when the playbook has overrides; optional
            booleans ``win_back`` and ``no_value`` (else ``no_value`` is
            ``historical_revenue <= 0`` when that column exists).
        risk_edges : (float, float), optional
            Probability edges of the risk bands, from the stored reference; default:
            measured on ``df`` itself with :attr:`risk_bands`.

        Returns
        -------
        DataFrame
            :data:`ASSIGN_COLUMNS` (``risk_band``, ``action``, ``unit_cost``,
            ``save_rate``, ``expected_net_benefit``), indexed like ``df``.
        """
        require_frame(df, "Playbook.assign")
        require_columns(
            df,
            ["value_tier"],
            func="Playbook.assign",
            hint="Add it with df.assign(value_tier=assign_value_tiers(df)).",
        )
        require_numeric(
            df,
            ["churn_probability", "value_at_risk"],
            func="Playbook.assign",
            hint="value_at_risk is churn_probability * value_if_retained; add it with "
            "df.assign(value_at_risk=df.churn_probability * df.value_if_retained).",
        )
        # Everything below works on small integer codes: text labels would cost
        # ~100 bytes per customer on a base of millions.
        tier_codes = pd.Categorical(df["value_tier"], categories=list(TIERS)).codes
        if (tier_codes < 0).any():
            bad = df["value_tier"][tier_codes < 0].astype(str).unique()
            raise InputDataError(
                f"Playbook.assign(): value_tier has unknown value(s) {sorted(bad)[:5]}; expected "
                f"{TIERS}. Recompute tiers with assign_value_tiers(df)."
            )
        churn = df["churn_probability"].to_numpy(dtype=float)
        lo, hi = risk_edges if risk_edges is not None else self.risk_edges(churn)
        band_codes = np.where(churn >= hi, 2, np.where(churn >= lo, 1, 0)).astype(np.int8)
        # Treatment k is row k of these arrays: the tier x band table, the overrides,
        # then the win-back and no-value treatments.
        pairs = [(t, b) for t in TIERS for b in RISK_BANDS]
        chosen = [self.treatments[p] for p in pairs] + [o.treatment for o in self.overrides]
        pick = (tier_codes.astype(np.int16) * len(RISK_BANDS) + band_codes).astype(np.int16)
        if self.overrides:
            self._apply_overrides(df, pick, tier_codes, band_codes, first=len(pairs))
        if self.win_back is not None and "win_back" in df.columns:
            pick[df["win_back"].to_numpy(dtype=bool)] = len(chosen)
            chosen.append(self.win_back.treatment)
        if "no_value" in df.columns:
            no_value = df["no_value"].to_numpy(dtype=bool)
        elif "historical_revenue" in df.columns:
            no_value = df["historical_revenue"].to_numpy(dtype=float) <= 0
        else:
            no_value = np.zeros(len(df), dtype=bool)
        pick[no_value] = len(chosen)
        chosen.append(self.no_value)
        actions = np.array([t.action for t in chosen], dtype=object)
        unit_cost = np.array([t.unit_cost for t in chosen], dtype=float)[pick]
        save_rate = np.array([t.save_rate for t in chosen], dtype=float)[pick]
        value_at_risk = df["value_at_risk"].to_numpy(dtype=float)
        bands = pd.Categorical.from_codes(band_codes, categories=pd.Index(RISK_BANDS), ordered=True)
        return pd.DataFrame(
            {
                "risk_band": bands,
                "action": actions[pick],
                "unit_cost": unit_cost,
                "save_rate": save_rate,
                "expected_net_benefit": value_at_risk * save_rate - unit_cost,
            },
            index=df.index,
            columns=list(ASSIGN_COLUMNS),
        )

    def _apply_overrides(
        self,
        df: pd.DataFrame,
        pick: np.ndarray,
        tier_codes: np.ndarray,
        band_codes: np.ndarray,
        *,
        first: int,
    ) -> None:
        if "segment" not in df.columns:
            raise InputDataError(
                f"playbook {self.source} has segment overrides, so Playbook.assign() needs a "
                "segment column; add it with df.assign(segment=assign_segments(df)) or use a "
                "playbook without [[overrides]]."
            )
        segments = df["segment"]
        if not isinstance(segments.dtype, pd.CategoricalDtype):
            segments = segments.astype(str)
        taken = np.zeros(len(df), dtype=bool)
        for k, o in enumerate(self.overrides):  # a handful of rules, each vectorised
            hit = (segments == o.segment).to_numpy() & ~taken
            if o.tier is not None:
                hit &= tier_codes == TIERS.index(o.tier)
            if o.band is not None:
                hit &= band_codes == RISK_BANDS.index(o.band)
            pick[hit] = first + k
            taken |= hit


def _ordered(bands: Mapping[str, Any]) -> list[Any]:
    """RiskBands' positional arguments from a [risk_bands] table (defaults filled in)."""
    default = RiskBands()
    return [
        bands.get(k, getattr(default, k)) for k in ("method", "shares", "odds_ratios", "thresholds")
    ]


def _win_back(table: Any, source: str) -> WinBack | None:
    """The [win_back] table (absent: the default track; ``enabled = false``: none)."""
    if table is None:
        return WinBack()
    where = f"{source} [win_back]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table; compare with the packaged playbook.toml.")
    reject_unknown(table, _WIN_BACK_KEYS, where)
    if not table.get("enabled", True):
        return None
    default = WinBack()
    treatment = with_context(
        where,
        Treatment,
        table.get("action", default.treatment.action),
        table.get("unit_cost", default.treatment.unit_cost),
        table.get("save_rate", default.treatment.save_rate),
    )
    return with_context(
        where,
        WinBack,
        treatment,
        table.get("min_overdue_ratio", default.min_overdue_ratio),
        table.get("one_time_min_days", default.one_time_min_days),
    )


def _treatment(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> Treatment:
    reject_unknown(table, allowed, where)
    missing = sorted(_TREATMENT_KEYS - set(table))
    if missing:
        raise ParameterError(
            f"{where}: missing {missing}; each treatment needs action (text), unit_cost "
            "(>= 0) and save_rate (0..1)."
        )
    return with_context(where, Treatment, table["action"], table["unit_cost"], table["save_rate"])
