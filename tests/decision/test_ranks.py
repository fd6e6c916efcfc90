"""The list's sort: ties by customer id, resolved only where the keys tie."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.decision._ranks import lexsort_ties_by_id


def _keys(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    # Few distinct values, so most rows tie; NaN, -0.0 and 0.0 among them.
    pool = np.array([0.0, -0.0, 0.25, 0.5, np.nan, 1.0])
    churn = rng.choice(pool, n)
    at_risk = rng.choice(pool, n)
    contact = rng.random(n) < 0.3
    key = np.where(contact, -rng.choice([1.0, 2.0, 3.0], n), 0.0)
    return churn, at_risk, key, contact


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_contact", [False, True])
def test_same_positions_as_one_lexsort_with_ids(seed: int, with_contact: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    churn, at_risk, key, contact = _keys(rng, n)
    ids = np.array([f"c{int(i):03d}" for i in rng.integers(0, 300, n)], dtype=object)
    keys = (-churn, -at_risk, key, ~contact) if with_contact else (-churn, -at_risk)
    got = lexsort_ties_by_id(keys, ids)
    assert np.array_equal(got, np.lexsort((ids, *keys)))


def test_without_ids_or_ties_it_is_the_plain_lexsort() -> None:
    rng = np.random.default_rng(3)
    churn, at_risk = rng.random(500), rng.random(500)
    ids = np.array([f"x{i}" for i in range(500)], dtype=object)[::-1].copy()
    assert np.array_equal(
        lexsort_ties_by_id((-churn, -at_risk), None), np.lexsort((-churn, -at_risk))
    )
    assert np.array_equal(
        lexsort_ties_by_id((-churn, -at_risk), ids), np.lexsort((-churn, -at_risk))
    )


def test_tied_rows_follow_ids_then_row_position() -> None:
    churn = np.array([0.5, 0.5, 0.9, 0.5, 0.5])
    at_risk = np.array([10.0, 10.0, 1.0, 10.0, 10.0])
    ids = np.array(["b", "a", "z", "a", "c"], dtype=object)
    # Value at risk first: the four tied rows by id ("a" twice: row 1 before row 3).
    assert lexsort_ties_by_id((-churn, -at_risk), ids).tolist() == [1, 3, 0, 4, 2]
