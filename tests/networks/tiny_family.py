"""A posterior network family written the way a newcomer would add one (see tests/networks/test_network_families.py):
this module, one line in ``priorfit.registry.FAMILIES`` and a config file are the whole change."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from priorfit.networks.posterior import PosteriorNetwork


class MLPPosterior(PosteriorNetwork):
    """Set encoder + an MLP giving a diagonal Gaussian over θ."""

    estimator = "mlp"

    def __init__(self, theta_dim: int, x_dim: int, *, encoder: dict | None = None, hidden: int = 32) -> None:
        super().__init__(theta_dim, x_dim, encoder)
        self.net = nn.Sequential(nn.Linear(self.embed_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * theta_dim))

    def head(self, context: Tensor) -> Distribution:
        mean, log_scale = self.net(context).chunk(2, dim=-1)
        return Independent(Normal(mean, torch.exp(log_scale.clamp(-7, 5))), 1)
