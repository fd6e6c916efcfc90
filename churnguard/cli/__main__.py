"""``python -m churnguard.cli``."""

from churnguard.cli import main

main()
