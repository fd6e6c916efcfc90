"""Block-wise prediction gives the numbers of one call, in row order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.model._blocks import in_blocks


def test_blocks_concatenate_in_row_order() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=1001), "b": rng.normal(size=1001)})
    seen: list[int] = []

    def predict(rows: pd.DataFrame) -> np.ndarray:
        seen.append(len(rows))
        return rows["a"].to_numpy() * 2 + rows["b"].to_numpy()

    got = in_blocks(predict, frame, rows=300)
    np.testing.assert_array_equal(got, frame["a"].to_numpy() * 2 + frame["b"].to_numpy())
    assert seen == [300, 300, 300, 101]  # the blocks, not one call


def test_small_frames_are_one_call() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    calls: list[int] = []
    out = in_blocks(lambda rows: calls.append(len(rows)) or rows["a"].to_numpy(), frame, rows=5)
    np.testing.assert_array_equal(out, [1.0, 2.0])
    assert calls == [2]
