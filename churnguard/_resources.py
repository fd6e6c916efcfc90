"""The cores and memory this process may use, container limits included.

Why: ``os.cpu_count()`` and ``/proc/meminfo`` describe the host. A batch job in a
container (Docker, Kubernetes, a systemd slice) limited to 2 cores and 4 GB on a
64-core, 256-GB host would start 64 threads that the kernel throttles to 2 cores'
worth of time, and would score a log in memory that its 4 GB cannot hold: the
out-of-memory killer ends it without a message. The limits are read from the
control groups (v2 ``cpu.max``/``memory.max``, v1 ``cpu.cfs_quota_us``/
``memory.limit_in_bytes``) of the process's own group and every group above it (a limit
set on a parent slice binds its children), and from the CPU affinity;
``CHURNGUARD_THREADS`` caps the threads by hand (e.g. for a job sharing a machine).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "ARROW_POOL_ENV",
    "NUMPY_HUGEPAGE_ENV",
    "OPENMP_SPIN",
    "OPENMP_SPIN_ENV",
    "OPENMP_WAIT_ENV",
    "THREADS_ENV",
    "avoid_hugepage_stalls",
    "cgroup_cpu_limit",
    "cgroup_memory_free_gb",
    "cpu_budget",
    "limit_openmp_spinning",
    "prefer_system_arrow_pool",
    "thread_count",
]

#: Environment variable that caps the threads churnguard starts (a positive integer).
THREADS_ENV = "CHURNGUARD_THREADS"
#: Busy-wait iterations of an idle OpenMP thread (GNU libgomp's ``GOMP_SPINCOUNT``) that
#: the command line sets when the user set no wait policy: see :func:`limit_openmp_spinning`.
OPENMP_SPIN = 1000
#: GNU libgomp's spin count and OpenMP's wait policy, read when the runtime is loaded.
OPENMP_SPIN_ENV, OPENMP_WAIT_ENV = "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"
#: Arrow's variable naming the allocator of its default memory pool, read at import.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
#: NumPy's switch for asking the kernel for transparent huge pages, read at import.
NUMPY_HUGEPAGE_ENV = "NUMPY_MADVISE_HUGEPAGE"
_CGROUP = Path("/sys/fs/cgroup")
_SELF = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as a huge number (the largest page-aligned int64).
_V1_UNLIMITED = 1 << 60
_REPORTED: set[str] = set()  # bad CHURNGUARD_THREADS values already reported
# A malformed file must never stop a job: any of these reads as "no limit".
_BAD_NUMBER = (ValueError, ZeroDivisionError, OverflowError)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _groups(mount: Path, controller: str | None, self_file: Path) -> list[Path]:
    """The process's group under ``mount`` and each group above it, innermost first.

    ``controller`` names the v1 hierarchy (``cpu``, ``memory``); None reads the v2 line
    (``0::/path``). A path not visible here (a container without its own cgroup
    namespace) leaves only the mount itself.
    """
    own = ""
    for line in (_read(self_file) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if (controller is None and parts[0] == "0" and not parts[1]) or (
            controller is not None and controller in parts[1].split(",")
        ):
            own = parts[2]
            break
    here = mount / own.strip("/") if own.strip("/") else mount
    if not here.is_dir():
        here = mount
    out = [here]
    while out[-1] != mount and mount in out[-1].parents:
        out.append(out[-1].parent)
    return out


def _lowest(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _v2_quota(group: Path) -> float | None:
    text = _read(group / "cpu.max")  # "max 100000" or "200000 100000"
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
        return quota / period if quota > 0 and period > 0 else None
    except _BAD_NUMBER:
        return None


def _v1_quota(group: Path) -> float | None:
    try:
        quota = int(_read(group / "cpu.cfs_quota_us") or "-1")
        period = int(_read(group / "cpu.cfs_period_us") or "0")
        return quota / period if quota > 0 and period > 0 else None
    except _BAD_NUMBER:
        return None


@functools.cache
def _cpu_limit(root: Path, self_file: Path) -> float | None:
    # Read once per process: pools ask at every call and a group's quota is set before
    # its processes start (a later change is picked up by the next run).
    return cgroup_cpu_limit(root, self_file)


def cgroup_cpu_limit(root: Path = _CGROUP, self_file: Path = _SELF) -> float | None:
    """Cores allowed by the tightest CPU quota over this process's groups (None: none).

    ``root`` is the cgroup mount and ``self_file`` the process's ``/proc/self/cgroup``
    (parameters so that tests can build both).
    """
    if (root / "cgroup.controllers").exists() or (root / "cpu.max").exists():  # v2
        return _lowest([_v2_quota(g) for g in _groups(root, None, self_file)])
    return _lowest([_v1_quota(g) for g in _groups(root / "cpu", "cpu", self_file)])


def cpu_budget(cap: int | None = None, root: Path = _CGROUP, self_file: Path = _SELF) -> int:
    """Threads worth starting: CPU affinity, cgroup quota and ``CHURNGUARD_THREADS``.

    A fractional quota rounds up (1.5 cores: 2 threads, each busy part of the time).
    ``cap`` bounds the result further (pools whose gain stops at a few threads).
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cpu_limit(root, self_file)
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


def thread_count(requested: int | None = None) -> int:
    """``requested`` threads when given, else :func:`cpu_budget`: always a number.

    For libraries whose own default is "every core" (LightGBM's ``-1`` counts them
    through joblib, which sees affinity and cgroups but not ``CHURNGUARD_THREADS``).
    """
    return cpu_budget() if requested is None else int(requested)


def _free(
    group: Path, limit_file: str, used_file: str, stat_file: str, inactive: str
) -> float | None:
    """Bytes left under one group's memory limit (None: no limit or unreadable)."""
    limit = _read(group / limit_file)
    if limit is None or limit == "max":
        return None
    try:
        cap = int(limit)
        if cap >= _V1_UNLIMITED:
            return None
        usage = int(_read(group / used_file) or 0)
    except _BAD_NUMBER:
        return None
    for line in (_read(group / stat_file) or "").splitlines():
        key, _, value = line.partition(" ")
        if key == inactive and value.strip().isdigit():
            usage -= int(value)
            break
    return float(max(0, cap - max(usage, 0)))


def cgroup_memory_free_gb(root: Path = _CGROUP, self_file: Path = _SELF) -> float | None:
    """Memory left under the tightest control-group limit over this process's groups.

    GB; None when no group has a limit. A group's usage counts the page cache of files
    read; its inactive part is reclaimed before the group runs out, so it counts as
    free (as ``docker stats`` does).
    """
    free: Callable[[Path], float | None]
    if (root / "cgroup.controllers").exists() or (root / "memory.max").exists():  # v2
        groups = _groups(root, None, self_file)

        def free(g: Path) -> float | None:
            return _free(g, "memory.max", "memory.current", "memory.stat", "inactive_file")

    else:
        groups = _groups(root / "memory", "memory", self_file)

        def free(g: Path) -> float | None:
            return _free(
                g,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.stat",
                "total_inactive_file",
            )

    left = _lowest([free(g) for g in groups])
    return None if left is None else left / 1e9


def prefer_system_arrow_pool() -> bool:
    """Make the C library's allocator Arrow's default, unless the user chose one.

    Call before ``pyarrow`` is first imported (the command line's entry point does, for
    ``features`` and ``score``; see :data:`churnguard.cli.SYSTEM_POOL_COMMANDS`): Arrow
    reads :data:`ARROW_POOL_ENV` once, at import, for the whole process (the partition
    workers of ``score`` are threads of it). Returns whether the variable was set here.

    Why: Arrow's default allocator, mimalloc, hands freed memory back to the operating
    system and takes it again page by page. The scan and the feature engine allocate and
    free Arrow buffers of hundreds of MB, and on the benchmark machine that cost more
    system time than the work itself (``features`` at 1M customers: 3.4 s of system time
    against 1.1 s, and a 1.5x longer wall time; figures in ``benchmarks/README.md``,
    thirteenth session). The system allocator gives the same tables with less memory at
    peak. A command that allocates the same large tables again and again (``train``, one
    set per snapshot) gains from mimalloc's reuse instead: 1.07x slower without it.

    A value the user set (``mimalloc``, ``jemalloc``) is kept; an empty one counts as
    unset, as pyarrow itself would otherwise fall back to mimalloc.
    """
    return _default_env(ARROW_POOL_ENV, "system")


def limit_openmp_spinning() -> bool:
    """Let idle OpenMP threads sleep soon, unless the user chose a wait policy.

    Sets ``GOMP_SPINCOUNT`` to :data:`OPENMP_SPIN` when neither it nor
    ``OMP_WAIT_POLICY`` is set. Call before LightGBM or scikit-learn is imported (GNU
    libgomp reads it once, when loaded); the command line's entry point does. Returns
    whether the variable was set here.

    Why: by default an idle libgomp thread spins 300,000 times before it sleeps, which
    costs nothing while one job has the cores to itself. Two jobs sharing them spend their
    turns spinning instead: two ``churnguard demo`` runs started together on the 2-core
    benchmark machine took 240 s each against 34 s alone (7x). With 1,000 spins they
    took 54 s each (sharing two cores makes two jobs at most 2x slower), and alone the
    same time as before (``benchmarks/README.md``, thirteenth session). A scheduled
    host often runs several jobs at once. ``OMP_WAIT_POLICY=PASSIVE`` also ended the
    collapse (52 s) but cost about 6% alone.
    """
    return _default_env(OPENMP_SPIN_ENV, str(OPENMP_SPIN), unless=(OPENMP_WAIT_ENV,))


def avoid_hugepage_stalls() -> bool:
    """Keep NumPy from asking for huge pages, unless the user chose.

    Sets :data:`NUMPY_HUGEPAGE_ENV` to ``0`` when it has no value. Call before ``numpy``
    is first imported (it reads the variable once, at import); the command line's entry
    point does, for every command. Returns whether the variable was set here.

    Why: on Linux NumPy marks every array of 4 MB or more ``MADV_HUGEPAGE``. Under the
    kernel's common transparent-huge-page setting (``defrag`` = ``madvise``) a page fault
    in such memory waits while the kernel compacts memory to find a free 2 MB page, and
    the mark stays on the memory after NumPy frees it (numpy/numpy#31590). Commands that
    build arrays of hundreds of MB spend that wait as system time: on the benchmark
    machine, whole-process pairs at 1M customers gave ``features`` 0.69x the wall time
    (system time 1.4 s against 3.1 s), ``score`` 0.93x and ``train`` 0.88x, with the
    same outputs (``benchmarks/README.md``, fourteenth session). Where huge pages are
    always on or off, the mark changes nothing.

    An empty value counts as unset (NumPy would fail to import with it).
    """
    return _default_env(NUMPY_HUGEPAGE_ENV, "0")


def _default_env(name: str, value: str, *, unless: tuple[str, ...] = ()) -> bool:
    """Set ``name`` to ``value`` unless it or one of ``unless`` has a (non-empty) value."""
    if any(os.environ.get(n) for n in (name, *unless)):
        return False
    os.environ[name] = value
    return True
