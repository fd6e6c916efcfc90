"""The ``churnguard`` command line: a thin layer over :mod:`churnguard.pipeline`."""

from churnguard._resources import prefer_system_arrow_pool
from churnguard.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # Before pyarrow is imported: the commands allocate Arrow buffers of hundreds of MB.
    prefer_system_arrow_pool()
    app()
