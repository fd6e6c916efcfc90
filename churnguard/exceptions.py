"""Domain exceptions raised by churnguard.

Every exception carries a message that says what was wrong, what was expected,
what was received and how to fix it. Each one also derives from the built-in
type a caller would naturally catch (``ValueError`` for bad values), so code
that does not know churnguard still handles them sensibly.
"""

from __future__ import annotations

__all__ = [
    "ChurnguardError",
    "ConfigError",
    "ConvergenceWarning",
    "DataQualityWarning",
    "InputDataError",
    "InsufficientHistoryError",
    "InvalidModelError",
    "ModelFitError",
    "NotFittedError",
    "ParameterError",
    "ParameterTypeError",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError


def __getattr__(name: str) -> Any:
    # scikit-learn's NotFittedError is re-exported on first use: importing sklearn costs
    # about a second, which every command, even reading a log, would otherwise pay.
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ChurnguardError(Exception):
    """Base class of every error churnguard raises on purpose."""


class InputDataError(ChurnguardError, ValueError):
    """A transaction log, feature table or score file cannot be used as given."""


class ParameterError(ChurnguardError, ValueError):
    """A parameter or option has a value churnguard cannot use (e.g. a negative horizon)."""


class ParameterTypeError(ChurnguardError, TypeError):
    """A parameter or argument has the wrong type (e.g. a list where a frame is expected)."""


class ConfigError(ChurnguardError, ValueError):
    """A playbook or segment rule file is missing, not valid TOML, or holds a bad setting."""


class InsufficientHistoryError(ChurnguardError, ValueError):
    """The data does not span enough time for what was asked (e.g. training snapshots)."""


class InvalidModelError(ChurnguardError, ValueError):
    """A path or URI does not point to a usable churnguard model."""


class ModelFitError(ChurnguardError, RuntimeError):
    """A customer-value model could not be fitted, even with the penalizer grid."""


class ConvergenceWarning(UserWarning):
    """An optimiser needed help (a penalizer) or did not fully converge."""


class DataQualityWarning(UserWarning):
    """Rows or values of a transaction log were set aside or could not be read."""
