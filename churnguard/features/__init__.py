"""Point-in-time customer features and rolling training snapshots."""

from churnguard.features.builder import RFM_COLUMNS, TIME_UNITS, FeatureBuilder, rfm_summary
from churnguard.features.snapshots import (
    label_window,
    make_labels,
    make_snapshots,
    snapshot_cutoffs,
)
from churnguard.features.table import FeaturesResult, build_features

__all__ = [
    "RFM_COLUMNS",
    "TIME_UNITS",
    "FeatureBuilder",
    "FeaturesResult",
    "build_features",
    "label_window",
    "make_labels",
    "make_snapshots",
    "rfm_summary",
    "snapshot_cutoffs",
]
