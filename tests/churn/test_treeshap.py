"""TreeSHAP by table lookup against LightGBM's own ``pred_contrib``."""

from __future__ import annotations

import pickle
import threading

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from churnguard.churn import ChurnClassifier
from churnguard.churn._treeshap import MAX_PATH_FEATURES, path_tables


def _data(n: int = 3000, seed: int = 0, width: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, width))
    X[:, 3] = rng.integers(0, 4, n)  # ties and exact zeros
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.8 * (X[:, 3] == 0) + 0.5 * X[:, 2] * X[:, 4]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _booster(X: np.ndarray, y: np.ndarray, **params: object) -> lgb.Booster:
    base = {"objective": "binary", "num_leaves": 15, "max_depth": 4, "verbose": -1, "seed": 0}
    return lgb.train({**base, **params}, lgb.Dataset(X, y), num_boost_round=40)


def _hard_rows(booster: lgb.Booster, X: np.ndarray, seed: int = 1) -> np.ndarray:
    """Rows with missing values, zeros, and values exactly on split thresholds."""
    rng = np.random.default_rng(seed)
    rows = X[:600].copy()
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows[rng.random(rows.shape) < 0.05] = 0.0
    rows[rng.random(rows.shape) < 0.02] = -1e-40  # LightGBM reads it as 0.0
    dump = booster.dump_model()["tree_info"]
    splits = []
    for tree in dump:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                splits.append((node["split_feature"], node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    for i in range(200):
        f, t = splits[int(rng.integers(len(splits)))]
        rows[i, f] = t
    return rows


@pytest.mark.parametrize(
    "params",
    [
        {},  # no missing values at training: missing_type None
        {"use_missing": True, "zero_as_missing": True},  # missing_type Zero
        {"max_depth": 6, "num_leaves": 40},
    ],
)
def test_tables_match_lightgbm(params: dict) -> None:
    X, y = _data()
    if not params:
        train = X
    else:
        train = X.copy()
        train[np.random.default_rng(2).random(X.shape) < 0.1] = np.nan  # missing_type NaN too
    booster = _booster(train, y, **params)
    tables = path_tables(booster)
    assert tables is not None
    rows = _hard_rows(booster, X)
    expected = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(tables.contributions(rows), expected, rtol=0, atol=1e-12)


def test_the_best_iteration_is_explained_as_lightgbm_predicts() -> None:
    X, y = _data()
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 0},
        lgb.Dataset(X[:2000], y[:2000]),
        num_boost_round=1000,
        valid_sets=[lgb.Dataset(X[2000:], y[2000:])],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration
    )
    assert 0 < booster.best_iteration < booster.num_trees()
    tables = path_tables(booster)
    assert tables is not None
    expected = booster.predict(X[:300], pred_contrib=True)
    np.testing.assert_allclose(tables.contributions(X[:300]), expected, atol=1e-12)


def test_trees_without_a_split_are_constants() -> None:
    X, y = _data(300)
    booster = _booster(X, y, min_data_in_leaf=1000)  # nothing can split
    tables = path_tables(booster)
    assert tables is not None
    expected = booster.predict(X[:50], pred_contrib=True)
    got = tables.contributions(X[:50])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.all(got[:, :-1] == 0)


def test_what_tables_do_not_cover_is_left_to_lightgbm() -> None:
    X, y = _data(width=12)
    deep = _booster(X, y, max_depth=-1, num_leaves=255, min_data_in_leaf=2)
    assert path_tables(deep) is None  # more than MAX_PATH_FEATURES features on a path
    assert MAX_PATH_FEATURES < 10
    cats = X.copy()
    cats[:, 3] = cats[:, 3].astype(int)
    ds = lgb.Dataset(cats, y, categorical_feature=[3])
    categorical = lgb.train({"objective": "binary", "verbose": -1}, ds, num_boost_round=5)
    assert path_tables(categorical) is None


def _classifier() -> tuple[ChurnClassifier, pd.DataFrame]:
    X, y = _data(4000)
    cols = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=cols)
    fast = {"n_estimators": 60, "learning_rate": 0.1}
    clf = ChurnClassifier(fast, calibration="none", monotone={}).fit(
        frame.iloc[:3000], y[:3000], frame.iloc[3000:], y[3000:]
    )
    return clf, frame


def test_classifier_contributions_are_lightgbms() -> None:
    clf, frame = _classifier()
    got = clf.contributions(frame.head(500))
    expected = clf.model_.predict(frame.head(500), pred_contrib=True)
    np.testing.assert_allclose(got.to_numpy(), expected, atol=1e-12)
    assert list(got.columns) == [*clf.feature_names_, "bias"]


def test_tables_are_a_cache_not_saved_and_shared_by_threads() -> None:
    clf, frame = _classifier()
    first = clf.contributions(frame.head(100))
    assert clf.__dict__["_tables"][1] is not None  # the tables answered, not LightGBM
    copy = pickle.loads(pickle.dumps(clf))
    assert "_tables" not in copy.__dict__
    pd.testing.assert_frame_equal(copy.contributions(frame.head(100)), first)
    results: list[pd.DataFrame] = []
    fresh = pickle.loads(pickle.dumps(clf))
    threads = [
        threading.Thread(target=lambda: results.append(fresh.contributions(frame.head(100))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        pd.testing.assert_frame_equal(r, first)


def test_tables_built_in_chunks_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import churnguard.churn._treeshap as treeshap

    X, y = _data()
    booster = _booster(X, y)
    whole = path_tables(booster)
    monkeypatch.setattr(treeshap, "_TABLE_CELLS", 1)  # one leaf per chunk
    chunked = path_tables(booster)
    assert whole is not None and chunked is not None
    np.testing.assert_array_equal(chunked.values, whole.values)


def test_columns_lightgbm_rejects_are_still_rejected() -> None:
    clf, frame = _classifier()
    text = frame.head(20).astype({"f0": str})
    with pytest.raises(ValueError, match="pandas dtypes"):
        clf.contributions(text)
