"""The checks of :class:`~churnguard.model.estimator.ChurnGuardModel`'s settings.

Why a module of its own: as in scikit-learn, the constructor only stores its arguments
and :meth:`~churnguard.model.estimator.ChurnGuardModel.fit` checks them; the checks are
plain data (a mapping of the settings, e.g. ``model.get_params(deep=False)``), so they
live here, apart from the fitting.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from churnguard._dates import DAYS_PER_UNIT
from churnguard.churn.candidates import CANDIDATES
from churnguard.churn.classifier import ChurnClassifier
from churnguard.exceptions import ParameterError
from churnguard.model.value_choice import VALUE_CANDIDATES

__all__ = ["check_settings"]


def check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse settings a model cannot be fitted with.

    Parameters
    ----------
    settings : mapping
        The model's settings by name (``horizon_days``, ``value_model``,
        ``churn_model``, ``value_choice``, ``time_unit``, ``discount_rate``,
        ``classifier_params``; others are ignored).

    Raises
    ------
    ParameterError
        Naming the first setting out of range and the values it accepts.
    """
    if int(settings["horizon_days"]) <= 0:
        raise ParameterError(
            f"horizon_days must be a positive number of days; got {settings['horizon_days']}."
        )
    if settings["value_model"] not in ("auto", "bgnbd", "pareto", "mbgnbd"):
        raise ParameterError(
            "value_model must be 'auto', 'bgnbd', 'pareto' or 'mbgnbd'; "
            f"got {settings['value_model']!r}."
        )
    if settings["churn_model"] not in ("auto", *CANDIDATES):
        raise ParameterError(
            f"churn_model must be 'auto' or one of {CANDIDATES}; got {settings['churn_model']!r}."
        )
    if settings["value_choice"] not in ("auto", *VALUE_CANDIDATES):
        raise ParameterError(
            f"value_choice must be 'auto' or one of {VALUE_CANDIDATES}; "
            f"got {settings['value_choice']!r}."
        )
    if settings["time_unit"] not in DAYS_PER_UNIT:
        raise ParameterError(f"time_unit must be 'W' or 'D'; got {settings['time_unit']!r}.")
    if not 0 <= float(settings["discount_rate"]) < 1:
        raise ParameterError(
            f"discount_rate is monthly and must be in [0, 1); got {settings['discount_rate']}."
        )
    _check_classifier_params(settings.get("classifier_params"))


def _check_classifier_params(params: Any) -> None:
    """``classifier_params`` are :class:`ChurnClassifier` arguments; LightGBM's go in
    ``lgbm_params``. Why checked here: a wrong key failed only after the value models
    and the snapshots were fitted, with a bare ``TypeError`` from deep in the fit.
    """
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"classifier_params must be a dict of ChurnClassifier arguments; got "
            f"{type(params).__name__}."
        )
    if "random_state" in params:
        raise ParameterError(
            "classifier_params cannot set random_state: it is the model's own; pass "
            "ChurnGuardModel(random_state=...) instead."
        )
    # prior is accepted as before, and set by each churn candidate itself.
    allowed = [
        name
        for name in inspect.signature(ChurnClassifier.__init__).parameters
        if name not in ("self", "random_state")
    ]
    unknown = [key for key in params if key not in allowed]
    if unknown:
        raise ParameterError(
            f"classifier_params has {unknown}, which ChurnClassifier does not take; expected "
            f"some of {allowed}. LightGBM's own parameters go in lgbm_params, e.g. "
            "classifier_params={'lgbm_params': {'learning_rate': 0.05}}."
        )
    lgbm = params.get("lgbm_params")
    if lgbm is not None and not isinstance(lgbm, Mapping):
        raise ParameterError(
            f"classifier_params['lgbm_params'] must be a dict of LightGBM parameters; got "
            f"{type(lgbm).__name__}."
        )
