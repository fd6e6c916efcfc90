"""Row blocks: predict on a large frame a block of rows at a time.

LightGBM copies its input to a dense float64 matrix before predicting, so one call on
a million customers' features holds two extra copies of them (~550 MB for 34
features). Predictions are per row, so predicting block by block gives the same
numbers with a bounded copy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["BLOCK_ROWS", "in_blocks"]

#: Rows predicted at once (~55 MB of float64 features at 34 columns).
BLOCK_ROWS = 200_000


def in_blocks(
    predict: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame, rows: int = BLOCK_ROWS
) -> np.ndarray:
    """``predict(frame)``, computed on blocks of ``rows`` rows and concatenated."""
    if len(frame) <= rows:
        return np.asarray(predict(frame), dtype=float)
    parts = [
        np.asarray(predict(frame.iloc[start : start + rows]), dtype=float)
        for start in range(0, len(frame), rows)
    ]
    return np.concatenate(parts)
