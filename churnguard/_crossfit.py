"""Customer cross-fitting shared by the learned churn and value models.

Rolling snapshots repeat the same customers with nearly the same label windows, so a
model early-stopped or calibrated on rows of customers it trained on grades its own
memory. Cross-fitting splits *customers* into folds: fold ``k``'s trees learn from
the other folds' rows and are judged on fold ``k``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["customer_folds"]


def customer_folds(groups: Any, k: int) -> np.ndarray:
    """Stable fold of each row's group (customer id): same customer, same fold.

    pandas' hash of the id text has a fixed key, so folds do not change between
    runs, machines or row orders.
    """
    ids = pd.Series(np.asarray(groups, dtype=object)).astype(str)
    hashes = pd.util.hash_pandas_object(ids, index=False).to_numpy()
    return (hashes % np.uint64(k)).astype(int)
