"""Tests of churnguard.model._snapshots.in_order: threaded, yet ordered and bounded."""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from churnguard.clv._estimator_support import quiet_fit
from churnguard.model._snapshots import in_order

# The tasks warn on purpose (a fit's RuntimeWarning); the sequential reference lets it show.
pytestmark = pytest.mark.filterwarnings("ignore:inside a fit:RuntimeWarning")


def _items(n: int, produced: list[int] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield i, pd.DataFrame({"x": np.arange(3) + i})


def _task(i: int, frame: pd.DataFrame) -> pd.DataFrame:
    time.sleep(0.01 * ((7 * i) % 3))  # finish out of order
    warnings.warn("inside a fit", RuntimeWarning, stacklevel=1)
    return frame.assign(y=frame["x"] * 2, thread=threading.get_ident())


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order_and_equal_the_loop(workers: int) -> None:
    got = in_order(_task, _items(9), workers=workers)
    expected = [_task(*item) for item in _items(9)]
    assert len(got) == 9
    for a, b in zip(got, expected, strict=True):
        pd.testing.assert_frame_equal(a.drop(columns="thread"), b.drop(columns="thread"))


def test_two_workers_use_two_threads() -> None:
    got = in_order(_task, _items(8), workers=2)
    assert len({int(f["thread"].iloc[0]) for f in got}) == 2


def test_the_producer_is_not_drained_ahead_of_the_workers() -> None:
    produced: list[int] = []
    seen_at_start: list[int] = []

    def slow(i: int, frame: pd.DataFrame) -> pd.DataFrame:
        seen_at_start.append(len(produced))
        time.sleep(0.02)
        return frame

    in_order(slow, _items(12, produced), workers=2)
    # When item i starts, at most two more (one queued, one the next submit) exist.
    assert max(p - i for i, p in enumerate(sorted(seen_at_start))) <= 4


def test_an_error_is_raised_and_the_caller_filters_are_restored() -> None:
    def boom(i: int, frame: pd.DataFrame) -> pd.DataFrame:
        if i == 3:
            raise ValueError("cutoff 3 failed")
        return _task(i, frame)

    before = list(warnings.filters)
    with pytest.raises(ValueError, match="cutoff 3 failed"):
        in_order(boom, _items(8), workers=2)
    assert warnings.filters == before
    in_order(_task, _items(6), workers=2)
    assert warnings.filters == before


def test_nested_warning_contexts_and_lifetimes_fits_leave_nothing_behind() -> None:
    # Each task does what a snapshot fit does: a lifetimes fit (stdout swapped, warnings
    # silenced) and a block silencing a warning it then raises. Interleaved on two
    # threads, neither the warning nor the swapped stdout may escape.
    real = sys.stdout

    def fit_like(i: int, frame: pd.DataFrame) -> pd.DataFrame:
        with quiet_fit():
            print("lifetimes noise")
            time.sleep(0.004 * (i % 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            time.sleep(0.004 * ((i + 1) % 3))
            warnings.warn("degenerate snapshot fit", UserWarning, stacklevel=1)
        return frame

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            in_order(fit_like, _items(10), workers=2, quiet=(RuntimeWarning, UserWarning))
    assert sys.stdout is real
    assert not [w for w in caught if "degenerate snapshot fit" in str(w.message)]
