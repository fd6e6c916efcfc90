"""The ``churnguard`` command line: a thin layer over :mod:`churnguard.pipeline`."""

import sys

from churnguard._resources import (
    avoid_hugepage_stalls,
    limit_openmp_spinning,
    prefer_system_arrow_pool,
)
from churnguard.cli.app import app

__all__ = ["COMMANDS", "SYSTEM_POOL_COMMANDS", "app", "main"]


#: Commands that read a large log once and hand it on (see
#: :func:`churnguard._resources.prefer_system_arrow_pool`). ``train``, which builds its
#: Arrow tables again for every snapshot, was 1.07x slower with the system allocator and
#: keeps Arrow's default.
SYSTEM_POOL_COMMANDS = frozenset({"features", "score"})
#: Every command of :data:`app` (a test keeps the two in step).
COMMANDS = frozenset(
    {"features", "train", "score", "evaluate", "backtest", "report", "demo", "init-config"}
)


def main() -> None:
    """Console-script entry point."""
    # The first word that names a command is the command: options before it take no
    # value that is a command's name.
    command = next((a for a in sys.argv[1:] if a in COMMANDS), None)
    # Before LightGBM and scikit-learn load OpenMP: jobs that share a machine.
    limit_openmp_spinning()
    # Before NumPy is imported: page faults that wait for memory compaction.
    avoid_hugepage_stalls()
    if command in SYSTEM_POOL_COMMANDS:
        # Before pyarrow is imported: Arrow reads its allocator's name once.
        prefer_system_arrow_pool()
    app()
