"""Flow matching posterior estimation (FMPE; Dax, Wildberger et al., NeurIPS 2023): a velocity field v(θ_t, t | x).

Training regresses the straight-line (optimal-transport) conditional velocity: with θ_0 ~ N(0, I), θ_1 the
simulated parameter (z-scored) and t ~ U(0, 1),

    θ_t = (1 − (1 − σ_min) t) θ_0 + t θ_1,   target = θ_1 − (1 − σ_min) θ_0,

a plain regression loss, no ODE in training. The posterior is the flow of dθ/dt = v(θ, t | x) from N(0, I) at
t = 0 to t = 1, integrated by zuko's adaptive Dormand–Prince solver (``zuko.transforms.FreeFormJacobianTransform``);
``log_prob`` integrates the exact divergence alongside (the instantaneous change of variables), so it is exact up
to the solver's tolerance and costs one backward pass per θ dimension per solver step.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution
from zuko.distributions import DiagNormal, NormalizingFlow
from zuko.transforms import FreeFormJacobianTransform

from priorfit.networks.posterior import PosteriorNetwork
from priorfit.networks.residual import ResidualFieldNet

__all__ = ["FlowMatchingPosterior"]

SIGMA_MIN = 1e-4  # width of the straight paths at t = 1 (Lipman et al.'s σ_min)


class FlowMatchingPosterior(PosteriorNetwork):
    """Set encoder + a residual velocity network (``priorfit.networks.residual.ResidualFieldNet``) on θ_t, the time
    and the set embedding.

    ``width``, ``depth``: the velocity network's residual blocks. ``time_frequency``: the highest frequency (rad per
    unit t) of the sinusoidal time embedding; it bounds how fast the field can change in t and so the adaptive
    solver's step count (a diffusion model's 1,000 makes
    ``tests/test_flow_matching.py::test_sampling_takes_few_solver_steps`` fail). ``atol``, ``rtol``: the ODE
    solver's tolerances for sampling and densities (zuko's defaults).
    """

    estimator = "fmpe"  # the AmortizedPosterior estimator name of this family
    loss_is_nll = False  # the training loss is the flow-matching regression, not −log q(θ | x)

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        *,
        encoder: dict | None = None,
        width: int = 100,
        depth: int = 5,
        time_dim: int = 32,
        time_frequency: float = 30.0,
        atol: float = 1e-6,
        rtol: float = 1e-5,
    ) -> None:
        super().__init__(theta_dim, x_dim, encoder)
        self.atol, self.rtol = float(atol), float(rtol)
        self.velocity_net = ResidualFieldNet(
            theta_dim, self.embed_dim, width=width, depth=depth, time_dim=time_dim, time_frequency=time_frequency
        )

    def velocity(self, theta_t: Tensor, t: Tensor, context: Tensor) -> Tensor:
        """v(θ_t, t | x) for z-scored θ_t (..., B, Dθ), times t (a scalar or (..., B)) and set embeddings (B, E)."""
        return self.velocity_net(theta_t, t.to(theta_t.dtype).expand(theta_t.shape[:-1]), context)

    def training_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The conditional flow-matching loss per row (mean squared velocity error over θ's dimensions)."""
        context = self.summary(x)
        theta = self.theta_scaler(theta)
        noise = torch.randn_like(theta)
        t = torch.rand(len(theta), 1, dtype=theta.dtype, device=theta.device)
        theta_t = (1 - (1 - SIGMA_MIN) * t) * noise + t * theta
        target = theta - (1 - SIGMA_MIN) * noise
        return (self.velocity(theta_t, t[:, 0], context) - target).square().mean(-1)

    def head(self, context: Tensor) -> Distribution:
        # zuko's flows map θ to the base: integrate from t = 1 (θ) back to t = 0 (noise); sampling runs it forward
        def field(t: Tensor, theta_t: Tensor) -> Tensor:
            return self.velocity(theta_t, t, context)

        transform = FreeFormJacobianTransform(
            field, t0=1.0, t1=0.0, phi=(context, *self.parameters()), atol=self.atol, rtol=self.rtol
        )
        zeros = context.new_zeros(len(context), self.theta_dim)
        return NormalizingFlow(transform, DiagNormal(zeros, torch.ones_like(zeros)))
