"""Point-in-time customer features and rolling training snapshots."""

from churnguard.features.builder import RFM_COLUMNS, TIME_UNITS, FeatureBuilder, rfm_summary
from churnguard.features.snapshots import (
    label_window,
    make_labels,
    make_snapshots,
    snapshot_cutoffs,
)

__all__ = [
    "RFM_COLUMNS",
    "TIME_UNITS",
    "FeatureBuilder",
    "label_window",
    "make_labels",
    "make_snapshots",
    "rfm_summary",
    "snapshot_cutoffs",
]
