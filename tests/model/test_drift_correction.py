"""The drift correction inside ChurnGuardModel: fitted when drift is flagged, used in scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.churn.hazard_shift import HazardShift
from churnguard.churn.metrics import expected_calibration_error
from churnguard.data import shifting_churn
from churnguard.model import ChurnGuardModel
from churnguard.model.bundle import model_metadata

COMMON = {
    "horizon_days": 91,
    "value_model": "pareto",
    "churn_model": "prior",
    "value_choice": "btyd",
}


@pytest.mark.slow
def test_a_churn_rate_that_moved_after_the_last_labelled_window_is_calibrated() -> None:
    """The shifted world: dropout hazard tripled 28 days before the scoring date."""
    world = shifting_churn(n_customers=30_000, seed=0)
    as_of = world.suggested_as_of[-1]
    tx = world.transactions
    history = tx[tx["date"] <= as_of]
    later = tx[(tx["date"] > as_of) & (tx["date"] <= as_of + pd.Timedelta(days=91))]

    model = ChurnGuardModel(**COMMON).fit(history)
    assert model.recent_drift_.flagged
    shift = model.hazard_shift_
    assert isinstance(shift, HazardShift) and 2.0 < shift.k < 5.0
    assert any(n.startswith("drift correction:") for n in model.report_.notes)
    assert model_metadata(model)["churn_model"]["drift_correction"]["k"] == pytest.approx(
        shift.k, abs=1e-4
    )

    frame = model.features(history, as_of)
    silent = (~frame["customer_id"].isin(later["customer_id"])).to_numpy(dtype=float)
    corrected = model.churn_probability(frame)
    model.hazard_shift_ = None  # what the model scored before the correction existed
    plain = model.churn_probability(frame)
    assert expected_calibration_error(silent, corrected) <= 0.02
    assert expected_calibration_error(silent, plain) > 0.04
    # a model pickled before the correction has no attribute at all, and scores as before
    del model.hazard_shift_
    np.testing.assert_array_equal(model.churn_probability(frame), plain)

    off = ChurnGuardModel(**COMMON, drift_correction=False).fit(history)
    assert off.recent_drift_.flagged and off.hazard_shift_ is None
    np.testing.assert_allclose(off.churn_probability(frame), plain)
