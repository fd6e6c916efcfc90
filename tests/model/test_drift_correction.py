"""The drift correction inside ChurnGuardModel: fitted when drift is flagged, used in scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churnguard.churn.hazard_shift import HazardShift
from churnguard.churn.metrics import expected_calibration_error
from churnguard.data import shifting_churn
from churnguard.model import ChurnGuardModel
from churnguard.model.bundle import model_metadata
from churnguard.model.validation import incomplete_end, tail_volume_ratio

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
    # the next window's revenue of the scored customers (not of those acquired in it)
    revenue = later.loc[later["customer_id"].isin(frame["customer_id"]), "amount"].sum()
    value = model.window_value(frame).sum()
    model.hazard_shift_ = None  # what the model scored before the correction existed
    plain = model.churn_probability(frame)
    assert expected_calibration_error(silent, corrected) <= 0.02
    assert expected_calibration_error(silent, plain) > 0.04
    # fewer purchases under the higher hazard: -4% off the revenue, against +26% without
    assert abs(value / revenue - 1.0) < 0.1
    assert model.window_value(frame).sum() / revenue - 1.0 > 0.2
    # the CLV follows as well (so customer equity); the value if retained does not
    plain_values = model.value_columns(frame)
    model.hazard_shift_ = shift
    values = model.value_columns(frame)
    assert values["predicted_clv"].sum() < 0.85 * plain_values["predicted_clv"].sum()
    np.testing.assert_array_equal(values["value_if_retained"], plain_values["value_if_retained"])
    # a scoring date before the change: nothing moves, through every scoring path
    day = as_of - pd.Timedelta(days=29)
    for col, got in model.value_columns(frame, as_of=day).items():
        np.testing.assert_array_equal(got, plain_values[col])
    scored = model.predict_features(frame, reasons_limit=0, as_of=day)
    np.testing.assert_array_equal(scored["predicted_clv"], plain_values["predicted_clv"])
    scored = model.predict_features(frame, reasons_limit=0, as_of=as_of)
    np.testing.assert_array_equal(scored["predicted_clv"], values["predicted_clv"])
    # the reasons say what the correction added to each score, which no feature explains
    top = scored.nlargest(200, "value_at_risk")
    said = model.reasons(top, as_of=as_of)
    points = said.str.extract(r"\+(\d+) points of churn probability here")[0].astype(float)
    assert said.str.startswith("raises risk: customers have been leaving 3.5x faster").mean() > 0.2
    p = top["churn_probability"].to_numpy()
    before = 1.0 / (1.0 + (1.0 / p - 1.0) * np.exp(model.drift_move(top, as_of)))
    quoted = points.notna().to_numpy()
    np.testing.assert_allclose(points[quoted], np.rint(100 * (p - before))[quoted])
    assert not model.reasons(top, as_of=day).str.contains("drift correction").any()
    model.hazard_shift_ = None
    # a model pickled before the correction has no attribute at all, and scores as before
    del model.hazard_shift_
    np.testing.assert_array_equal(model.churn_probability(frame), plain)

    # scored at another date, the change has lasted as long as it has by then
    model.hazard_shift_ = shift
    np.testing.assert_array_equal(model.churn_probability(frame, as_of=as_of), corrected)
    before = model.churn_probability(frame, as_of=as_of - pd.Timedelta(days=29))
    np.testing.assert_array_equal(before, plain)  # the change had not begun
    later = model.churn_probability(frame, as_of=as_of + pd.Timedelta(days=60))
    assert later.mean() > corrected.mean()

    # Turned off, or on a log whose last days are half loaded: a warning, no correction.
    feats = model.builder_.transform(history, as_of.date())
    model.set_params(drift_correction=False)
    notes = model._check_drift(history, feats, None)
    assert model.recent_drift_.flagged and model.hazard_shift_ is None and len(notes) == 2
    assert "uncorrected" in notes[0] and notes[1].startswith("no drift correction: turned off")
    model.set_params(drift_correction=True)
    rng = np.random.default_rng(0)
    tail = (history["date"] > as_of - pd.Timedelta(days=2)) & (rng.random(len(history)) < 0.5)
    notes = model._check_drift(history[~tail], feats, None)
    assert model.hazard_shift_ is None and "loaded" in notes[-1]

    # a model saved before the setting existed: get_params and clone work
    state = model.__getstate__()
    del state["drift_correction"], state["level_correction"]
    old = ChurnGuardModel.__new__(ChurnGuardModel)
    old.__setstate__(state)
    # off: what it ran with, so that a clone refits as the saved model was fitted
    assert old.get_params()["drift_correction"] is False and not clone(old).level_correction


def test_the_tail_volume_sees_late_loading_but_not_a_weekly_rhythm() -> None:
    days = pd.date_range("2024-01-01", "2024-03-31", freq="D")
    per_day = np.where(days.dayofweek >= 5, 30, 100)  # quiet weekends
    tx = pd.DataFrame({"date": np.repeat(days, per_day)})
    end = days[-1].date()
    assert tail_volume_ratio(tx, end) == pytest.approx(1.0)
    assert incomplete_end(tx, end) == ""
    row = np.arange(len(tx))
    # the three days before the last, 40% of them not loaded yet
    before = (tx["date"] >= "2024-03-28") & (tx["date"] < "2024-03-31") & (row % 10 < 4)
    assert "incompletely loaded" in incomplete_end(tx[~before], end)
    # the last day pulled in the morning: 30% of it
    last = (tx["date"] == "2024-03-31") & (row % 10 < 7)
    assert "partly loaded" in incomplete_end(tx[~last], end)
    # zone-aware dates count in their own days
    zoned = tx.assign(date=tx["date"].dt.tz_localize("America/New_York"))
    assert tail_volume_ratio(zoned, end) == pytest.approx(1.0)
    # nothing to compare with
    short = tx[tx["date"] > "2024-03-20"]
    assert np.isnan(tail_volume_ratio(short, end)) and "cannot be checked" in incomplete_end(
        short, end
    )
