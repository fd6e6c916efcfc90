"""Tests of the churnguard.clv public surface."""

from __future__ import annotations

import churnguard.clv as clv


def test_all_names_are_exported_and_importable() -> None:
    assert sorted(clv.__all__) == clv.__all__
    for name in clv.__all__:
        assert getattr(clv, name) is not None
    assert {"PurchaseModel", "SpendModel", "compare_models", "value_frame"} <= set(clv.__all__)
