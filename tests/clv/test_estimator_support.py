"""The shared fit fallback: churnguard's optimiser first, lifetimes' when it fails."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from lifetimes.utils import ConvergenceError

from churnguard.clv._estimator_support import own_then_lifetimes
from churnguard.clv._fitting_optimizer import FitFailed


def _fails(error: Exception) -> Callable[[float], str]:
    def fit(pen: float) -> str:
        raise error

    return fit


def test_own_fit_is_used_when_it_works() -> None:
    called: list[float] = []
    fit = own_then_lifetimes(lambda pen: f"own {pen}", lambda pen: called.append(pen) or "x")
    assert fit(0.1) == "own 0.1"
    assert called == []  # lifetimes is not even tried


def test_lifetimes_takes_over_when_the_own_fit_fails() -> None:
    fit = own_then_lifetimes(_fails(FitFailed("bad own")), lambda pen: f"lifetimes {pen}")
    assert fit(0.0) == "lifetimes 0.0"


@pytest.mark.parametrize(
    "theirs",
    [ConvergenceError("no convergence"), np.linalg.LinAlgError("singular"), FitFailed("nan")],
)
def test_both_failures_are_named_in_one_fit_failed(theirs: Exception) -> None:
    fit = own_then_lifetimes(_fails(FitFailed("bad own")), _fails(theirs))
    with pytest.raises(FitFailed, match=f"bad own; lifetimes: {theirs}"):
        fit(0.0)


def test_a_bug_in_the_own_fit_is_not_hidden() -> None:
    fit = own_then_lifetimes(_fails(KeyError("bug")), lambda pen: "lifetimes")
    with pytest.raises(KeyError):
        fit(0.0)
