"""The `Batch` of synthetic datasets and the `Prior` protocol every sampler follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from priorfit._validation import check_int
from priorfit.errors import InvalidHyperparameterError

__all__ = ["Batch", "Prior", "ExactPredictivePrior", "check_sample_arguments"]


@dataclass
class Batch:
    """B synthetic datasets of N points each.

    Attributes:
        x: inputs / observations, shape (B, N, Dx).
        y: targets of supervised priors, shape (B, N, Dy), or None.
        theta: latent parameters that generated each dataset, shape (B, Dθ), or None.
        meta: per-batch or per-dataset extras (hyperparameters as (B,) tensors, indices).
    """

    x: Tensor
    y: Tensor | None = None
    theta: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def num_points(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str) -> Batch:
        def move(value: Any) -> Any:
            return value.to(device) if isinstance(value, Tensor) else value

        return Batch(
            x=move(self.x),
            y=move(self.y),
            theta=move(self.theta),
            meta={key: move(value) for key, value in self.meta.items()},
        )


@runtime_checkable
class Prior(Protocol):
    """Anything that samples whole batches of synthetic datasets."""

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch: ...


@runtime_checkable
class ExactPredictivePrior(Prior, Protocol):
    """A prior whose posterior predictive is known in closed form."""

    def predictive_log_density(
        self, x_context: Tensor, y_context: Tensor, x_query: Tensor, y_query: Tensor
    ) -> Tensor: ...


def check_sample_arguments(batch_size: Any, num_points: Any, generator: Any) -> None:
    """Named errors for ``sample``'s arguments, before any tensor is drawn (every prior calls it first)."""
    check_int(batch_size, "batch_size", minimum=0)
    check_int(num_points, "num_points", minimum=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidHyperparameterError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
