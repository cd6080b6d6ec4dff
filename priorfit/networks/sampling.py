"""Posterior samples from any posterior network (density or score), for a batch of sets or as one Distribution."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from priorfit.errors import PriorfitValidationError

__all__ = ["posterior_samples", "posterior_log_prob", "ObservedPosterior", "NO_DENSITY"]

NO_DENSITY = "the 'score' estimator has no tractable density: use sample(), or a 'flow' / 'gmm' estimator"


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


def posterior_log_prob(network, x: Tensor, theta: Tensor, *, chunk: int = 50) -> Tensor:
    """log q(θ_b | x_b) for sets x (B, n, Dx) and θ (..., B, Dθ), in chunks of sets as ``posterior_samples``."""
    parts = [
        network.distribution(x[start : start + chunk]).log_prob(theta[..., start : start + chunk, :])
        for start in range(0, len(x), chunk)
    ]
    return torch.cat(parts, dim=-1)


class ObservedPosterior(Distribution):
    """q(θ | x_obs) for one observation set as a torch Distribution: batch shape (), event shape (Dθ,).

    ``conditional`` is the network's answer for that set: a distribution of batch shape (1,) (flow, gmm) or a
    sampler with only ``sample((n,)) -> (n, 1, Dθ)`` (score). Samples outside ``prior_support`` are rejected and
    redrawn; ``acceptance_rate`` is the fraction kept by the last ``sample`` call. ``log_prob`` is the network's
    density, not renormalised to the support, and exists only for density estimators.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, conditional, theta_dim: int, *, prior_support: constraints.Constraint | None = None) -> None:
        self.conditional = conditional
        self.prior_support = prior_support
        self.acceptance_rate: float | None = None
        super().__init__(torch.Size(), torch.Size([theta_dim]), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return self.prior_support if self.prior_support is not None else constraints.real_vector

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        wanted = shape.numel()
        kept, drawn, have = [], 0, 0
        while have < wanted:
            draw = self.conditional.sample((max(wanted - have, 256),))[:, 0]
            drawn += len(draw)
            if self.prior_support is not None:
                draw = draw[self.prior_support.check(draw)]
            kept.append(draw)
            have += len(draw)
            if drawn > 100 * wanted and have < wanted:
                raise PriorfitValidationError(
                    f"only {have} of {drawn} posterior samples fell inside the prior's support; the posterior "
                    "estimate does not fit this observation (pass reject_outside_prior=False to see them)"
                )
        self.acceptance_rate = have / drawn if drawn else 1.0
        samples = torch.cat(kept)[:wanted] if kept else torch.empty(0, *self.event_shape)
        return samples.reshape(shape + self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """log q(θ | x_obs) for θ of shape (..., Dθ), returned with shape (...)."""
        if not hasattr(self.conditional, "log_prob"):
            raise PriorfitValidationError(NO_DENSITY)
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[-1] != self.event_shape[0]:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise PriorfitValidationError(f"θ must have shape (..., {self.event_shape[0]}), got {shape}")
        flat = value.reshape(-1, 1, self.event_shape[0])
        return self.conditional.log_prob(flat)[:, 0].reshape(value.shape[:-1])
