"""The cores and memory this process may use, container limits included.

Why: ``os.cpu_count()`` and ``/proc/meminfo`` describe the host. A batch job in a
container (Docker, Kubernetes, a systemd slice) limited to 2 cores and 4 GB on a
64-core, 256-GB host would start 64 threads that the kernel throttles to 2 cores'
worth of time, and would score a log in memory that its 4 GB cannot hold: the
out-of-memory killer ends it without a message. The limits are read from the
control groups (v2 ``cpu.max``/``memory.max``, v1 ``cpu.cfs_quota_us``/
``memory.limit_in_bytes``) and the CPU affinity; ``CHURNGUARD_THREADS`` caps the
threads by hand (e.g. for a job sharing a machine with others).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["THREADS_ENV", "cgroup_cpu_limit", "cgroup_memory_free_gb", "cpu_budget"]

#: Environment variable that caps the threads churnguard starts (a positive integer).
THREADS_ENV = "CHURNGUARD_THREADS"
_CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as a huge number (the largest page-aligned int64).
_V1_UNLIMITED = 1 << 60
_REPORTED: set[str] = set()  # bad CHURNGUARD_THREADS values already reported


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """Cores allowed by the CPU quota of this process's control group (None: no quota).

    ``root`` is the cgroup mount (a parameter so that tests can build one).
    """
    v2 = _read(root / "cpu.max")  # "max 100000" or "200000 100000"
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                return int(parts[0]) / int(parts[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    quota = _read(root / "cpu" / "cpu.cfs_quota_us")
    period = _read(root / "cpu" / "cpu.cfs_period_us")
    try:
        if quota is not None and period is not None and int(quota) > 0:
            return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        pass
    return None


def cpu_budget(cap: int | None = None, root: Path = _CGROUP) -> int:
    """Threads worth starting: CPU affinity, cgroup quota and ``CHURNGUARD_THREADS``.

    A fractional quota rounds up (1.5 cores: 2 threads, each busy part of the time).
    ``cap`` bounds the result further (pools whose gain stops at a few threads).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    wanted = os.environ.get(THREADS_ENV, "").strip()
    if wanted:
        try:
            n = min(n, max(1, int(wanted)))
        except ValueError:
            # A typo must not stop a nightly job: say so once, use what the machine allows.
            if wanted not in _REPORTED:
                _REPORTED.add(wanted)
                log.warning("%s=%r is not a whole number of threads; ignored", THREADS_ENV, wanted)
    if cap is not None:
        n = min(n, int(cap))
    return max(1, n)


def cgroup_memory_free_gb(root: Path = _CGROUP) -> float | None:
    """Memory left under this process's control-group limit (GB; None: no limit).

    The group's usage counts the page cache of files read; its inactive part is
    reclaimed before the group runs out, so it counts as free (as ``docker stats`` does).
    """
    limit = _read(root / "memory.max")
    if limit is not None:
        used, stat, inactive = root / "memory.current", root / "memory.stat", "inactive_file"
    else:
        v1 = root / "memory"
        limit = _read(v1 / "memory.limit_in_bytes")
        used, stat, inactive = (
            v1 / "memory.usage_in_bytes",
            v1 / "memory.stat",
            "total_inactive_file",
        )
    if limit is None or limit == "max":
        return None
    try:
        cap = int(limit)
        if cap >= _V1_UNLIMITED:
            return None
        usage = int(_read(used) or 0)
    except ValueError:
        return None
    for line in (_read(stat) or "").splitlines():
        key, _, value = line.partition(" ")
        if key == inactive and value.strip().isdigit():
            usage -= int(value)
            break
    return max(0, cap - max(usage, 0)) / 1e9
