"""Point-in-time customer features and rolling training snapshots.

The scikit-learn estimator (:class:`FeatureBuilder`) and the snapshot helpers are
imported on first use: a command that only builds a feature table
(:func:`build_features`) then does not pay for importing scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from churnguard.features.compute import RFM_COLUMNS, TIME_UNITS, compute_features
from churnguard.features.table import FeaturesResult, build_features

if TYPE_CHECKING:
    from churnguard.features.builder import FeatureBuilder, rfm_summary
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
    "FeaturesResult",
    "build_features",
    "compute_features",
    "label_window",
    "make_labels",
    "make_snapshots",
    "rfm_summary",
    "snapshot_cutoffs",
]

_LAZY = {
    "FeatureBuilder": "churnguard.features.builder",
    "rfm_summary": "churnguard.features.builder",
    "label_window": "churnguard.features.snapshots",
    "make_labels": "churnguard.features.snapshots",
    "make_snapshots": "churnguard.features.snapshots",
    "snapshot_cutoffs": "churnguard.features.snapshots",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
