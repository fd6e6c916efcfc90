"""Reading transaction logs: formats, column mapping, validation and quarantine."""

from churnguard.data.cdnow import cdnow_path, load_cdnow, write_cdnow
from churnguard.data.io import read_table, write_table
from churnguard.data.transactions import (
    ColumnMap,
    LoadedTransactions,
    clean_transactions,
    load_transactions,
)

__all__ = [
    "ColumnMap",
    "LoadedTransactions",
    "cdnow_path",
    "clean_transactions",
    "load_cdnow",
    "load_transactions",
    "read_table",
    "write_cdnow",
    "write_table",
]
