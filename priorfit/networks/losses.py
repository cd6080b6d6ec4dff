"""Loss terms of the posterior networks that training tasks add to their objective."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn.attention import SDPBackend, sdpa_kernel

from priorfit.errors import PriorfitValidationError

__all__ = ["fisher_penalty", "as_distribution_fn", "PosteriorFn"]

PosteriorFn = Callable[[Tensor], Distribution]


def as_distribution_fn(posterior) -> PosteriorFn:
    """x (B, n, Dx) -> q(θ | x): from an ``AmortizedPosterior``, a posterior network, or a callable."""
    task = getattr(posterior, "task_", None)
    if getattr(posterior, "estimator", None) == "score" or getattr(posterior, "has_density", True) is False:
        raise PriorfitValidationError(
            "the 'score' estimator has no density: the Fisher penalty and attacks need a 'flow' or 'gmm' posterior"
        )
    if task is not None:
        return task.network.distribution
    if hasattr(posterior, "distribution"):
        return posterior.distribution
    if callable(posterior):
        return posterior
    raise PriorfitValidationError(
        f"cannot attack (or penalise) a {type(posterior).__name__}: pass a posterior or x -> Distribution"
    )


def fisher_penalty(posterior, x: Tensor, *, num_samples: int = 1) -> Tensor:
    """Monte Carlo trace of the Fisher information of q(θ | x) with respect to x, per row of x (B,).

    tr F(x) = E_θ~q(·|x) ||∇_x log q(θ | x)||², estimated with ``num_samples`` draws of θ per row (drawn
    without gradient; the paper uses one). The result keeps the graph (double backpropagation), so its mean
    can be added to a loss. Padding rows (NaN) of variable-size sets get no gradient.
    """
    distribution_fn = as_distribution_fn(posterior)
    repeated = x.detach().repeat_interleave(num_samples, dim=0).requires_grad_(True)
    # double backpropagation: the fused attention kernels have no second derivative, the math one does
    with sdpa_kernel(SDPBackend.MATH):
        q = distribution_fn(repeated)
        with torch.no_grad():
            theta = q.sample()
        log_q = q.log_prob(theta)
        # rows do not interact, so the gradient of the sum is each row's own gradient
        (grad,) = torch.autograd.grad(log_q.sum(), repeated, create_graph=True)
    trace = torch.nan_to_num(grad).square().flatten(1).sum(1)
    return trace.view(len(x), num_samples).mean(1)
