"""Exceptions raised by priorfit; each subclasses the builtin users already catch."""

from __future__ import annotations

from typing import Any

__all__ = [
    "PriorfitError",
    "PriorfitValidationError",
    "InvalidHyperparameterError",
    "CheckpointError",
    "UntrustedTargetError",
    "PriorfitTypeError",
    "PretrainingLimitError",
    "SimulatorError",
    "OutOfDomainWarning",
    "OutOfDomainError",
    "SimulatorWarning",
    "NotFittedError",  # noqa: F822 (defined on first use, by __getattr__ below)
]


class PriorfitError(Exception):
    """Base class of every error priorfit raises on purpose."""


class PriorfitValidationError(ValueError, PriorfitError):
    """User input (data, shapes, values) is not what the call accepts."""


class InvalidHyperparameterError(PriorfitValidationError):
    """A prior or network was configured with an impossible value."""


class CheckpointError(PriorfitValidationError):
    """A checkpoint path is missing, unreadable, or not a priorfit checkpoint."""


class UntrustedTargetError(CheckpointError):
    """A stored configuration names a class that is not on priorfit's allow list and was not trusted explicitly."""


class PriorfitTypeError(TypeError, PriorfitError):
    """A value of a type the call cannot take at all (a dict in a table cell); a ``TypeError``, as scikit-learn
    expects."""


class PretrainingLimitError(PriorfitValidationError):
    """The data exceed what the checkpoint was trained for (features, classes or rows)."""


class SimulatorError(PriorfitValidationError):
    """The simulator (or the parameter prior) returned something unusable."""


class OutOfDomainWarning(UserWarning):
    """A query lies outside what the model was trained on (observation count, value ranges); the answer is an
    extrapolation. ``PRIORFIT_STRICT_DOMAIN=1`` turns it into an :class:`OutOfDomainError`."""


class OutOfDomainError(PriorfitValidationError):
    """A query outside the model's training domain, with the strict switch on."""


class SimulatorWarning(UserWarning):
    """More than 1 % of the simulations returned NaN or infinite values: the posterior is one under a truncated
    prior."""


def __getattr__(name: str) -> Any:
    # NotFittedError subclasses scikit-learn's (so ``except sklearn.exceptions.NotFittedError`` catches every unfitted
    # priorfit model) and is defined on first use: importing scikit-learn costs about a second, which
    # ``import priorfit.errors`` (imported by every layer) should not pay
    if name != "NotFittedError":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(SklearnNotFittedError, PriorfitValidationError):
        """A model queried before ``fit``; scikit-learn's ``NotFittedError``, a ``ValueError`` and an
        ``AttributeError``."""

    NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"
    globals()["NotFittedError"] = NotFittedError
    return NotFittedError
