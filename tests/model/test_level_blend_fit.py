"""A learned churn model's level is blended with the prior's at the end of the log."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from churnguard.churn.level_blend import SCALE_LIMITS, LevelBlend
from churnguard.model import ChurnGuardModel

COMMON = {
    "horizon_days": 91,
    "max_snapshots": 6,
    "value_model": "bgnbd",
    "value_choice": "btyd",
    "classifier_params": {"lgbm_params": {"n_estimators": 30}},
}


@pytest.fixture(scope="module")
def plain(cdnow_sample_tx: pd.DataFrame) -> ChurnGuardModel:
    return ChurnGuardModel(churn_model="plain", **COMMON).fit(cdnow_sample_tx)


def test_the_base_at_the_end_scores_at_the_mean_of_the_two_levels(
    plain: ChurnGuardModel, cdnow_sample_tx: pd.DataFrame
) -> None:
    blend = plain.level_blend_
    assert blend.offset != 0.0 and blend.learned_mean is not None and blend.prior_mean is not None
    frame = plain.features(cdnow_sample_tx)
    blended = plain.churn_probability(frame).mean()
    assert blended == pytest.approx((blend.learned_mean + blend.prior_mean) / 2, abs=1e-6)
    unblended = copy.copy(plain)
    unblended.level_blend_ = LevelBlend()  # as a model saved before the blend scores
    assert unblended.churn_probability(frame).mean() == pytest.approx(blend.learned_mean)
    again = plain.measure_level_blend(frame)  # the stored calibration spreads are used
    assert (again.offset, again.scale) == pytest.approx((blend.offset, blend.scale))
    # The spread was measured against the calibration snapshots, within its bounds.
    assert blend.calibration_spread is not None and min(blend.calibration_spread) > 0
    assert SCALE_LIMITS[0] <= blend.scale <= SCALE_LIMITS[1]
    assert any(note.startswith("churn level: mean churn") for note in plain.report_.notes)


@pytest.mark.parametrize("settings", [{"churn_model": "prior"}, {"level_correction": False}])
def test_no_blend_for_the_prior_or_without_level_correction(
    cdnow_sample_tx: pd.DataFrame, settings: dict[str, object]
) -> None:
    params = {"churn_model": "plain", **COMMON, **settings}
    model = ChurnGuardModel(**params).fit(cdnow_sample_tx)  # type: ignore[arg-type]
    assert model.level_blend_.offset == 0.0
    assert model.level_blend_.reason == "not applied"
