"""The ``churnguard`` command line: a thin layer over :mod:`churnguard.pipeline`."""

from churnguard.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
