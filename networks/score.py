"""Score network for compositional posteriors (Geffner, Papamakarios & Mnih, ICML 2023).

A conditional noise-prediction network ε̂(θ_t, t, x) for a variance-preserving diffusion of θ, trained by
denoising score matching on *single* observations; with probability ``null_prob`` the observation is
replaced by a learned "no observation" embedding, so the same network also learns the diffused prior's
score. For n iid observations the scores compose as

    ∇ log p_t(θ | x_1..n) ≈ Σ_i ∇ log p_t(θ | x_i) + (1 - n) ∇ log p_t(θ)

and ``sample`` runs the reverse diffusion with that score, with Langevin corrector steps at every noise
level (the paper's annealed-Langevin remedy for the composition being exact only at t = 0).
Everything runs in z-scored θ units; ``sample`` returns θ in the original units.
"""

from __future__ import annotations

import math

import torch
from priorfit.networks.posterior import Standardizer, check_observation_sets
from torch import Tensor, nn

__all__ = ["VPSchedule", "ScoreNetwork"]


class VPSchedule:
    """Variance-preserving SDE with a linear β(t) on t ∈ [0, 1]: θ_t = α_t θ_0 + σ_t ε."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))

    def sigma(self, t: Tensor) -> Tensor:
        return (1.0 - self.alpha(t) ** 2).clamp_min(1e-10).sqrt()


class _TimeEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2)))

    def forward(self, t: Tensor) -> Tensor:
        angles = t.unsqueeze(-1) * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ScoreNetwork(nn.Module):
    """ε̂(θ_t, t, x) for one observation x (or none: the prior), an MLP on [θ_t, time and x embeddings].

    Args:
        theta_dim, x_dim: sizes of θ and of one observation.
        hidden, layers: width and depth of the MLP.
        embed_dim: size of the observation and time embeddings.
        null_prob: probability, in training, of hiding the observation (learns the prior score).
    """

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        *,
        hidden: int = 128,
        layers: int = 3,
        embed_dim: int = 64,
        null_prob: float = 0.2,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
    ) -> None:
        super().__init__()
        self.theta_dim, self.x_dim, self.null_prob = theta_dim, x_dim, null_prob
        self.schedule = VPSchedule(beta_min, beta_max)
        self.theta_scaler, self.x_scaler = Standardizer(theta_dim), Standardizer(x_dim)
        self.time = _TimeEmbedding(embed_dim)
        self.x_embed = nn.Sequential(nn.Linear(x_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.null = nn.Parameter(torch.zeros(embed_dim))
        blocks: list[nn.Module] = [nn.Linear(theta_dim + 2 * embed_dim, hidden), nn.GELU()]
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.GELU()]
        self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, theta_dim))

    def check_x(self, x: Tensor) -> Tensor:
        return check_observation_sets(x, self.x_dim).to(self.x_scaler.mean.dtype)

    def fit_standardization(self, theta: Tensor, x: Tensor) -> None:
        self.theta_scaler.fit(theta)
        self.x_scaler.fit(x)

    def embed_observations(self, x: Tensor | None, count: int) -> Tensor:
        """(count, E) embeddings of observations x (count, Dx), or of "no observation" when x is None."""
        if x is None:
            return self.null.expand(count, -1)
        return self.x_embed(self.x_scaler(x))

    def eps(self, theta_t: Tensor, t: Tensor, x_embedding: Tensor) -> Tensor:
        """Predicted noise for z-scored θ_t (M, Dθ), times t (M,) and observation embeddings (M, E)."""
        return self.mlp(torch.cat([theta_t, self.time(t), x_embedding], dim=-1))

    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Denoising score matching on single observations: theta (B, Dθ), x (B, Dx); per-row loss (B,)."""
        theta0 = self.theta_scaler(theta)
        t = torch.rand(len(theta), device=theta.device) * (1.0 - 1e-3) + 1e-3
        noise = torch.randn_like(theta0)
        theta_t = self.schedule.alpha(t).unsqueeze(-1) * theta0 + self.schedule.sigma(t).unsqueeze(-1) * noise
        embedding = self.embed_observations(x, len(x))
        hide = torch.rand(len(x), 1, device=x.device) < self.null_prob
        embedding = torch.where(hide, self.null.expand_as(embedding), embedding)
        return (self.eps(theta_t, t, embedding) - noise).pow(2).sum(-1)

    def training_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The task's loss for sets x (B, n, Dx): every (θ, observation) pair is one single-observation sample
        (NaN rows are padding), as the method trains on single observations only."""
        present = ~torch.isnan(x).any(-1)  # (B, n)
        rows = present.nonzero(as_tuple=True)
        return self.loss(theta[rows[0]], x[rows])

    def composed_score(self, theta_t: Tensor, t: float, observation_embeddings: Tensor) -> Tensor:
        """Σ_i s(θ_t | x_i) + (1 - n) s(θ_t) for n embedded observations (n, E), at θ_t (M, Dθ)."""
        m, n = len(theta_t), len(observation_embeddings)
        times = torch.full((m * (n + 1),), t, device=theta_t.device)
        embeddings = torch.cat([observation_embeddings, self.null.unsqueeze(0)]).repeat_interleave(m, dim=0)
        eps = self.eps(theta_t.repeat(n + 1, 1), times, embeddings).view(n + 1, m, -1)
        weights = torch.ones(n + 1, 1, 1, device=theta_t.device)
        weights[-1] = 1.0 - n
        return -(weights * eps).sum(0) / self.schedule.sigma(torch.tensor(t))

    @torch.no_grad()
    def sample(
        self, x: Tensor, num_samples: int, *, steps: int = 200, corrector_steps: int = 1, snr: float = 0.1
    ) -> Tensor:
        """θ samples given n iid observations x (n, Dx): reverse diffusion (Euler-Maruyama) with the composed
        score, each step followed by ``corrector_steps`` Langevin steps at signal-to-noise ``snr``."""
        embeddings = self.embed_observations(x, len(x))
        theta = torch.randn(num_samples, self.theta_dim, device=x.device)
        times = torch.linspace(1.0, 1e-3, steps + 1)
        for index in range(steps):
            t, dt = float(times[index]), float(times[index] - times[index + 1])
            beta = float(self.schedule.beta(torch.tensor(t)))
            score = self.composed_score(theta, t, embeddings)
            theta = theta + (0.5 * beta * theta + beta * score) * dt + math.sqrt(beta * dt) * torch.randn_like(theta)
            t_next = float(times[index + 1])
            for _ in range(corrector_steps):
                score = self.composed_score(theta, t_next, embeddings)
                noise = torch.randn_like(theta)
                step = 2 * (snr * noise.norm(dim=-1).mean() / score.norm(dim=-1).mean().clamp_min(1e-8)) ** 2
                theta = theta + step * score + (2 * step).sqrt() * noise
        return theta * self.theta_scaler.std + self.theta_scaler.mean
