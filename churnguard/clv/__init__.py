"""Customer value: buy-till-you-die purchase models, spend model and CLV.

The models are fitted by churnguard's own maximum-likelihood code (``_fitting``; ``lifetimes``
is the fallback optimiser and still computes a few predictions) and are used only through
the classes and functions re-exported here, so the backend can change without callers.

Typical use::

    from churnguard.clv import PurchaseModel, SpendModel, value_frame

    purchases = PurchaseModel("bgnbd").fit(rfm)
    spend = SpendModel().fit(rfm)
    values = value_frame(purchases, spend, rfm, horizon=52, months=12)
"""

from churnguard.clv.diagnostics import (
    calibration_holdout_table,
    cumulative_tracking_table,
    p_alive_matrix,
    plot_calibration_holdout,
    plot_cumulative_tracking,
    plot_p_alive_matrix,
)
from churnguard.clv.purchase import (
    MODEL_NAMES,
    DegenerateFitWarning,
    ModelFitError,
    PurchaseModel,
    check_rfm,
)
from churnguard.clv.selection import ModelComparison, compare_models
from churnguard.clv.shift import (
    shifted_discounted_purchases,
    shifted_expected_purchases,
    shifted_p_no_purchase,
    shifted_p_purchase,
)
from churnguard.clv.spend import SpendModel
from churnguard.clv.value import (
    KeptPrior,
    customer_equity,
    customer_lifetime_value,
    fit_kept_prior,
    kept_share,
    no_purchase_frame,
    value_frame,
    value_if_retained,
)

__all__ = [
    "DegenerateFitWarning",
    "KeptPrior",
    "MODEL_NAMES",
    "ModelComparison",
    "ModelFitError",
    "PurchaseModel",
    "SpendModel",
    "calibration_holdout_table",
    "check_rfm",
    "compare_models",
    "cumulative_tracking_table",
    "customer_equity",
    "customer_lifetime_value",
    "fit_kept_prior",
    "kept_share",
    "no_purchase_frame",
    "p_alive_matrix",
    "plot_calibration_holdout",
    "plot_cumulative_tracking",
    "plot_p_alive_matrix",
    "shifted_discounted_purchases",
    "shifted_expected_purchases",
    "shifted_p_no_purchase",
    "shifted_p_purchase",
    "value_frame",
    "value_if_retained",
]
