"""Executors: how a log is cut into parts, scored and gathered into one retention list.

In memory (:mod:`~churnguard.execution.local`), in bounded memory on one machine
(:mod:`~churnguard.execution.partitioned`) and on Spark (:mod:`~churnguard.execution.spark`,
needs the ``spark`` extra). All share the request (:mod:`~churnguard.execution.request`),
the scoring core (:mod:`~churnguard.execution.core`) and the decision steps
(:func:`churnguard.decision.decide`).
"""

from churnguard.execution.local import ScoreResult, score_in_memory
from churnguard.execution.outputs import quarantine_path, write_quarantine
from churnguard.execution.request import ExecutionOptions, ScoringRequest

__all__ = [
    "ExecutionOptions",
    "ScoreResult",
    "ScoringRequest",
    "quarantine_path",
    "score_in_memory",
    "write_quarantine",
]
