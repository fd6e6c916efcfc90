"""Shared data for the churnguard.clv tests: CDNOW frames and BTYD simulators.

CDNOW frames are built from the raw ``CDNOW_sample.txt`` shipped with lifetimes, with
lifetimes' own summary utilities, so the tests check churnguard against the published
numbers without depending on churnguard's feature code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import calibration_and_holdout_data

from churnguard.clv import _fitting

CALIBRATION_END = "1997-09-30"
OBSERVATION_END = "1998-06-30"


def simulate_bgnbd(
    rng: np.random.Generator,
    n: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    T: float | np.ndarray,
) -> pd.DataFrame:
    """Exact, vectorised draw of BG/NBD RFM data (continuous time).

    Purchases follow a Poisson(lambda) process; after each repeat purchase the customer
    dies with probability p. Given N events in (0, T], the observed count is
    x = min(N, D) with D ~ Geometric(p), and the x-th of N uniform event times is
    T * Beta(x, N - x + 1).
    """
    age = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    events = rng.poisson(lam * age)
    dies_after = rng.geometric(p)
    x = np.minimum(events, dies_after)
    recency = np.where(x > 0, age * rng.beta(np.maximum(x, 1), events - x + 1), 0.0)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:07d}" for i in range(n)],
            "frequency": x.astype(float),
            "recency": recency,
            "T": age.copy(),
        }
    )


def simulate_btyd_future(
    rng: np.random.Generator,
    model: str,
    n: int,
    params: dict[str, float],
    *,
    T: np.ndarray,
    horizon: float,
) -> pd.DataFrame:
    """Exact, vectorised draw of a BTYD model's history to T *and* its future to T + horizon.

    BG/NBD and MBG/NBD: an immortal twin buys at Poisson rate lambda ~ Gamma(r, alpha); death
    trials with p ~ Beta(a, b) happen after each repeat purchase (and, for MBG/NBD, at time 0),
    so the first fatal trial K is Geometric(p) (minus 1 for MBG/NBD), the customer makes
    min(N, K) of the twin's N purchases, and is alive at age u iff K > N(u). Pareto/NBD: the
    customer buys at rate lambda until an Exponential(mu) death time, mu ~ Gamma(s, beta).

    Returns columns frequency, recency, T (the history at T), alive (at T), future (purchases
    in (T, T + horizon]), alive_end (alive at T + horizon, i.e. throughout) and
    future_if_retained (the twin's purchases in (T, T + horizon]: what a customer alive at T
    would buy with the dropout process switched off).
    """
    age = np.asarray(T, dtype=float)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    if model == "pareto":
        death = rng.exponential(1.0 / rng.gamma(params["s"], 1.0 / params["beta"], n))
        seen = np.minimum(age, death)
        x = rng.poisson(lam * seen)
        recency = np.where(x > 0, seen * rng.beta(np.maximum(x, 1), 1.0), 0.0)
        alive = death > age
        future = rng.poisson(lam * np.clip(np.minimum(death, age + horizon) - age, 0.0, None))
        alive_end = death > age + horizon
        retained = rng.poisson(lam * horizon)
    else:
        p = rng.beta(params["a"], params["b"], n)
        fatal = rng.geometric(p) - (1 if model == "mbgnbd" else 0)
        twin_past = rng.poisson(lam * age)
        retained = rng.poisson(lam * horizon)
        x = np.minimum(twin_past, fatal)
        # the x-th of the twin's uniform purchase times in (0, T]
        recency = np.where(x > 0, age * rng.beta(np.maximum(x, 1), twin_past - x + 1), 0.0)
        alive = fatal > twin_past
        future = np.where(alive, np.minimum(retained, fatal - twin_past), 0)
        alive_end = fatal > twin_past + retained
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "frequency": x.astype(float),
            "recency": recency,
            "T": age,
            "alive": alive,
            "future": future.astype(float),
            "alive_end": alive_end,
            "future_if_retained": retained.astype(float),
        }
    )


def simulate_gamma_gamma(
    rng: np.random.Generator, frequency: np.ndarray, *, p: float, q: float, v: float
) -> np.ndarray:
    """Mean spend per purchase under Gamma-Gamma: z ~ Gamma(p, nu), nu ~ Gamma(q, v)."""
    x = np.asarray(frequency, dtype=float)
    nu = rng.gamma(q, 1.0 / v, len(x))
    total = rng.gamma(p * np.maximum(x, 1), 1.0 / nu)
    return np.where(x > 0, total / np.maximum(x, 1), 0.0)


@pytest.fixture(scope="session")
def cdnow_transactions() -> pd.DataFrame:
    """Raw CDNOW sample: 6,919 transactions of 2,357 customers (1997-01 to 1998-06)."""
    path = files("lifetimes") / "datasets" / "CDNOW_sample.txt"
    tx = pd.read_csv(
        str(path),
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "number_of_cds", "dollar_value"],
        dtype={"master_id": str, "customer_id": str, "date": str},
    )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


@pytest.fixture(scope="session")
def cdnow_cal_holdout(cdnow_transactions: pd.DataFrame) -> pd.DataFrame:
    """Calibration (to 1997-09-30) + 39-week holdout summary, time unit = weeks (days / 7)."""
    summary = calibration_and_holdout_data(
        cdnow_transactions,
        "customer_id",
        "date",
        calibration_period_end=CALIBRATION_END,
        observation_period_end=OBSERVATION_END,
        freq="D",
        freq_multiplier=7,
        monetary_value_col="dollar_value",
    )
    return summary.reset_index()


@pytest.fixture(scope="session")
def cdnow_rfm(cdnow_cal_holdout: pd.DataFrame) -> pd.DataFrame:
    """Calibration RFM frame in churnguard's canonical column names."""
    renamed = cdnow_cal_holdout.rename(
        columns={
            "frequency_cal": "frequency",
            "recency_cal": "recency",
            "T_cal": "T",
            "monetary_value_cal": "monetary_value",
        }
    )
    return renamed[["customer_id", "frequency", "recency", "T", "monetary_value"]]


@pytest.fixture
def bgnbd_sampler() -> Callable[..., pd.DataFrame]:
    """The BG/NBD simulator, as a fixture so test modules need no helper imports."""
    return simulate_bgnbd


@pytest.fixture
def btyd_future_sampler() -> Callable[..., pd.DataFrame]:
    """The history-and-future simulator of all three purchase models."""
    return simulate_btyd_future


@pytest.fixture
def gamma_gamma_sampler() -> Callable[..., np.ndarray]:
    """The Gamma-Gamma spend simulator."""
    return simulate_gamma_gamma


@pytest.fixture
def own_fits_fail(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make churnguard's own fitters report non-convergence, so the lifetimes fallback runs.

    Call the fixture's value with ``when(model, penalizer) -> bool`` to fail only some fits
    (default: all); ``model`` is the purchase model key or ``"gamma_gamma"``.
    """

    def apply(when: Callable[[str, float], bool] = lambda model, pen: True) -> None:
        purchase_fit, spend_fit = _fitting.fit_purchase, _fitting.fit_gamma_gamma

        def fail(result: _fitting.FitResult) -> _fitting.FitResult:
            return dataclasses.replace(result, converged=False, message="forced failure")

        def fit_purchase(model: str, data: Any, penalizer: float = 0.0, **kw: Any) -> Any:
            result = purchase_fit(model, data, penalizer, **kw)
            return fail(result) if when(model, penalizer) else result

        def fit_gamma_gamma(data: Any, penalizer: float = 0.0) -> Any:
            result = spend_fit(data, penalizer)
            return fail(result) if when("gamma_gamma", penalizer) else result

        monkeypatch.setattr(_fitting, "fit_purchase", fit_purchase)
        monkeypatch.setattr(_fitting, "fit_gamma_gamma", fit_gamma_gamma)

    return apply
