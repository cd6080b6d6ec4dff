"""Posterior samples for a batch of observation sets, from any posterior network (density or score)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["posterior_samples"]


@torch.no_grad()
def posterior_samples(network, x: Tensor, num_samples: int, *, chunk: int = 50) -> Tensor:
    """(num_samples, B, Dθ) draws of q(θ | x_b) for each set x_b of x (B, n, Dx), in chunks of sets."""
    parts = []
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk]
        if not network.has_density:  # score networks sample one observation set at a time
            parts.append(torch.stack([network.sample(xb, num_samples) for xb in block], dim=1))
        else:
            parts.append(network.distribution(block).sample((num_samples,)))
    return torch.cat(parts, dim=1)
