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

import numpy as np
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

    def check(self, quantity: str, values: Tensor | np.ndarray | float, *, advice: str = "") -> None:
        """Warn (or raise) when any of ``values`` (per feature along the last axis) leaves the trained range.

        Runs on every query, so a count or a small tensor (up to ``SMALL`` numbers) is checked in plain Python,
        which costs microseconds where a torch or numpy reduction costs tens; NaN is never outside."""
        stored = self.ranges.get(quantity)
        if stored is None:
            return
        per_feature = isinstance(stored[0], list)
        if isinstance(values, (int, float)) and not per_feature:
            if values < stored[0] or values > stored[1]:
                self._warn(quantity, float(values), float(stored[0]), float(stored[1]), advice)
            return
        columns = _small_columns(values, per_feature, len(stored[0]) if per_feature else 1)
        if columns is None:
            self._check_array(quantity, values, advice)
            return
        lows, highs = (stored[0], stored[1]) if per_feature else ([stored[0]], [stored[1]])
        for feature, (column, low, high) in enumerate(zip(columns, lows, highs)):
            for value in column:
                if value < low or value > high:
                    where = f"{quantity}[{feature}]" if per_feature else quantity
                    self._warn(where, float(value), float(low), float(high), advice)
                    return

    def _check_array(self, quantity: str, values, advice: str) -> None:
        """:meth:`check` for large inputs, in numpy."""
        low, high = (np.asarray(bound, dtype=np.float64) for bound in self.ranges[quantity])
        if isinstance(values, Tensor):
            values = values.detach().cpu().numpy()
        values = np.asarray(values, dtype=np.float64)
        outside = (values < low) | (values > high)
        if not outside.any():
            return
        if values.ndim and low.ndim:  # per feature: name the first feature outside
            feature = int(np.flatnonzero(outside.reshape(-1, outside.shape[-1]).any(0))[0])
            column = values.reshape(-1, values.shape[-1])[:, feature]
            value = float(column[(column < low[feature]) | (column > high[feature])][0])
            where, low, high = f"{quantity}[{feature}]", float(low[feature]), float(high[feature])
        else:
            value = float(values.reshape(-1)[outside.reshape(-1)][0])
            where, low, high = quantity, float(low), float(high)
        self._warn(where, value, low, high, advice)

    def _warn(self, where: str, value: float, low: float, high: float, advice: str) -> None:
        message = (
            f"{where} = {value:g} is outside the training domain [{low:g}, {high:g}]: the answer is an "
            f"extrapolation the model was never trained for.{' ' + advice if advice else ''}"
        )
        warn_out_of_domain(message, strict=self.strict, stacklevel=5)


SMALL = 256  # inputs up to this many numbers are checked in plain Python


def _small_columns(values, per_feature: bool, width: int) -> list | None:
    """The values of a small tensor as columns (one per feature; one column for scalar bounds), or None for anything
    else (large, not a tensor, a width that does not match the bounds): the numpy path handles those."""
    if not isinstance(values, Tensor) or values.numel() > SMALL:
        return None
    if not per_feature:
        return [values.reshape(-1).tolist()]
    if values.dim() == 0 or values.shape[-1] != width:
        return None
    rows = values.tolist() if values.dim() > 1 else [values.tolist()]
    for _ in range(values.dim() - 2):
        rows = [row for block in rows for row in block]
    return list(zip(*rows)) if rows else [[] for _ in range(width)]


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
