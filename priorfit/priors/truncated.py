"""A parameter prior restricted to where a density is above a threshold: the proposal of truncated sequential NPE.

TSNPE (Deistler et al. 2022) spends later simulation rounds inside the highest-probability region of the current
posterior estimate for one observation: the prior truncated to {θ : log q(θ | x_o) ≥ threshold}. Inside that
region the truncated prior is proportional to the prior, so a posterior trained on its simulations is the true
posterior there and needs no correction (unlike SNPE-C's atomic proposals, which leak mass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from priorfit.errors import PriorfitValidationError

__all__ = ["TruncatedPrior"]


class TruncatedPrior(Distribution):
    """``prior`` restricted to {θ : ``log_density``(θ) ≥ ``threshold``}, sampled by rejection from the prior.

    Args:
        prior: the parameter prior (a torch distribution over θ, samples (..., Dθ)).
        log_density: θ (M, Dθ) -> (M,), e.g. a posterior estimate's log q(θ | x_o).
        threshold: the region's lowest log density.
        max_draws: prior draws allowed per requested sample before giving up (the region is then too small for
            rejection; a named error says so).

    ``log_prob`` is the prior's inside the region and −inf outside (not renormalised: training never needs the
    constant). ``acceptance_rate`` is the fraction of prior draws the last ``sample`` call kept.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        prior: Distribution,
        log_density: Callable[[Tensor], Tensor],
        threshold: float,
        *,
        max_draws: int = 10_000,
    ) -> None:
        self.prior = prior
        self.log_density = log_density
        self.threshold = float(threshold)
        self.max_draws = max_draws
        self.acceptance_rate: float | None = None
        event_shape = prior.sample((1,)).shape[1:]
        super().__init__(torch.Size(), event_shape, validate_args=False)

    @property
    def support(self):
        return self.prior.support

    def inside(self, theta: Tensor) -> Tensor:
        """Whether each row of θ (M, Dθ) lies in the region."""
        with torch.no_grad():
            return self.log_density(theta) >= self.threshold

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        wanted = shape.numel()
        kept, have, drawn = [], 0, 0
        chunk = max(1000, 4 * wanted)
        while have < wanted:
            if drawn >= self.max_draws * max(wanted, 1):
                raise PriorfitValidationError(
                    f"only {have} of {drawn} prior draws fell in the truncated region; it is too small to sample by "
                    "rejection. Use fewer rounds, or a larger truncation_quantile"
                )
            theta = self.prior.sample((chunk,))
            drawn += chunk
            theta = theta[self.inside(theta)]
            kept.append(theta)
            have += len(theta)
            if have < wanted:  # the next chunk sized by the acceptance so far
                chunk = min(1_000_000, max(1000, int(1.2 * (wanted - have) * drawn / max(have, 1))))
        self.acceptance_rate = have / drawn if drawn else 1.0
        return torch.cat(kept)[:wanted].reshape(shape + self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        log_prior = self.prior.log_prob(value)
        flat = value.reshape(-1, value.shape[-1])
        inside = self.inside(flat).reshape(log_prior.shape)
        return torch.where(inside, log_prior, torch.full_like(log_prior, -torch.inf))
