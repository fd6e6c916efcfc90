"""RFM quintile scores and named RFM segments from editable rules.

RFM (recency, frequency, monetary) scores and the segment names built on them
(champions, loyal, at_risk, cant_lose, hibernating, lost, ...) are how
marketing teams talk about a customer base. Scores are quintiles from 1 to 5
(5 best); named segments come from an ordered list of rules on those scores,
read from ``churnguard/config/segments.toml`` or from the user's own copy, the
first matching rule winning.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from churnguard._checks import check_number, require_frame, require_numeric
from churnguard.decision._config import read_toml, reject_unknown, with_context
from churnguard.decision._ranks import tie_bounds
from churnguard.exceptions import InputDataError, ParameterError, ParameterTypeError

__all__ = [
    "SCORE_COLUMNS",
    "SegmentRule",
    "SegmentRules",
    "assign_segments",
    "load_segment_rules",
    "rename_segments",
    "rfm_score",
    "rfm_scores",
]

SCORE_COLUMNS: tuple[str, str, str] = ("r_score", "f_score", "m_score")
"""Columns returned by :func:`rfm_scores`."""

_DIMENSIONS = ("r", "f", "m")
_RULE_KEYS = frozenset({"name", "description", *_DIMENSIONS})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FALLBACK = "other"
_T = TypeVar("_T")


@dataclass(frozen=True)
class SegmentRule:
    """One named segment: inclusive score ranges, ``None`` meaning "any score".

    Parameters
    ----------
    name : str
        snake_case segment name, e.g. ``"champions"``.
    r, f, m : (int, int) or None
        Inclusive ``(low, high)`` range of the recency, frequency and monetary
        score, within 1..5.
    description : str
        What the segment is and how to treat it.
    """

    name: str
    r: tuple[int, int] | None = None
    f: tuple[int, int] | None = None
    m: tuple[int, int] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ParameterError(
                f"segment name {self.name!r} must be snake_case text (lower-case letters, "
                "digits and underscores, starting with a letter), e.g. 'cant_lose'."
            )
        if not isinstance(self.description, str):
            raise ParameterTypeError(f"segment '{self.name}': description must be text.")
        for dim in _DIMENSIONS:
            bounds = getattr(self, dim)
            if bounds is None:
                continue
            ok = (
                isinstance(bounds, tuple | list)
                and len(bounds) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            )
            if not ok or not 1 <= bounds[0] <= bounds[1] <= 5:
                raise ParameterError(
                    f"segment '{self.name}': {dim} must be an inclusive range [low, high] of "
                    f"whole scores with 1 <= low <= high <= 5; received {bounds!r}. "
                    f"Write e.g. {dim} = [4, 5]."
                )
            object.__setattr__(self, dim, (bounds[0], bounds[1]))

    @property
    def is_catch_all(self) -> bool:
        """True when the rule tests no score, so it matches every customer."""
        return self.r is None and self.f is None and self.m is None


@dataclass(frozen=True)
class SegmentRules:
    """Ordered segment rules (first match wins) and the ``rfm_score`` weights.

    Parameters
    ----------
    rules : sequence of SegmentRule
        Tried in order. A catch-all rule may only come last; without one,
        customers no rule matches get the segment ``"other"``.
    weights : mapping of str to float
        Weights of the ``r``, ``f`` and ``m`` scores in :func:`rfm_score`;
        missing ones default to 1.
    source : str
        Where the rules came from, for error messages.
    """

    rules: tuple[SegmentRule, ...]
    weights: Mapping[str, float] = field(default_factory=lambda: {"r": 1.0, "f": 1.0, "m": 1.0})
    source: str = "<SegmentRules>"

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        if not rules or not all(isinstance(r, SegmentRule) for r in rules):
            raise ParameterTypeError(
                f"{self.source}: rules must be a non-empty sequence of SegmentRule; received "
                f"{[type(r).__name__ for r in rules]}."
            )
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ParameterError(f"{self.source}: segment name(s) {dupes} appear more than once.")
        for i, rule in enumerate(rules[:-1]):
            if rule.is_catch_all:
                raise ParameterError(
                    f"{self.source}: catch-all segment '{rule.name}' (no r/f/m range) is rule "
                    f"{i + 1} of {len(rules)}, so the rules after it could never match. Move it "
                    "to the end or give it ranges."
                )
        reject_unknown(self.weights, frozenset(_DIMENSIONS), f"{self.source} [weights]")
        weights = {
            d: check_number(
                self.weights.get(d, 1.0), f"weight {d}", low=0, high=math.inf, example="1"
            )
            for d in _DIMENSIONS
        }
        if sum(weights.values()) <= 0:
            raise ParameterError(
                f"{self.source}: [weights] are all 0; give r, f or m a weight > 0."
            )
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "weights", weights)

    @property
    def names(self) -> list[str]:
        """Segment names in rule order, plus ``"other"`` when there is no catch-all."""
        names = [r.name for r in self.rules]
        return names if self.rules[-1].is_catch_all else [*names, _FALLBACK]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SegmentRules:
        """Build rules from parsed TOML: ``{"weights": {...}, "segments": [{...}, ...]}``."""
        if not isinstance(data, Mapping):
            raise ParameterTypeError(
                f"{source}: expected a table of settings; received {type(data)}."
            )
        reject_unknown(data, frozenset({"weights", "segments"}), source)
        raw = data.get("segments")
        if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
            raise ParameterError(
                f"{source} needs a non-empty list of [[segments]] tables, each with a name and "
                'ranges, e.g. [[segments]] name = "champions" r = [5, 5] f = [4, 5].'
            )
        rules = []
        for i, table in enumerate(raw):
            where = f"{source} [[segments]] #{i + 1} ({table.get('name', 'unnamed')})"
            reject_unknown(table, _RULE_KEYS, where)
            if "name" not in table:
                raise ParameterError(f'{where} has no name; add e.g. name = "champions".')
            rules.append(
                with_context(
                    where,
                    SegmentRule,
                    table["name"],
                    *(table.get(d) for d in _DIMENSIONS),
                    table.get("description", ""),
                )
            )
        weights = data.get("weights", {})
        if not isinstance(weights, Mapping):
            raise ParameterTypeError(
                f"{source}: [weights] must be a table like r = 1.0; got {weights!r}."
            )
        return cls(tuple(rules), dict(weights), source)


def load_segment_rules(path: str | os.PathLike[str] | None = None) -> SegmentRules:
    """Read segment rules from a TOML file (default: the packaged ``segments.toml``).

    Parameters
    ----------
    path : path-like, optional
        Your own rules file; copy the packaged one as a starting point.

    Returns
    -------
    SegmentRules

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Invalid TOML, unknown keys, ranges outside 1..5, duplicate names, or a
        catch-all rule that is not last.
    """
    data, source = read_toml(path, "segments.toml")
    return SegmentRules.from_dict(data, source)


def _quintile(values: pd.Series, *, higher_is_better: bool) -> np.ndarray:
    # Score = 1 + floor(5 * share of the *differently valued* customers this one
    # beats). Ties share a score whatever the row order (two customers with the
    # same numbers never land in different segments), the worst value always
    # scores 1 and the best 5 (a heavy tie at zero purchases stays at 1), a
    # base of distinct values splits into exact quintiles when n is a multiple
    # of 5, and a single customer or constant column scores a neutral 3.
    v = values.to_numpy(dtype=float) if higher_is_better else -values.to_numpy(dtype=float)
    n = len(v)
    below, upto = tie_bounds(v)
    above = n - upto
    others = below + above
    scaled = np.where(others > 0, (5 * below) // np.maximum(others, 1), 2)
    return np.minimum(5, 1 + scaled).astype(np.int64)


def rfm_scores(
    df: pd.DataFrame,
    recency_col: str = "days_since_last",
    frequency_col: str = "frequency",
    monetary_col: str = "monetary_value",
) -> pd.DataFrame:
    """RFM quintile scores from 1 to 5, where 5 is best.

    5 means most recent (smallest time since the last purchase), most frequent,
    highest spend. Ties always share a score (see the rule in the source), so
    with heavy ties (most customers with 0 repeat purchases) quintiles are not
    of equal size.

    Parameters
    ----------
    df : DataFrame
        One row per customer.
    recency_col : str, default "days_since_last"
        Time since the last purchase; **smaller is better**. Do not pass the
        lifetimes ``recency`` column (age at last purchase), which runs the
        other way.
    frequency_col, monetary_col : str
        Number of repeat purchases and average spend per purchase; larger is better.

    Returns
    -------
    DataFrame
        Integer columns ``r_score``, ``f_score``, ``m_score``, indexed like ``df``.
    """
    require_frame(df, "rfm_scores")
    cols = [recency_col, frequency_col, monetary_col]
    require_numeric(
        df,
        cols,
        func="rfm_scores",
        hint="Build features with churnguard's feature builder or pass recency_col=, "
        "frequency_col=, monetary_col= naming your columns.",
    )
    return pd.DataFrame(
        {
            "r_score": _quintile(df[recency_col], higher_is_better=False),
            "f_score": _quintile(df[frequency_col], higher_is_better=True),
            "m_score": _quintile(df[monetary_col], higher_is_better=True),
        },
        index=df.index,
    )


def _resolve_rules(rules: SegmentRules | str | os.PathLike[str] | None) -> SegmentRules:
    if isinstance(rules, SegmentRules):
        return rules
    if rules is None or isinstance(rules, str | os.PathLike):
        return load_segment_rules(rules)
    raise ParameterTypeError(
        f"rules must be SegmentRules, a path to a TOML file or None; received {type(rules)}."
    )


def _score_frame(df: pd.DataFrame, func: str) -> pd.DataFrame:
    """Existing r/f/m score columns, else scores computed from the raw columns."""
    require_frame(df, func)
    if not all(c in df.columns for c in SCORE_COLUMNS):
        return rfm_scores(df)
    scores = df[list(SCORE_COLUMNS)]
    require_numeric(scores, SCORE_COLUMNS, func=func, hint="")
    bad = ~scores.isin([1, 2, 3, 4, 5]).all(axis=1)
    if bad.any():
        raise InputDataError(
            f"{func}(): {int(bad.sum())} row(s) have r/f/m scores outside the whole numbers "
            f"1..5, e.g. {scores[bad].head(2).to_dict('records')}. Recompute them with "
            "rfm_scores(df), or drop the score columns to have them computed."
        )
    return scores


def rfm_score(
    df: pd.DataFrame, rules: SegmentRules | str | os.PathLike[str] | None = None
) -> pd.Series:
    """Weighted sum of the r, f and m scores (3 to 15 with the default weights of 1).

    Parameters
    ----------
    df : DataFrame
        Either with ``r_score``, ``f_score``, ``m_score`` columns, or with the
        raw columns :func:`rfm_scores` needs (then scored on the fly).
    rules : SegmentRules, path-like or None
        Supplies the ``[weights]``; default the packaged rules.

    Returns
    -------
    Series
        Float named ``rfm_score``, indexed like ``df``.
    """
    scores = _score_frame(df, "rfm_score")
    w = _resolve_rules(rules).weights
    weighted = sum(scores[f"{d}_score"] * w[d] for d in _DIMENSIONS)
    return pd.Series(weighted, index=df.index, dtype=float, name="rfm_score")


def assign_segments(
    df: pd.DataFrame, rules: SegmentRules | str | os.PathLike[str] | None = None
) -> pd.Series:
    """Name each customer's RFM segment; the first matching rule wins.

    Parameters
    ----------
    df : DataFrame
        Either with ``r_score``, ``f_score``, ``m_score`` columns, or with the
        raw columns :func:`rfm_scores` needs (then scored on the fly).
    rules : SegmentRules, path-like or None
        Rules, or a TOML file of rules; default the packaged ``segments.toml``.

    Returns
    -------
    Series
        Categorical named ``segment`` (categories in rule order), indexed like
        ``df``; ``"other"`` where no rule matches and there is no catch-all.
    """
    scores = _score_frame(df, "assign_segments")
    resolved = _resolve_rules(rules)
    conditions = []
    for rule in resolved.rules:
        match = np.ones(len(scores), dtype=bool)
        for dim in _DIMENSIONS:
            bounds = getattr(rule, dim)
            if bounds is not None:
                s = scores[f"{dim}_score"].to_numpy()
                match &= (s >= bounds[0]) & (s <= bounds[1])
        conditions.append(match)
    # Select category codes, not names: a text array costs ~80 bytes per customer.
    names = list(resolved.names)
    codes = np.select(
        conditions,
        [names.index(r.name) if r.name in names else -1 for r in resolved.rules],
        default=names.index(_FALLBACK) if _FALLBACK in names else -1,
    )
    cat = pd.Categorical.from_codes(codes.astype(np.int16), categories=pd.Index(names))
    return pd.Series(cat, index=df.index, name="segment")


def rename_segments(segment: pd.Series, mask: np.ndarray, name: str) -> pd.Categorical:
    """The segments of :func:`assign_segments` with the customers of ``mask`` renamed ``name``.

    The categorical ``pd.Categorical`` makes of the segment names as text (the distinct
    names present, sorted), built from the category codes: a text array would cost
    ~150 bytes per customer at its peak (0.7 GB at 5M customers). A missing segment is
    the category ``"nan"``, as the text would have it.
    """
    cat = pd.Categorical(segment)
    names = [str(c) for c in cat.categories]
    codes = np.asarray(cat.codes, dtype=np.int32)
    if (codes < 0).any():
        names.append("nan")
        codes = np.where(codes < 0, len(names) - 1, codes)
    if np.any(mask):
        if name not in names:
            names.append(name)
        codes = np.where(np.asarray(mask, dtype=bool), names.index(name), codes)
    present = sorted(np.unique(codes).tolist(), key=lambda k: names[k])
    remap = np.full(len(names), -1, dtype=np.int32)
    remap[present] = np.arange(len(present), dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index([names[k] for k in present]))
