"""The calibrated LightGBM classifier on simulated churn with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.churn import ChurnClassifier, expected_calibration_error


def _simulate(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = rng.gamma(2.0, 40.0, n)
    freq = rng.poisson(3.0, n).astype(float)
    noise = rng.normal(size=n)
    logit = -1.0 + 0.025 * days - 0.4 * freq
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"days_since_last": days, "frequency": freq, "noise": noise}), y


FAST = {"n_estimators": 200}


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    return {"train": _simulate(8000, 1), "cal": _simulate(4000, 2), "test": _simulate(8000, 3)}


def test_calibration_beats_raw_probabilities_on_held_out_data(data: dict) -> None:
    """Re-weighted classes distort raw probabilities; the calibrator must undo it."""
    (X, y), (Xc, yc), (Xt, yt) = data["train"], data["cal"], data["test"]
    clf = ChurnClassifier(FAST, class_weight="balanced", calibration="isotonic").fit(X, y, Xc, yc)
    raw = expected_calibration_error(yt, clf.churn_probability(Xt, calibrated=False))
    calibrated = expected_calibration_error(yt, clf.churn_probability(Xt))
    assert calibrated < raw / 2
    assert calibrated < 0.03


def test_auto_calibration_picks_a_method_and_records_scores(data: dict) -> None:
    (X, y), (Xc, yc) = data["train"], data["cal"]
    clf = ChurnClassifier(FAST).fit(X, y, Xc, yc)
    assert clf.calibration_ in {"isotonic", "sigmoid", "none"}
    assert set(clf.calibration_scores_) == {"none", "isotonic", "sigmoid"}
    assert clf.calibration_ == min(clf.calibration_scores_, key=clf.calibration_scores_.__getitem__)


def test_deterministic_and_monotone_in_recency(data: dict) -> None:
    (X, y), (Xc, yc), (Xt, _) = data["train"], data["cal"], data["test"]
    a = ChurnClassifier(FAST, random_state=5).fit(X, y, Xc, yc).churn_probability(Xt)
    b = ChurnClassifier(FAST, random_state=5).fit(X, y, Xc, yc).churn_probability(Xt)
    np.testing.assert_array_equal(a, b)
    clf = ChurnClassifier(FAST, calibration="none").fit(X, y, Xc, yc)
    grid = pd.DataFrame(
        {"days_since_last": np.linspace(0, 400, 50), "frequency": 2.0, "noise": 0.0}
    )
    assert np.all(np.diff(clf.churn_probability(grid)) >= 0)


def test_contributions_sum_to_raw_log_odds(data: dict) -> None:
    (X, y), (Xc, yc), (Xt, _) = data["train"], data["cal"], data["test"]
    clf = ChurnClassifier(FAST, calibration="none").fit(X, y, Xc, yc)
    contrib = clf.contributions(Xt.head(200))
    p = clf.churn_probability(Xt.head(200), calibrated=False)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(p / (1 - p)), atol=1e-6)
    assert clf.feature_importance()["feature"].iloc[0] in {"days_since_last", "frequency"}


def test_input_errors(data: dict) -> None:
    (X, y), (Xc, yc) = data["train"], data["cal"]
    with pytest.raises(ValueError, match="same columns"):
        ChurnClassifier().fit(X, y, Xc[["frequency", "days_since_last", "noise"]], yc)
    with pytest.raises(ValueError, match="both classes"):
        ChurnClassifier().fit(X, np.zeros(len(X)), Xc, yc)
    with pytest.raises(ValueError, match="calibration"):
        ChurnClassifier(calibration="magic").fit(X, y, Xc, yc)
    with pytest.raises(TypeError, match="DataFrame"):
        ChurnClassifier().fit(X.to_numpy(), y, Xc, yc)  # type: ignore[arg-type]


def test_prior_starts_the_trees_from_its_log_odds(data: dict) -> None:
    """With a prior, predictions are the prior's log-odds plus the trees' corrections."""
    (X, y), (Xc, yc), (Xt, _) = data["train"], data["cal"], data["test"]

    def with_prior(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(p_no_purchase=1 - np.exp(-0.01 * frame["days_since_last"]))

    clf = ChurnClassifier(FAST, calibration="none", prior="p_no_purchase").fit(
        with_prior(X), y, with_prior(Xc), yc
    )
    Xt2 = with_prior(Xt).head(300)
    contrib = clf.contributions(Xt2)
    np.testing.assert_allclose(contrib.sum(axis=1), clf.decision_function(Xt2), atol=1e-6)
    p0 = Xt2["p_no_purchase"].clip(1e-6, 1 - 1e-6).to_numpy()
    trees = np.asarray(clf.model_.predict(Xt2, raw_score=True))
    np.testing.assert_allclose(clf.decision_function(Xt2), np.log(p0 / (1 - p0)) + trees, atol=1e-6)
    with pytest.raises(ValueError, match="prior column"):
        ChurnClassifier(FAST, prior="nope").fit(X, y, Xc, yc)
    with pytest.raises(ValueError, match="correction"):
        ChurnClassifier(FAST, calibration="correction").fit(X, y, Xc, yc)


def test_with_a_prior_calibration_keeps_the_priors_level(data: dict) -> None:
    """Only calibrators that leave the prior's level alone are candidates."""
    (X, y), (Xc, yc) = data["train"], data["cal"]

    def with_prior(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(p_no_purchase=1 - np.exp(-0.01 * frame["days_since_last"]))

    clf = ChurnClassifier(FAST, prior="p_no_purchase").fit(with_prior(X), y, with_prior(Xc), yc)
    assert set(clf.calibration_scores_) == {"none", "correction"}
    # Shifting the prior's level moves the calibrated probabilities with it.
    shifted = with_prior(X).head(500)
    base = clf.churn_probability(shifted).mean()
    higher = clf.churn_probability(shifted.assign(p_no_purchase=shifted["p_no_purchase"] ** 0.5))
    assert higher.mean() > base


def test_scikit_learn_shapes(data: dict) -> None:
    (X, y), (Xc, yc), (Xt, _) = data["train"], data["cal"], data["test"]
    clf = ChurnClassifier(FAST).fit(X, y, Xc, yc)
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert set(np.unique(clf.predict(Xt))) <= {0, 1}


def _repeated_customers(seed: int) -> dict:
    """Two snapshots of the same customers: features barely move, outcomes are a coin per
    customer that repeats (nothing generalises to new customers, everything to old ones)."""
    rng = np.random.default_rng(seed)
    n = 4000
    ids = np.array([f"c{i:05d}" for i in range(n)], dtype=object)
    x = rng.normal(size=(n, 3))
    y = rng.integers(0, 2, n)
    frames = [
        pd.DataFrame(x + rng.normal(scale=1e-3, size=x.shape), columns=["a", "b", "c"])
        for _ in range(2)
    ]
    return {"X": frames[0], "X_cal": frames[1], "y": y, "ids": ids}


def test_cross_fitting_keeps_a_customers_own_outcome_out_of_early_stopping() -> None:
    d = _repeated_customers(21)
    params = {"lgbm_params": {"min_child_samples": 5, "num_leaves": 31, "max_depth": -1}}
    leaky = ChurnClassifier(**params, monotone={}, cross_fit=1).fit(
        d["X"], d["y"], d["X_cal"], d["y"]
    )
    fair = ChurnClassifier(**params, monotone={}).fit(
        d["X"], d["y"], d["X_cal"], d["y"], groups=d["ids"], groups_cal=d["ids"]
    )
    # Memorised customers look predictable when they are also the early-stopping set ...
    assert leaky.best_iteration_ > 100
    # ... and unpredictable, as they are, when each half is judged by the other half's trees.
    assert fair.best_iteration_ < 20
    fresh = _repeated_customers(22)
    p = fair.churn_probability(fresh["X"])
    assert abs(p.mean() - 0.5) < 0.05 and p.std() < 0.1


def test_folds_follow_the_customer_not_the_row() -> None:
    from churnguard._crossfit import customer_folds as _folds

    ids = np.array(["a", "b", "c", "d"] * 500, dtype=object)
    folds = _folds(ids, 2)
    assert set(folds) == {0, 1}
    assert all(len(set(folds[ids == g])) == 1 for g in "abcd")
    order = np.random.default_rng(3).permutation(len(ids))
    np.testing.assert_array_equal(_folds(ids[order], 2), folds[order])


def test_threads_follow_the_scoring_process_not_the_fitting_one(
    data: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved model keeps LightGBM's "every core"; each prediction asks this process."""
    import lightgbm as lgb

    (X, y), (Xc, yc), (Xt, _) = data["train"], data["cal"], data["test"]
    monkeypatch.setenv("CHURNGUARD_THREADS", "1")
    clf = ChurnClassifier(FAST, calibration="none").fit(X, y, Xc, yc)
    assert clf.model_.get_params()["n_jobs"] == -1
    asked: list[object] = []
    predict = lgb.Booster.predict

    def spy(self: lgb.Booster, *args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("num_threads"))
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", spy)
    clf.churn_probability(Xt)
    assert asked == [1]
