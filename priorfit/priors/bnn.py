"""Bayesian-neural-network prior: each dataset is a random MLP plus Gaussian noise (PFN paper, §5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.hyperpriors import HyperparameterSpec, LogUniform, Uniform, as_hyperprior

__all__ = ["BNNPrior"]

_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "sin": torch.sin,
    "identity": lambda h: h,
}


class BNNPrior:
    """Datasets y = f(x) + ε where f is an MLP with random architecture and weights.

    Per dataset: depth in [1, max_depth] hidden layers, width in [min_width, max_width],
    an activation from ``activations``, weight scale and noise std from hyperpriors, and
    a random fraction of weights dropped (``dropout``). All datasets of a batch are run as
    one padded MLP of the maximum size with per-dataset masks, so sampling has no Python
    loop over datasets. The noiseless function is standardised over each dataset's points,
    so ``noise_std`` is relative to a unit-variance signal.

    Example:
        >>> prior = BNNPrior(num_features=3)
        >>> prior.sample(4, 16, generator=torch.Generator().manual_seed(0)).y.shape
        torch.Size([4, 16, 1])
    """

    has_exact_predictive = False

    def __init__(
        self,
        *,
        num_features: int = 1,
        max_depth: int = 3,
        min_width: int = 4,
        max_width: int = 32,
        activations: Sequence[str] = ("tanh", "relu", "sigmoid", "sin"),
        weight_scale: HyperparameterSpec = LogUniform(0.5, 3.0),
        noise_std: HyperparameterSpec = LogUniform(0.01, 0.5),
        dropout: HyperparameterSpec = Uniform(0.0, 0.5),
        input_distribution: Literal["uniform", "gaussian"] = "gaussian",
    ) -> None:
        if not isinstance(num_features, int) or num_features < 1:
            raise InvalidHyperparameterError(f"num_features (Dx) must be a positive integer, got {num_features!r}")
        if max_depth < 1 or not 1 <= min_width <= max_width:
            raise InvalidHyperparameterError(
                f"need max_depth >= 1 and 1 <= min_width <= max_width, got "
                f"max_depth={max_depth}, min_width={min_width}, max_width={max_width}"
            )
        unknown = [a for a in activations if a not in _ACTIVATIONS]
        if unknown or not activations:
            raise InvalidHyperparameterError(f"unknown activations {unknown}; choose from {sorted(_ACTIVATIONS)}")
        if input_distribution not in ("uniform", "gaussian"):
            raise InvalidHyperparameterError(
                f"input_distribution must be 'uniform' or 'gaussian', got {input_distribution!r}"
            )
        self.num_features = num_features
        self.max_depth = int(max_depth)
        self.min_width = int(min_width)
        self.max_width = int(max_width)
        self.activations = tuple(activations)
        self.weight_scale = as_hyperprior(weight_scale, "weight_scale")
        self.noise_std = as_hyperprior(noise_std, "noise_std")
        self.dropout = as_hyperprior(dropout, "dropout", positive=False)
        self.input_distribution = input_distribution

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        dev = generator.device if generator is not None else None
        b, w_max = batch_size, self.max_width

        def randint(low: int, high: int) -> Tensor:
            return torch.randint(low, high + 1, (b,), generator=generator, device=dev)

        depth = randint(1, self.max_depth)
        width = randint(self.min_width, self.max_width)
        activation = randint(0, len(self.activations) - 1)
        scale = self.weight_scale.sample(b, generator=generator, device=dev)
        noise_std = self.noise_std.sample(b, generator=generator, device=dev)
        keep_prob = 1.0 - self.dropout.sample(b, generator=generator, device=dev).clamp(0, 0.95)

        if self.input_distribution == "uniform":
            x = torch.rand(b, num_points, self.num_features, generator=generator, device=dev)
        else:
            x = torch.randn(b, num_points, self.num_features, generator=generator, device=dev)

        unit_mask = (torch.arange(w_max, device=dev) < width.unsqueeze(1)).float()  # (B, W)

        def random_weights(fan_in: Tensor | int, rows: int) -> Tensor:
            weights = torch.randn(b, rows, w_max, generator=generator, device=dev)
            kept = torch.rand(b, rows, w_max, generator=generator, device=dev)
            kept = kept < keep_prob.view(-1, 1, 1)
            fan_in = torch.as_tensor(fan_in, device=dev, dtype=torch.float32).view(-1, 1, 1)
            std = scale.view(-1, 1, 1) / (fan_in * keep_prob.view(-1, 1, 1)).sqrt()
            return weights * kept * std

        hidden = x
        fan_in: Tensor | int = self.num_features
        readouts = []
        for _ in range(self.max_depth):
            rows = hidden.shape[-1]
            weight = random_weights(fan_in, rows)
            bias = torch.randn(b, 1, w_max, generator=generator, device=dev) * 0.5
            pre = hidden @ weight + bias
            hidden = self._activate(pre, activation) * unit_mask.unsqueeze(1)
            fan_in = width.float()
            readout = torch.randn(b, w_max, 1, generator=generator, device=dev)
            readouts.append(hidden @ readout / width.float().sqrt().view(-1, 1, 1))  # (B, N, 1)
        f = torch.stack(readouts, dim=0)[depth - 1, torch.arange(b, device=dev)]  # (B, N, 1)
        f = (f - f.mean(1, keepdim=True)) / f.std(1, keepdim=True, correction=0).clamp_min(1e-6)
        eps = torch.randn(b, num_points, 1, generator=generator, device=dev)
        y = f + noise_std.view(-1, 1, 1) * eps
        meta = {"depth": depth, "width": width, "activation": activation, "weight_scale": scale, "noise_std": noise_std}
        return Batch(x=x, y=y, meta=meta)

    def _activate(self, pre: Tensor, activation: Tensor) -> Tensor:
        out = torch.zeros_like(pre)
        for index, name in enumerate(self.activations):
            chosen = (activation == index).view(-1, 1, 1)
            out = torch.where(chosen, _ACTIVATIONS[name](pre), out)
        return out
