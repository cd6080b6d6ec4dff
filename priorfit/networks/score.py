"""Score network for compositional posteriors (Geffner, Papamakarios & Mnih, ICML 2023).

A conditional noise-prediction network ε̂(θ_t, t, x) for a variance-preserving diffusion of θ, trained by
denoising score matching on *single* observations (or, PF-NPSE, on groups of up to ``group_size``); with
probability ``null_prob`` the observation is replaced by a learned "no observation" embedding, so the same
network also learns the diffused prior's score. For n iid observations the scores compose (Geffner et al.) as

    ∇ log p_t(θ | x_1..n) ≈ Σ_i ∇ log p_t(θ | x_i) + (1 - n) ∇ log p_t(θ),

exact only as t → 0, which the paper repairs with Langevin corrector steps at every noise level; or, the
default here, with GAUSS (Linhart et al. 2024), which weighs each term by the precision of a Gaussian view
of its denoising posterior and needs no corrector. Everything runs in z-scored θ units; ``sample`` returns θ
in the original units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from priorfit._validation import check_observation_sets
from priorfit.networks.posterior import Standardizer
from priorfit.networks.residual import ResidualFieldNet, TimeEmbedding

__all__ = ["ComposedScoreSampler", "VPSchedule", "ScoreNetwork"]

_BLOCK_ROWS = 4096  # rows per hidden-layer block when evaluating many particles × observations
T_MIN = 1e-3  # the earliest diffusion time trained on and integrated to


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


FIELDS = {"mlp": (128, 3), "residual": (100, 5)}  # the ε̂ network's layouts, with their default width and depth


class ScoreNetwork(nn.Module):
    """ε̂(θ_t, t, x) for one observation x (or none: the prior) from θ_t, the time and an embedding of x.

    Args:
        theta_dim, x_dim: sizes of θ and of one observation.
        field: the ε̂ network: "mlp" (one MLP on [θ_t, time and x embeddings]) or "residual"
            (``ResidualFieldNet`` without its LayerNorm, the layout of sbi's NPSE and of our fmpe: residual
            blocks with the time added in each).
        hidden, layers: its width and depth (default 128 and 3 for "mlp", 100 and 5 for "residual").
        embed_dim: size of the observation embedding (and, "mlp", of the time embedding).
        null_prob: probability, in training, of hiding the observation (learns the prior score).
        group_size: 1 for the fully factorized method (one score term per observation); m > 1 for the
            paper's partially factorized PF-NPSE: the network learns the score given a group of 1..m
            observations (mean-pooled embeddings and the log group size; train on sets of up to m), and
            sampling composes one term per group of m consecutive observations.
        log_time_share: the share of training diffusion times drawn log-uniformly on [T_MIN, 1] (denser near
            0) instead of uniformly (default 0); see ``training_times``.
    """

    has_density = False  # declared capability: samples (``sample``) but no tractable log_prob
    estimator = "score"  # the AmortizedPosterior estimator name of this family

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        *,
        field: str = "mlp",
        hidden: int | None = None,
        layers: int | None = None,
        embed_dim: int = 64,
        null_prob: float = 0.2,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        group_size: int = 1,
        log_time_share: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
        if not 0.0 <= log_time_share <= 1.0:
            raise ValueError(f"log_time_share must lie in [0, 1], got {log_time_share!r}")
        self.log_time_share = float(log_time_share)
        if field not in FIELDS:
            raise ValueError(f"field must be one of {sorted(FIELDS)}, got {field!r}")
        hidden = FIELDS[field][0] if hidden is None else hidden
        layers = FIELDS[field][1] if layers is None else layers
        self.field_kind = field
        self.theta_dim, self.x_dim, self.null_prob, self.group_size = theta_dim, x_dim, null_prob, group_size
        self.schedule = VPSchedule(beta_min, beta_max)
        self.theta_scaler, self.x_scaler = Standardizer(theta_dim), Standardizer(x_dim)
        self.x_embed = nn.Sequential(nn.Linear(x_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.null = nn.Parameter(torch.zeros(embed_dim))
        if group_size > 1:
            self.group_embed = nn.Sequential(
                nn.Linear(embed_dim + 1, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim)
            )
        # covariance of the training θ in z-scored units: GAUSS's Gaussian view of the prior
        self.register_buffer("prior_covariance", torch.eye(theta_dim))
        if field == "residual":
            self.field = ResidualFieldNet(theta_dim, embed_dim, width=hidden, depth=layers, layer_norm=False)
        else:
            self.time = TimeEmbedding(embed_dim)
            blocks: list[nn.Module] = [nn.Linear(theta_dim + 2 * embed_dim, hidden), nn.GELU()]
            for _ in range(layers - 1):
                blocks += [nn.Linear(hidden, hidden), nn.GELU()]
            self.mlp = nn.Sequential(*blocks, nn.Linear(hidden, theta_dim))

    def check_x(self, x: Tensor) -> Tensor:
        return check_observation_sets(x, self.x_dim).to(self.x_scaler.mean.dtype)

    def fit_standardization(self, theta: Tensor, x: Tensor) -> None:
        self.theta_scaler.fit(theta)
        self.x_scaler.fit(x)
        self.prior_covariance.copy_(torch.cov(self.theta_scaler(theta).T).reshape(self.theta_dim, self.theta_dim))

    def embed_observations(self, x: Tensor | None, count: int) -> Tensor:
        """Embeddings of the score terms for n observations x (n, Dx): (n, E) with ``group_size`` 1, else
        (⌈n / m⌉, E), one per group of m consecutive observations; "no observation" (count, E) when x is None."""
        if x is None:
            return self.null.expand(count, -1)
        if self.group_size == 1:
            return self.x_embed(self.x_scaler(x))
        groups = -(-len(x) // self.group_size)
        padded = x.new_full((groups * self.group_size, self.x_dim), float("nan"))
        padded[: len(x)] = x
        return self.embed_groups(padded.view(groups, self.group_size, self.x_dim))

    def embed_groups(self, x: Tensor) -> Tensor:
        """(G, E) embeddings of G groups of observations x (G, m, Dx); NaN rows are padding (PF-NPSE only)."""
        present = (~torch.isnan(x).any(-1)).unsqueeze(-1).to(x.dtype)
        per_observation = self.x_embed(self.x_scaler(torch.nan_to_num(x)))
        count = present.sum(1)
        pooled = (per_observation * present).sum(1) / count.clamp_min(1.0)
        return self.group_embed(torch.cat([pooled, count.clamp_min(1.0).log()], dim=-1))

    def eps(self, theta_t: Tensor, t: Tensor, x_embedding: Tensor) -> Tensor:
        """Predicted noise for z-scored θ_t (M, Dθ), times t (M,) and observation embeddings (M, E)."""
        if self.field_kind == "residual":
            return self.field(theta_t, t, x_embedding)
        return self.mlp(torch.cat([theta_t, self.time(t), x_embedding], dim=-1))

    def loss(self, theta: Tensor, embedding: Tensor) -> Tensor:
        """Denoising score matching given embedded observations: theta (B, Dθ), embedding (B, E); loss (B,)."""
        theta0 = self.theta_scaler(theta)
        t = self.training_times(len(theta), theta.device)
        noise = torch.randn_like(theta0)
        theta_t = self.schedule.alpha(t).unsqueeze(-1) * theta0 + self.schedule.sigma(t).unsqueeze(-1) * noise
        hide = torch.rand(len(embedding), 1, device=embedding.device) < self.null_prob
        embedding = torch.where(hide, self.null.expand_as(embedding), embedding)
        return (self.eps(theta_t, t, embedding) - noise).pow(2).sum(-1)

    def training_times(self, count: int, device: torch.device | None = None) -> Tensor:
        """Diffusion times for the loss: uniform on [T_MIN, 1], a share ``log_time_share`` of them log-uniform.

        The noise-prediction loss weighs a score error at time t by σ_t², so with uniform times the small-t
        scores that draw a narrow posterior's fine structure (two moons' crescents) are barely trained; sampling
        more small times moves the weight there, and away from the larger times the composition of many
        observations leans on: a share of 0.5 helped two moons and cost the composed 10-D Gaussian-linear
        posterior at n = 10 (the README's sbi-task table and its notes), so the default stays uniform.
        """
        uniform = torch.rand(count, device=device) * (1.0 - T_MIN) + T_MIN
        if self.log_time_share == 0.0:
            return uniform
        log_uniform = torch.exp(torch.rand(count, device=device) * math.log(T_MIN))
        return torch.where(torch.rand(count, device=device) < self.log_time_share, log_uniform, uniform)

    def training_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """The task's loss for sets x (B, n, Dx), NaN rows padding. ``group_size`` 1: every (θ, observation)
        pair is one single-observation sample. PF-NPSE: each set gives one group, a random 1..m of its
        observations."""
        present = ~torch.isnan(x).any(-1)  # (B, n)
        if self.group_size == 1:
            rows = present.nonzero(as_tuple=True)
            return self.loss(theta[rows[0]], self.x_embed(self.x_scaler(x[rows])))
        counts = present.sum(1)
        theta, x, present, counts = theta[counts > 0], x[counts > 0], present[counts > 0], counts[counts > 0]
        sizes = (torch.rand(len(x), device=x.device) * counts.clamp_max(self.group_size)).long() + 1
        order = torch.rand(present.shape, device=x.device).masked_fill(~present, 2.0).argsort(1)
        order = order[:, : self.group_size]  # a random order of the present rows first, padding last
        group = x.gather(1, order.unsqueeze(-1).expand(-1, -1, self.x_dim)).clone()
        group[torch.arange(group.shape[1], device=x.device) >= sizes.unsqueeze(1)] = float("nan")
        return self.loss(theta, self.embed_groups(group))

    def eps_per_observation(self, theta_t: Tensor, t: float, embeddings: Tensor) -> Tensor:
        """ε̂ at one time t for particles θ_t under embeddings (K, E): θ_t (M, Dθ) is evaluated under every
        embedding, θ_t (K, M, Dθ) pairs particle set k with embedding k. Returns (K, M, Dθ).

        The first layer ("mlp"; the merge layer, "residual") is linear in its θ_t, time and x parts, so they are
        computed once and summed by broadcasting: the K-fold cost is only in the later layers, which run on blocks
        of about ``_BLOCK_ROWS`` rows (activations that stay in cache: 3x faster on CPU than one big batch).
        """
        block = max(1, _BLOCK_ROWS // len(embeddings))
        if self.field_kind == "residual":
            theta_part, x_part = self.field.merge_parts(theta_t, embeddings.unsqueeze(1))
            theta_part = theta_part.unsqueeze(0) if theta_t.dim() == 2 else theta_part
            time = torch.tensor([t], device=theta_t.device)
            return torch.cat(
                [
                    self.field.from_merged(theta_part[:, start : start + block] + x_part, time)
                    for start in range(0, theta_part.shape[1], block)
                ],
                dim=1,
            )
        first = self.mlp[0]
        split = [self.theta_dim, self.time.frequencies.numel() * 2, embeddings.shape[-1]]
        w_theta, w_time, w_x = first.weight.split(split, dim=1)
        time_part = self.time(torch.tensor([t], device=theta_t.device)) @ w_time.T + first.bias
        x_part = (embeddings @ w_x.T).unsqueeze(1) + time_part
        theta_part = theta_t @ w_theta.T
        if theta_t.dim() == 2:
            theta_part = theta_part.unsqueeze(0)
        blocks = [
            self.mlp[1:](theta_part[:, start : start + block] + x_part)
            for start in range(0, theta_part.shape[1], block)
        ]
        return torch.cat(blocks, dim=1)

    def single_scores(self, theta_t: Tensor, t: float, observation_embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of p_t(θ | x_i) for each observation (n, M, Dθ) and of the diffused prior p_t(θ) (M, Dθ)."""
        embeddings = torch.cat([observation_embeddings, self.null.unsqueeze(0)])
        scores = -self.eps_per_observation(theta_t, t, embeddings) / self.schedule.sigma(torch.tensor(t))
        return scores[:-1], scores[-1]

    def composed_score(
        self, theta_t: Tensor, t: float, observation_embeddings: Tensor, precisions: Tensor | None = None
    ) -> Tensor:
        """Score of p_t(θ | x_1..n) at θ_t (M, Dθ) for n embedded observations (n, E).

        Without ``precisions``: Geffner et al.'s Σ_i s(θ_t | x_i) + (1 - n) s(θ_t), exact only as t → 0.
        With the precisions of the single-observation posteriors and the prior (n + 1, Dθ, Dθ), z-scored units:
        GAUSS (Linhart et al. 2024), which treats each denoising posterior p(θ_0 | θ_t, x_i) as Gaussian with
        precision P_i + (α_t² / σ_t²) I and weighs the scores by those precisions,
        Λ⁻¹ (Σ_i Λ_i s_i + (1 - n) Λ_λ s_λ) with Λ = Σ_i Λ_i + (1 - n) Λ_λ.
        """
        n = len(observation_embeddings)
        scores, prior_score = self.single_scores(theta_t, t, observation_embeddings)
        if precisions is None:
            return scores.sum(0) + (1 - n) * prior_score
        alpha, sigma = self.schedule.alpha(torch.tensor(t)), self.schedule.sigma(torch.tensor(t))
        identity = torch.eye(self.theta_dim, device=theta_t.device)
        denoising = precisions + (alpha / sigma) ** 2 * identity  # (n + 1, Dθ, Dθ)
        weights = torch.ones(n + 1, 1, 1, device=theta_t.device)
        weights[-1] = 1.0 - n
        total = (weights * denoising).sum(0)
        weighted = torch.einsum("kde,kme->md", weights * denoising, torch.cat([scores, prior_score.unsqueeze(0)]))
        return torch.linalg.solve(total, weighted.T).T

    def _reverse_diffusion(
        self, theta: Tensor, score_fn, steps: int, sampler: str, corrector_steps: int = 0, snr: float = 0.1
    ) -> Tensor:
        """Integrate from t = 1 to t = T_MIN with the score ``score_fn(θ_t, t)``; θ of any leading shape.

        ``sampler="ddim"``: the deterministic DDIM step (the probability-flow ODE in the noise-prediction
        parametrisation, accurate with few steps); ``"sde"``: Euler-Maruyama on the reverse VP SDE. Each
        step may be followed by ``corrector_steps`` Langevin steps at signal-to-noise ``snr``.
        """
        times = torch.linspace(1.0, T_MIN, steps + 1)
        alphas, sigmas = self.schedule.alpha(times), self.schedule.sigma(times)
        for index in range(steps):
            t, t_next = float(times[index]), float(times[index + 1])
            score = score_fn(theta, t)
            if sampler == "ddim":
                eps = -sigmas[index] * score
                theta0 = (theta - sigmas[index] * eps) / alphas[index]
                theta = alphas[index + 1] * theta0 + sigmas[index + 1] * eps
            else:
                dt, beta = t - t_next, float(self.schedule.beta(times[index]))
                drift = 0.5 * beta * theta + beta * score
                theta = theta + drift * dt + math.sqrt(beta * dt) * torch.randn_like(theta)
            for _ in range(corrector_steps):
                score = score_fn(theta, t_next)
                noise = torch.randn_like(theta)
                step = 2 * (snr * noise.norm(dim=-1).mean() / score.norm(dim=-1).mean().clamp_min(1e-8)) ** 2
                theta = theta + step * score + (2 * step).sqrt() * noise
        return theta

    @torch.no_grad()
    def gauss_precisions(
        self, x: Tensor, *, num_samples: int = 2000, max_particles: int = 40_000, steps: int = 50
    ) -> Tensor:
        """Precisions (n + 1, Dθ, Dθ), z-scored units, of each single-observation posterior p(θ | x_i) and of
        the prior, for GAUSS: from ``num_samples`` draws of each p(θ | x_i) (all n sampled together, at most
        ``max_particles`` in all) and the training θ's covariance; noisy precisions cost accuracy at large n,
        hence the generous default. Each P_i is raised to at least P_λ
        (in the PSD order: one observation should not widen the posterior), which also keeps
        Σ_i P_i + (1 - n) P_λ positive definite."""
        embeddings = self.embed_observations(x, len(x))
        n, dim = len(embeddings), self.theta_dim
        num_samples = max(200, min(num_samples, max_particles // n))

        def per_observation_score(theta: Tensor, t: float) -> Tensor:
            return -self.eps_per_observation(theta, t, embeddings) / self.schedule.sigma(torch.tensor(t))

        start = torch.randn(n, num_samples, dim, device=x.device)
        draws = self._reverse_diffusion(start, per_observation_score, steps, "ddim")
        centred = draws - draws.mean(1, keepdim=True)
        identity = torch.eye(dim, device=x.device)
        covariances = centred.transpose(1, 2) @ centred / (num_samples - 1) + 1e-4 * identity
        prior_precision = torch.linalg.inv(self.prior_covariance + 1e-4 * identity)
        excess = torch.linalg.inv(covariances) - prior_precision
        values, vectors = torch.linalg.eigh(excess)
        excess = vectors @ torch.diag_embed(values.clamp_min(0.0)) @ vectors.transpose(-1, -2)
        return torch.cat([prior_precision + excess, prior_precision.unsqueeze(0)])

    @torch.no_grad()
    def sample(
        self,
        x: Tensor,
        num_samples: int,
        *,
        steps: int | None = None,
        iid_method: str = "gauss",
        sampler: str | None = None,
        corrector_steps: int | None = None,
        snr: float = 0.1,
        precisions: Tensor | None = None,
    ) -> Tensor:
        """θ samples given n iid observations x (n, Dx) by reverse diffusion with the composed score.

        ``iid_method="gauss"`` (default): Linhart et al.'s Gaussian-corrected composition with the DDIM
        sampler, 50 steps and no corrector (pass ``precisions`` from ``gauss_precisions`` to reuse them across
        calls); ``"geffner"``: the plain sum of scores, Euler-Maruyama with one Langevin corrector step per noise
        level at signal-to-noise ``snr`` (the paper's sampler), 200 steps. With a single score term (n = 1, or n ≤
        ``group_size``) nothing is composed, and both run the reverse SDE (Euler-Maruyama, no corrector, 200
        steps): it is more accurate there than DDIM with the same network (``benchmarks/sbi_tasks.py --section
        score_samplers``). ``steps``, ``sampler`` and ``corrector_steps`` override those choices.
        """
        if iid_method not in ("gauss", "geffner"):
            raise ValueError(f"iid_method must be 'gauss' or 'geffner', got {iid_method!r}")
        embeddings = self.embed_observations(x, len(x))
        if iid_method == "gauss" and len(embeddings) > 1:
            if precisions is None:
                precisions = self.gauss_precisions(x)
        else:
            precisions = None
        composed = len(embeddings) > 1
        if sampler is None:
            sampler = "ddim" if iid_method == "gauss" and composed else "sde"
        if steps is None:
            steps = 50 if sampler == "ddim" else 200
        if corrector_steps is None:
            corrector_steps = 1 if iid_method == "geffner" and composed else 0

        def score_fn(theta: Tensor, t: float) -> Tensor:
            return self.composed_score(theta, t, embeddings, precisions)

        theta = torch.randn(num_samples, self.theta_dim, device=x.device)
        theta = self._reverse_diffusion(theta, score_fn, steps, sampler, corrector_steps, snr)
        return theta * self.theta_scaler.std + self.theta_scaler.mean


class ComposedScoreSampler:
    """Gives the score network's composed-diffusion sampler the ``sample(shape)`` face of a distribution
    (``sampler``: "ddim" or "sde" to override ``ScoreNetwork.sample``'s choice of integrator)."""

    def __init__(self, network, x: Tensor, steps: int | None, iid_method: str, sampler: str | None = None) -> None:
        self.network, self.x, self.steps, self.iid_method, self.sampler = network, x, steps, iid_method, sampler
        self.precisions = None
        if iid_method == "gauss" and len(x) > network.group_size:  # estimated once, reused by every rejection round
            self.precisions = network.gauss_precisions(x)

    def sample(self, shape: tuple[int]) -> Tensor:
        theta = self.network.sample(
            self.x,
            shape[0],
            steps=self.steps,
            iid_method=self.iid_method,
            sampler=self.sampler,
            precisions=self.precisions,
        )
        return theta.unsqueeze(1)
