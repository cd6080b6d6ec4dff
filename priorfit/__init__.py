"""priorfit: amortized Bayesian inference with prior-data fitted networks.

Heavy modules (Lightning, Hydra) are imported on first use, so ``import priorfit`` and
``import priorfit.priors`` stay light.
"""

from __future__ import annotations

from typing import Any

from priorfit._threads import apply_default_threads
from priorfit.errors import (
    CheckpointError,
    InvalidHyperparameterError,
    OutOfDomainError,
    OutOfDomainWarning,
    PretrainingLimitError,
    PriorfitError,
    PriorfitValidationError,
)

__version__ = "0.1.0"

apply_default_threads()  # fewer threads than cores on a busy machine (see priorfit/_threads.py)

__all__ = [
    "PFNClassifier",
    "PFNRegressor",
    "AmortizedPosterior",
    "LearningCurveExtrapolator",
    "DistributionTransformer",
    "GMM",
    "load",
    "load_checkpoint",
    "load_pfn",
    "export_checkpoint",
    "PriorfitError",
    "PriorfitValidationError",
    "InvalidHyperparameterError",
    "CheckpointError",
    "PretrainingLimitError",
    "OutOfDomainWarning",
    "OutOfDomainError",
]

_LAZY = {
    "load": "priorfit.loading",
    "load_checkpoint": "priorfit.checkpoint",
    "load_pfn": "priorfit.checkpoint",
    "export_checkpoint": "priorfit.checkpoint",
    "PFNClassifier": "priorfit.estimators",
    "PFNRegressor": "priorfit.estimators",
    "AmortizedPosterior": "priorfit.posterior",
    "LearningCurveExtrapolator": "priorfit.learning_curves",
    "DistributionTransformer": "priorfit.networks.distribution_transformer",
    "GMM": "priorfit.gmm",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'priorfit' has no attribute {name!r}")
