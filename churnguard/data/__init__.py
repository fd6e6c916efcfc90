"""Reading transaction logs: formats, column mapping, validation and quarantine.

:func:`scan_transactions` validates and cleans a log in a DuckDB scan (Arrow out,
counts for every rule); :func:`load_transactions` and :func:`clean_transactions`
are its pandas face.

Also seeded simulated worlds with a known truth for backtests (:mod:`churnguard.data.simulate`).
"""

from churnguard.data.cdnow import cdnow_path, load_cdnow, write_cdnow
from churnguard.data.columns import (
    DEFAULT_DATE_FLOOR,
    DEFAULT_MAX_AMOUNT,
    OPTIONAL_COLUMNS,
    ColumnMap,
    resolve_columns,
)
from churnguard.data.io import cleanup_stale, read_table, write_table
from churnguard.data.scan import DataQualityWarning, ScannedTransactions, scan_transactions
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
    LoadedTransactions,
    clean_transactions,
    duplicate_rows_note,
    load_transactions,
)

__all__ = [
    "DEFAULT_DATE_FLOOR",
    "DEFAULT_MAX_AMOUNT",
    "OPTIONAL_COLUMNS",
    "ColumnMap",
    "DataQualityWarning",
    "LoadedTransactions",
    "ScannedTransactions",
    "WORLDS",
    "World",
    "aging_cohort",
    "bgnbd_world",
    "cdnow_path",
    "clean_transactions",
    "cleanup_stale",
    "continuous_acquisition",
    "duplicate_rows_note",
    "load_cdnow",
    "load_transactions",
    "no_churn",
    "read_table",
    "resolve_columns",
    "scan_transactions",
    "shifting_churn",
    "write_cdnow",
    "write_table",
    "write_world",
]
