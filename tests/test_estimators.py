"""scikit-learn conventions of every estimator: parameters, cloning, not-fitted errors, pickling.

``__init__`` only stores parameters (so ``clone`` and ``get_params`` work), learned
state ends in ``_`` and exists only after ``fit``, ``fit`` returns ``self``, and a
fitted estimator survives pickling with identical predictions.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from churnguard.churn import ChurnClassifier, PriorChurnModel
from churnguard.clv import PurchaseModel, SpendModel
from churnguard.clv.learned import WindowSpendModel
from churnguard.data import load_cdnow
from churnguard.features import FeatureBuilder, rfm_summary


def _rfm() -> pd.DataFrame:
    return rfm_summary(load_cdnow(sample=True), "1997-09-30", time_unit="W")


def _classification(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 3000
    X = pd.DataFrame(
        {
            "days_since_last": rng.gamma(2.0, 40.0, n),
            "frequency": rng.poisson(3.0, n).astype(float),
            "p_no_purchase": rng.uniform(0.1, 0.9, n),
        }
    )
    z = -1.0 + 0.02 * X["days_since_last"] - 0.3 * X["frequency"]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return X, y


def _fit_feature_builder() -> tuple[Any, Callable[[Any], Any]]:
    tx = load_cdnow(sample=True)
    return FeatureBuilder().fit(tx), lambda est: est.transform(tx, "1997-09-30")


def _fit_purchase() -> tuple[Any, Callable[[Any], Any]]:
    rfm = _rfm()
    return PurchaseModel("bgnbd").fit(rfm), lambda est: est.predict(rfm, 13)


def _fit_spend() -> tuple[Any, Callable[[Any], Any]]:
    rfm = _rfm()
    return SpendModel().fit(rfm), lambda est: est.expected_spend(rfm)


def _fit_classifier() -> tuple[Any, Callable[[Any], Any]]:
    X, y = _classification()
    est = ChurnClassifier({"n_estimators": 30}, prior="p_no_purchase").fit(X, y, X, y)
    return est, lambda e: e.predict_proba(X)


def _fit_prior() -> tuple[Any, Callable[[Any], Any]]:
    X, _ = _classification()
    return PriorChurnModel().fit(X), lambda e: e.predict_proba(X)


def _fit_window_spend() -> tuple[Any, Callable[[Any], Any]]:
    rng = np.random.default_rng(2)
    n = 2000
    X = pd.DataFrame(
        {"spend_90d": rng.gamma(2.0, 30.0, n), "btyd_active_spend": rng.gamma(2, 20, n)}
    )
    y = X["btyd_active_spend"] * rng.gamma(4.0, 0.25, n)
    ids = np.array([f"c{i}" for i in range(n)])
    est = WindowSpendModel({"n_estimators": 30}).fit(X, y, X, y, groups=ids, groups_cal=ids)
    return est, lambda e: e.predict(X)


FITTERS: dict[str, Callable[[], tuple[Any, Callable[[Any], Any]]]] = {
    "FeatureBuilder": _fit_feature_builder,
    "PurchaseModel": _fit_purchase,
    "SpendModel": _fit_spend,
    "ChurnClassifier": _fit_classifier,
    "PriorChurnModel": _fit_prior,
    "WindowSpendModel": _fit_window_spend,
}


@pytest.mark.parametrize("name", sorted(FITTERS))
def test_scikit_learn_conventions(name: str) -> None:
    fitted, predict = FITTERS[name]()
    fresh = clone(fitted)
    # __init__ stores parameters only: a clone has the same parameters and no learned state.
    assert fresh.get_params() == fitted.get_params()
    assert not [k for k in vars(fresh) if k.endswith("_") and not k.startswith("__")]
    with pytest.raises(NotFittedError):
        predict(fresh)
    # Pickling a fitted estimator keeps its predictions.
    loaded = pickle.loads(pickle.dumps(fitted))
    a, b = predict(fitted), predict(loaded)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    assert repr(fitted).startswith(type(fitted).__name__ + "(")
