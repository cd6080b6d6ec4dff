"""Building blocks of the vector-field estimators: the sinusoidal time embedding and the conditional field
network f(θ_t, t | c) of flow matching (its velocity) and of the score estimator with ``field="residual"``
(its noise prediction).

In ``ResidualFieldNet`` (the layout of sbi's ``VectorFieldMLP``) θ_t and the conditioning embedding c enter through
their own linear layers, the time embedding is added inside every residual block, and each block is post-normalised
(LayerNorm; not in the score estimator, see ``layer_norm``). On posteriors that mix a narrow and a wide component
(sbibm's Gaussian mixture) a plain MLP on [θ_t, t, c] blurs the two into one and this design does not
(``benchmarks/sbi_tasks.py``, the fmpe column). Unlike sbi's, its output layer does not start at zero: a zero field
keeps the weight average fmpe validates (EMA, decay 0.999) at the zero field for hundreds of steps, so early
stopping ended 1,000-simulation trainings after 20 epochs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ResidualFieldNet", "TimeEmbedding"]


class TimeEmbedding(nn.Module):
    """Sines and cosines of t at ``dim // 2`` frequencies spaced geometrically from 1 to ``max_frequency``."""

    def __init__(self, dim: int, max_frequency: float = 1000.0) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2)))

    def forward(self, t: Tensor) -> Tensor:
        angles = t.unsqueeze(-1) * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResidualFieldNet(nn.Module):
    """f(θ_t, t | c): ``depth`` residual blocks of ``width`` units (GELU) after separate θ_t and c input layers.

    ``time_dim``, ``time_frequency``: size and highest frequency (rad per unit t) of the sinusoidal time embedding.
    ``layer_norm``: post-normalise each block. The score estimator turns it off: its noise prediction must follow
    the scale of θ_t (ε̂ ≈ θ_t near t = 1), which the normalisation removes; with it, deterministic (DDIM) reverse
    diffusion drew single-observation posteriors as wide as the prior on a 2-D Gaussian problem.
    """

    def __init__(
        self,
        theta_dim: int,
        context_dim: int,
        *,
        width: int = 100,
        depth: int = 5,
        time_dim: int = 32,
        time_frequency: float = 30.0,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        self.time = TimeEmbedding(time_dim, time_frequency)
        self.theta_in = nn.Linear(theta_dim, width)
        self.context_in = nn.Linear(context_dim, width)
        self.merge = nn.Linear(2 * width, width)
        self.time_in = nn.Linear(time_dim, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.norms = nn.ModuleList((nn.LayerNorm(width) if layer_norm else nn.Identity()) for _ in range(depth))
        self.out = nn.Linear(width, theta_dim)
        self.activation = nn.GELU()

    def forward(self, theta_t: Tensor, t: Tensor, context: Tensor) -> Tensor:
        """f for θ_t (..., Dθ), times t (...) and conditioning embeddings c (..., C), broadcast against each other."""
        theta_part, context_part = self.merge_parts(theta_t, context)
        return self.from_merged(theta_part + context_part, t)

    def merge_parts(self, theta_t: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """The merge layer's input, split into its θ_t term (..., W) and its context term (..., W), bias included.

        The merge layer is linear in its two halves, so a caller that pairs many θ_t with many contexts (the score
        estimator's one term per observation) computes each half once and sums them by broadcasting.
        """
        theta_weight, context_weight = self.merge.weight.split(self.theta_in.out_features, dim=1)
        theta_part = self.activation(self.theta_in(theta_t)) @ theta_weight.T
        return theta_part, self.activation(self.context_in(context)) @ context_weight.T + self.merge.bias

    def from_merged(self, merged: Tensor, t: Tensor) -> Tensor:
        """f from the merge layer's output before its activation (..., W) and times t (...) broadcast against it."""
        hidden = self.activation(merged)
        time = self.time_in(self.time(t))
        for block, norm in zip(self.blocks, self.norms):
            hidden = norm(hidden + self.activation(block(hidden)) + time)
        return self.out(hidden)
