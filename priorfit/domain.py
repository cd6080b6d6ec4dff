"""The training domain a model records in its checkpoint, and the one check every query goes through.

A model answers confidently outside what it was trained on; these checks say so. ``TrainingDomain`` holds the
ranges seen in training (stored as plain JSON in the checkpoint, so a loaded model checks too) and warns with an
:class:`~priorfit.errors.OutOfDomainWarning` naming the quantity, its value, the trained range and what to do.
``PRIORFIT_STRICT_DOMAIN=1`` (or ``strict=True``) raises :class:`~priorfit.errors.OutOfDomainError` instead.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from priorfit.errors import OutOfDomainError, OutOfDomainWarning, PriorfitValidationError, SimulatorWarning

__all__ = [
    "TrainingDomain",
    "domain_of_simulations",
    "strict_domain",
    "usable_simulations",
    "warn_lost_simulations",
    "warn_out_of_domain",
]


def strict_domain() -> bool:
    """Whether out-of-domain queries raise instead of warning (``PRIORFIT_STRICT_DOMAIN=1``)."""
    return os.environ.get("PRIORFIT_STRICT_DOMAIN", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class TrainingDomain:
    """Ranges seen in training: ``ranges[quantity] = [low, high]`` (per-feature lists for vectors)."""

    ranges: dict[str, list] = field(default_factory=dict)
    strict: bool | None = None  # None: follow PRIORFIT_STRICT_DOMAIN

    def to_dict(self) -> dict:
        return {name: list(bounds) for name, bounds in self.ranges.items()}

    @classmethod
    def from_dict(cls, ranges: dict | None) -> TrainingDomain:
        return cls(dict(ranges or {}))

    def check(self, quantity: str, values: Tensor | float, *, advice: str = "") -> None:
        """Warn (or raise) when any of ``values`` (per feature along the last axis) leaves the trained range."""
        if quantity not in self.ranges:
            return
        low, high = (torch.as_tensor(bound, dtype=torch.float64) for bound in self.ranges[quantity])
        values = torch.as_tensor(values, dtype=torch.float64)
        outside = (values < low) | (values > high)
        if not bool(outside.any()):
            return
        if values.dim() and low.dim():  # per feature: name the first feature outside
            feature = int(outside.reshape(-1, outside.shape[-1]).any(0).nonzero()[0])
            value = values.reshape(-1, values.shape[-1])[:, feature]
            value = float(value[(value < low[feature]) | (value > high[feature])][0])
            where, low, high = f"{quantity}[{feature}]", float(low[feature]), float(high[feature])
        else:
            value = float(values.reshape(-1)[outside.reshape(-1)][0])
            where, low, high = quantity, float(low), float(high)
        message = (
            f"{where} = {value:g} is outside the training domain [{low:g}, {high:g}]: the answer is an "
            f"extrapolation the model was never trained for.{' ' + advice if advice else ''}"
        )
        warn_out_of_domain(message, strict=self.strict, stacklevel=4)


def warn_out_of_domain(message: str, *, strict: bool | None = None, stacklevel: int = 3) -> None:
    """An :class:`~priorfit.errors.OutOfDomainWarning` with ``message``, or the error when strict (``strict=True``,
    or ``PRIORFIT_STRICT_DOMAIN=1`` where ``strict`` is None)."""
    message += " (Set PRIORFIT_STRICT_DOMAIN=1 to make this an error.)"
    if strict or (strict is None and strict_domain()):
        raise OutOfDomainError(message)
    warnings.warn(message, OutOfDomainWarning, stacklevel=stacklevel)


def domain_of_simulations(theta: Tensor, x: Tensor) -> TrainingDomain:
    """The domain of a posterior's training simulations: θ (N, Dθ), x (N, n, Dx) with NaN rows as padding."""
    present = ~torch.isnan(x).all(-1)  # (N, n): real observations
    counts = present.sum(1)
    observed = x[present]
    return TrainingDomain(
        {
            "num_observations": [int(counts.min()), int(counts.max())],
            "x": [observed.min(0).values.tolist(), observed.max(0).values.tolist()],
            "theta": [theta.min(0).values.tolist(), theta.max(0).values.tolist()],
            "num_simulations": [len(theta), len(theta)],
        }
    )


def warn_lost_simulations(dropped: int, total: int, what: str) -> None:
    """Above 1 % of the simulations lost, the posterior is one under a truncated prior: say so."""
    if total and dropped / total > 0.01:
        warnings.warn(
            f"{dropped} of {total} simulations ({dropped / total:.1%}) {what}: the posterior is trained only where "
            "the simulator works, i.e. under the prior truncated to that region; check the simulator there",
            SimulatorWarning,
            stacklevel=3,
        )


def usable_simulations(theta: Tensor, x: Tensor) -> tuple[Tensor, Tensor, int]:
    """The simulations a posterior trains on, of θ (N, Dθ) and x (N, n, Dx), and how many were dropped.

    Dropped (and warned about above 1 %): an infinite value anywhere, a NaN in θ, an observation with some but not
    all coordinates NaN, a set with no observation. All-NaN observation rows are kept: they pad sets of different
    sizes. Fewer than 2 usable simulations is an error.
    """
    missing = torch.isnan(x)
    padding, broken = missing.all(-1), (missing.any(-1) & ~missing.all(-1)).any(-1)
    usable = (~torch.isinf(x)).all(dim=(1, 2)) & (~padding).any(-1) & ~broken & torch.isfinite(theta).all(1)
    num_dropped = int((~usable).sum())
    if num_dropped:
        theta, x = theta[usable], x[usable]
        warn_lost_simulations(num_dropped, len(usable), "were dropped (NaN or infinite values)")
    if len(theta) < 2:
        raise PriorfitValidationError(
            f"no usable simulations: {len(theta)} of {len(usable)} rows are finite with at least one observation; "
            "training needs at least 2 (check the simulator for NaN / infinite outputs)"
        )
    return theta, x, num_dropped
