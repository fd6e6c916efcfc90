"""How large a partitioned scoring run is: partitions, workers, and whether to partition.

Why a module of its own: these rules are arithmetic on the log's row count and the
memory budget, measured once (:data:`BYTES_PER_ROW`, :data:`IN_MEMORY_BYTES_PER_ROW`),
and the pipeline asks one of them (:func:`needs_partitions`) before it decides to run
:func:`churnguard.execution.partitioned.score_parquet_partitioned` at all. See that
module's docstring for the partition count rule. The public names are re-exported by
:mod:`churnguard.execution.partitioned`.
"""

from __future__ import annotations

import math
import os

from churnguard._resources import cgroup_memory_free_gb
from churnguard.exceptions import ParameterError
from churnguard.execution._partition import default_workers

__all__ = [
    "BYTES_PER_ROW",
    "DEFAULT_MAX_MEMORY_GB",
    "IN_MEMORY_BYTES_PER_ROW",
    "IN_MEMORY_LIMIT_GB",
    "IN_MEMORY_SHARE",
    "PARALLEL_FROM_ROWS",
    "SCAN_BYTES_PER_ROW",
    "available_memory_gb",
    "choose_partitions",
    "choose_workers",
    "needs_partitions",
    "scan_fits",
]

#: Peak bytes per transaction row while one partition is cleaned and scored (measured).
BYTES_PER_ROW = 1_000
#: Memory budget used to choose the partition count when none is given.
DEFAULT_MAX_MEMORY_GB = 2.0
#: Logs from this many rows on are scored several partitions at a time by default.
PARALLEL_FROM_ROWS = 1_000_000
#: Peak bytes per transaction row of an in-memory scoring run (measured: ~3.5 GB for the
#: 10M-row log of benchmarks/synthetic.py).
IN_MEMORY_BYTES_PER_ROW = 350
#: An in-memory run may use at most this much (GB), and at most this share of the memory
#: available now; a larger Parquet log is scored partitioned without being asked.
IN_MEMORY_LIMIT_GB = 1.0
IN_MEMORY_SHARE = 0.25
#: Peak bytes per transaction row of one scan of the whole log and of its cleaned rows
#: while they are scored block by block (measured: ~0.75 GB above the imports and the
#: model for the 10M-row log of benchmarks/synthetic.py, rounded up).
SCAN_BYTES_PER_ROW = 80


def choose_partitions(rows: int, max_memory_gb: float | None = None, workers: int = 1) -> int:
    """Number of partitions that keeps ``workers`` partitions within half of ``max_memory_gb``.

    Parameters
    ----------
    rows : int
        Transaction rows in the log.
    max_memory_gb : float, optional
        Memory budget of the whole run; default :data:`DEFAULT_MAX_MEMORY_GB`.
    workers : int
        Partitions in memory at once (one per worker process); at least that many
        partitions are made so that every worker has one.
    """
    budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else float(max_memory_gb)
    if not budget > 0:
        raise ParameterError(
            f"max_memory_gb must be a positive number of GB; got {max_memory_gb!r}."
        )
    per_partition = max(budget * 1e9 / 2 / max(int(workers), 1) / BYTES_PER_ROW, 10_000)
    return max(1, int(workers), math.ceil(int(rows) / per_partition))


def available_memory_gb() -> float | None:
    """Memory the system could give this process now (GB), or None when unknown.

    The lower of the host's available memory and what is left under the control
    group's limit: in a container, the host's figure can be many times what the
    container may use before the out-of-memory killer stops it.
    """
    host = _host_available_gb()
    group = cgroup_memory_free_gb()
    if host is None or group is None:
        return group if host is None else host
    return min(host, group)


def _host_available_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def needs_partitions(rows: int, available_gb: float | None = None) -> bool:
    """Whether a log of ``rows`` rows is too large to score comfortably in memory.

    An in-memory run peaks at about :data:`IN_MEMORY_BYTES_PER_ROW` bytes per row; it
    is kept when that is within :data:`IN_MEMORY_LIMIT_GB` and within
    :data:`IN_MEMORY_SHARE` of ``available_gb`` (default: :func:`available_memory_gb`).
    """
    need = int(rows) * IN_MEMORY_BYTES_PER_ROW / 1e9
    if available_gb is None:
        available_gb = available_memory_gb()
    limit = IN_MEMORY_LIMIT_GB
    if available_gb is not None:
        limit = min(limit, available_gb * IN_MEMORY_SHARE)
    return need > limit


def choose_workers(rows: int, workers: int | None = None) -> int:
    """Partitions scored at once for a log of ``rows`` rows.

    ``workers`` when given; otherwise :func:`default_workers` from
    :data:`PARALLEL_FROM_ROWS` rows on and 1 below (small logs gain nothing
    from being cut into more partitions).
    """
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError(f"workers must be a whole number >= 1; got {workers!r}.")
        return workers
    return default_workers() if int(rows) >= PARALLEL_FROM_ROWS else 1


def scan_fits(
    rows: int, max_memory_gb: float | None = None, available_gb: float | None = None
) -> bool:
    """Whether a partitioned run may scan the whole log at once instead of splitting it.

    The scan's cleaned rows (about :data:`SCAN_BYTES_PER_ROW` bytes per row at the
    peak) are held while customer blocks are scored; that may take half of
    ``max_memory_gb`` (the other half is for the blocks in flight and the whole-base
    stage, as in :func:`choose_partitions`) and at most :data:`IN_MEMORY_SHARE` of
    ``available_gb`` (default: :func:`available_memory_gb`).
    """
    budget = DEFAULT_MAX_MEMORY_GB if max_memory_gb is None else float(max_memory_gb)
    limit = budget / 2
    if available_gb is None:
        available_gb = available_memory_gb()
    if available_gb is not None:
        limit = min(limit, available_gb * IN_MEMORY_SHARE)
    return int(rows) * SCAN_BYTES_PER_ROW / 1e9 <= limit
