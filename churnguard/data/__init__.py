"""Reading transaction logs: formats, column mapping, validation and quarantine.

Also seeded simulated worlds with a known truth for backtests (:mod:`churnguard.data.simulate`).
"""

from churnguard.data.cdnow import cdnow_path, load_cdnow, write_cdnow
from churnguard.data.io import read_table, write_table
from churnguard.data.simulate import (
    WORLDS,
    World,
    aging_cohort,
    bgnbd_world,
    continuous_acquisition,
    no_churn,
    shifting_churn,
    write_world,
)
from churnguard.data.transactions import (
    ColumnMap,
    LoadedTransactions,
    clean_transactions,
    load_transactions,
)

__all__ = [
    "ColumnMap",
    "LoadedTransactions",
    "WORLDS",
    "World",
    "aging_cohort",
    "bgnbd_world",
    "cdnow_path",
    "clean_transactions",
    "continuous_acquisition",
    "load_cdnow",
    "load_transactions",
    "no_churn",
    "read_table",
    "shifting_churn",
    "write_cdnow",
    "write_table",
    "write_world",
]
