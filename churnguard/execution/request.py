"""A scoring request: every option of a scoring run, checked before any data is read.

A typo in a playbook, a segment rule file or an output name must surface in the first
second of a run, not after minutes of partitioned scoring. :meth:`ScoringRequest.build`
parses the playbook and the segment rules, checks the limits and the output paths, and
is then shared unchanged by every executor (in memory, partitioned, Spark), so every
option means the same in every mode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churnguard._dates import to_date
from churnguard.data import ColumnMap
from churnguard.data.io import table_format
from churnguard.decision.playbook import Playbook
from churnguard.decision.segments import SegmentRules, load_segment_rules
from churnguard.exceptions import InputDataError
from churnguard.model.estimator import DEFAULT_REASONS_LIMIT

__all__ = ["DEFAULT_REASONS_LIMIT", "ExecutionOptions", "ScoringRequest"]


def _currency(text: Any) -> str:
    """A currency prefix for money amounts: a symbol or a code (``$``, ``EUR ``)."""
    if not isinstance(text, str) or len(text) > 8 or any(c in text for c in "\n\r\t,;"):
        raise InputDataError(
            f"--currency must be a short symbol or code such as $ or EUR; got {text!r}."
        )
    return text + " " if len(text) > 1 and text.isalpha() else text


def _whole(value: Any, name: str, *, low: int, option: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputDataError(
            f"{name} must be a whole number >= {low}; got {value!r}. Fix {option}."
        )
    return int(value)


@dataclass(frozen=True)
class ExecutionOptions:
    """How the customers are split and gathered (not what is decided about them).

    Parameters
    ----------
    partitions : int, optional
        Score a Parquet log in this many customer partitions.
    max_memory_gb : float, optional
        Memory budget of a partitioned run (picks the partition count).
    workers : int, optional
        Partitions scored at once.
    """

    partitions: int | None = None
    max_memory_gb: float | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        _whole(self.partitions, "partitions", low=1, option="--partitions")
        _whole(self.workers, "workers", low=1, option="--workers")
        if self.max_memory_gb is not None and not (
            isinstance(self.max_memory_gb, int | float)
            and math.isfinite(float(self.max_memory_gb))
            and float(self.max_memory_gb) > 0
        ):
            raise InputDataError(
                f"max_memory_gb must be a positive number of GB; got {self.max_memory_gb!r}. "
                "Fix --max-memory."
            )

    @property
    def partitioned(self) -> bool:
        """Whether any option asks for partitioned execution."""
        return any(v is not None for v in (self.partitions, self.max_memory_gb, self.workers))


@dataclass(frozen=True)
class ScoringRequest:
    """Everything a scoring run decides with, loaded and validated.

    Build it with :meth:`build`; the fields are then plain, checked values.
    """

    as_of: Any = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    playbook: Playbook = field(default_factory=Playbook.load)
    segment_rules: SegmentRules = field(default_factory=load_segment_rules)
    tier_weights: Mapping[str, float] | None = None
    capacity: int | None = None
    budget: float | None = None
    reasons_limit: int | None = DEFAULT_REASONS_LIMIT
    out: Path | None = None
    report: Path | None = None
    top: int = 10
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)
    currency: str = ""
    recompute_reference: bool = False

    @classmethod
    def build(
        cls,
        *,
        as_of: Any = None,
        columns: ColumnMap | None = None,
        playbook: Playbook | str | os.PathLike[str] | None = None,
        segment_rules: SegmentRules | str | os.PathLike[str] | None = None,
        tier_weights: Mapping[str, float] | None = None,
        capacity: int | None = None,
        budget: float | None = None,
        reasons_limit: int | None = DEFAULT_REASONS_LIMIT,
        out: str | os.PathLike[str] | None = None,
        report: str | os.PathLike[str] | None = None,
        top: int = 10,
        partitions: int | None = None,
        max_memory_gb: float | None = None,
        workers: int | None = None,
        currency: str = "",
        recompute_reference: bool = False,
    ) -> ScoringRequest:
        """Load and check every option; raise before any data is read.

        Raises
        ------
        InputDataError
            A bad limit, date, output extension or option value (the message names
            the option).
        FileNotFoundError, ValueError, TypeError
            The playbook or segment rule file is missing or invalid (the message names
            the file and the table).
        """
        day = None
        if as_of is not None and str(as_of) != "":
            try:
                day = to_date(as_of)
            except ValueError:
                raise InputDataError(
                    f"--as-of {as_of!r} is not a date; expected YYYY-MM-DD, e.g. 2024-03-31."
                ) from None
        book = playbook if isinstance(playbook, Playbook) else Playbook.load(playbook)
        rules = (
            segment_rules
            if isinstance(segment_rules, SegmentRules)
            else load_segment_rules(segment_rules)
        )
        cap = _whole(capacity, "capacity", low=0, option="--capacity")
        if budget is not None and not (
            isinstance(budget, int | float) and math.isfinite(float(budget)) and budget >= 0
        ):
            raise InputDataError(f"budget must be a number >= 0; got {budget!r}. Fix --budget.")
        limit = _whole(reasons_limit, "reasons_limit", low=0, option="reasons_limit")
        rows = _whole(top, "top", low=0, option="--top")
        out_path = Path(out) if out is not None else None
        if out_path is not None:
            table_format(out_path, role="output")
        report_path = Path(report) if report is not None else None
        if report_path is not None and report_path.suffix.lower() not in (".html", ".htm"):
            raise InputDataError(
                f"--report '{report_path}' must be an .html file; the report is one HTML page."
            )
        return cls(
            as_of=day,
            columns=columns or ColumnMap(),
            playbook=book,
            segment_rules=rules,
            tier_weights=tier_weights,
            capacity=cap,
            budget=None if budget is None else float(budget),
            reasons_limit=limit,
            out=out_path,
            report=report_path,
            top=10 if rows is None else rows,
            execution=ExecutionOptions(partitions, max_memory_gb, workers),
            currency=_currency(currency),
            recompute_reference=bool(recompute_reference),
        )

    def decision_options(self, model: Any = None) -> dict[str, Any]:
        """Keyword arguments of :func:`churnguard.decision.retention.decide`.

        The reference base is the model's (learned at training) unless the request
        asks to measure tiers, risk bands and RFM scores on the scored customers.
        """
        reference = None
        if model is not None and not self.recompute_reference:
            reference = getattr(model, "decision_reference_", None)
        return {
            "reference": reference,
            "playbook": self.playbook,
            "segment_rules": self.segment_rules,
            "tier_weights": self.tier_weights,
            "capacity": self.capacity,
            "budget": self.budget,
        }
