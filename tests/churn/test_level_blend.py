"""The learned churn model's level, half-way to the prior's (churnguard.churn.level_blend)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import spearmanr

from churnguard.churn.level_blend import SCALE_LIMITS, blend_level, spread_scale


def _probabilities(seed: int, n: int = 2000, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(expit(rng.normal(0.8 + shift, 1.5, n)))


def test_the_learned_mean_moves_to_the_middle_and_the_order_stays() -> None:
    learned, prior = _probabilities(1), _probabilities(2, shift=0.6)
    blend = blend_level(learned, prior)
    moved = expit(logit(learned) + blend.offset)
    assert blend.learned_mean == pytest.approx(learned.mean())
    assert blend.prior_mean == pytest.approx(prior.mean())
    assert moved.mean() == pytest.approx((learned.mean() + prior.mean()) / 2, abs=1e-9)
    assert blend.offset > 0  # the prior said more churn
    assert spearmanr(moved, learned).statistic == pytest.approx(1.0)
    assert "learned" in blend.reason and "prior" in blend.reason


@pytest.mark.parametrize(("weight", "expected"), [(0.0, "learned"), (1.0, "prior")])
def test_the_weight_runs_from_the_learned_level_to_the_prior_level(
    weight: float, expected: str
) -> None:
    learned, prior = _probabilities(3), _probabilities(4, shift=-0.5)
    blend = blend_level(learned, prior, weight=weight)
    moved = expit(logit(learned) + blend.offset)
    target = learned if expected == "learned" else prior
    assert moved.mean() == pytest.approx(target.mean(), abs=1e-9)


def test_equal_levels_and_no_customer_move_nothing() -> None:
    learned = _probabilities(5)
    assert blend_level(learned, learned[::-1].copy()).offset == pytest.approx(0.0, abs=1e-9)
    assert blend_level(np.array([]), np.array([])).offset == 0.0


def test_the_spread_follows_half_the_priors_projected_change() -> None:
    learned = _probabilities(6)
    prior = _probabilities(7)
    s_learned, s_prior = float(np.std(learned)), float(np.std(prior))
    # The prior was 1.5 times less spread on the calibration rows than it is at the end;
    # the learned model as spread there as at the end: half of the 1.5 is taken.
    assert spread_scale(learned, prior, (s_learned, s_prior / 1.5)) == pytest.approx(1.25)
    # Both grew alike from the calibration rows: the learned model already follows.
    assert spread_scale(learned, prior, (s_learned / 1.2, s_prior / 1.2)) == pytest.approx(1.0)
    assert spread_scale(learned, prior, (s_learned, s_prior * 1.5), weight=1.0) == pytest.approx(
        1 / 1.5
    )
    # Bounded, and nothing to go on keeps the spread.
    assert spread_scale(learned, prior, (s_learned, s_prior / 10)) == SCALE_LIMITS[1]
    assert spread_scale(learned, prior, None) == 1.0
    assert spread_scale(learned, prior, (0.0, s_prior)) == 1.0
    assert spread_scale(learned, prior, (float("nan"), s_prior)) == 1.0


def test_a_scaled_blend_keeps_the_order_and_the_blended_mean() -> None:
    learned, prior = _probabilities(8), _probabilities(9, shift=0.4)
    spread = (float(np.std(learned)), float(np.std(prior)) / 1.4)
    blend = blend_level(learned, prior, calibration_spread=spread)
    assert blend.scale == pytest.approx(1.2)
    assert blend.calibration_spread == spread
    moved = expit(blend.scale * logit(learned) + blend.offset)
    assert moved.mean() == pytest.approx((learned.mean() + prior.mean()) / 2, abs=1e-9)
    assert np.std(logit(moved)) == pytest.approx(1.2 * np.std(logit(learned)))
    assert spearmanr(moved, learned).statistic == pytest.approx(1.0)
    assert "scaled by 1.20" in blend.reason
    assert blend_level(learned, prior).scale == 1.0  # no calibration spreads: kept
