"""Priors over priors for the Distribution Transformer: random Gaussian-mixture priors over θ and likelihoods.

A dataset is drawn in three steps: a GMM prior (number of components, weights, means, covariances from
hyperpriors), θ from that GMM, then n observations x_i ~ p(x | θ) from a likelihood. The linear-Gaussian
likelihood gives the exact posterior (again a GMM) in closed form; the range-bearing sensor model does not,
and its reference posterior comes from self-normalised importance sampling (checked against the exact
answer on the linear model in the tests).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from priorfit._validation import check_int
from priorfit.errors import InvalidHyperparameterError
from priorfit.gmm import GMM, sample_gmm
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.gp_predictive import GPPredictive
from priorfit.priors.hyperpriors import LogUniform

__all__ = ["GMM", "LinearGaussian", "RangeBearing", "RandomGMMPrior", "importance_posterior"]


# -------------------------------------------------------------------------------------------- likelihoods
class LinearGaussian:
    """x = A θ + ε, ε ~ N(0, σ² I): a GMM prior gives an exact GMM posterior.

    Args:
        theta_dim: D.
        x_dim: dimension of one observation (default D).
        noise_std: σ.
        matrix: "identity" (needs x_dim == D) or an integer seed for a fixed random A with N(0, 1/D) entries.
    """

    def __init__(self, theta_dim: int, *, x_dim: int | None = None, noise_std: float = 1.0, matrix="identity"):
        self.theta_dim = int(theta_dim)
        self.x_dim = int(x_dim or theta_dim)
        if not noise_std > 0:
            raise InvalidHyperparameterError(f"noise_std must be positive, got {noise_std}")
        self.noise_std = float(noise_std)
        if matrix == "identity":
            if self.x_dim != self.theta_dim:
                raise InvalidHyperparameterError("an identity matrix needs x_dim == theta_dim")
            self.matrix = torch.eye(self.theta_dim)
        else:
            generator = torch.Generator().manual_seed(int(matrix))
            self.matrix = torch.randn(self.x_dim, self.theta_dim, generator=generator) / math.sqrt(self.theta_dim)

    def simulate(self, theta: Tensor, num_obs: int, *, generator: torch.Generator | None = None) -> Tensor:
        """(B, D) -> (B, n, Dx)."""
        mean = theta @ self.matrix.to(theta.dtype).T
        noise = torch.randn(theta.shape[0], num_obs, self.x_dim, generator=generator, dtype=theta.dtype)
        return mean.unsqueeze(1) + self.noise_std * noise

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log p(x_1..n | θ): θ (..., B, D), x (B, n, Dx) -> (..., B)."""
        mean = theta @ self.matrix.to(theta.dtype).T
        residual = (x - mean.unsqueeze(-2)) / self.noise_std
        return (-0.5 * residual.square() - math.log(self.noise_std) - 0.5 * math.log(2 * math.pi)).sum((-1, -2))

    def exact_posterior(self, prior: GMM, x: Tensor) -> GMM:
        """The exact posterior GMM given n iid observations x (B, n, Dx) and a batch of GMM priors (B)."""
        dtype = prior.means.dtype
        a = self.matrix.to(dtype)
        n = x.shape[-2]
        noise_var = self.noise_std**2
        precision = torch.cholesky_inverse(prior.scale_tril)  # (B, K, D, D)
        data_precision = n * (a.T @ a) / noise_var
        post_cov = torch.linalg.inv(precision + data_precision)
        post_cov = 0.5 * (post_cov + post_cov.mT)
        x_sum = x.to(dtype).sum(-2)  # (B, Dx)
        info = (precision @ prior.means.unsqueeze(-1)).squeeze(-1) + (x_sum @ a / noise_var).unsqueeze(-2)
        post_mean = (post_cov @ info.unsqueeze(-1)).squeeze(-1)
        # weight_k ∝ w_k N(x̄; A μ_k, A Σ_k Aᵀ + σ²/n I)
        marginal_cov = a @ prior.covs @ a.T + (noise_var / n) * torch.eye(self.x_dim, dtype=dtype)
        x_mean = (x_sum / n).unsqueeze(-2)
        evidence = MultivariateNormal(prior.means @ a.T, covariance_matrix=marginal_cov).log_prob(x_mean)
        logits = prior.mixture_distribution.logits + evidence
        return GMM.from_logits(logits, post_mean, torch.linalg.cholesky(post_cov))

    def center(self, x: Tensor, theta_shift: Tensor) -> Tensor:
        """x as if θ were shifted by −theta_shift (B, D): the model is shift-equivariant."""
        return x - (theta_shift @ self.matrix.to(theta_shift.dtype).T).unsqueeze(-2)

    def features(self, x: Tensor) -> Tensor:
        return x

    @property
    def feature_dim(self) -> int:
        return self.x_dim


class RangeBearing:
    """A 2-D position θ observed by a sensor at ``sensor``: range ||θ − s|| and bearing atan2, both noisy.

    Range noise is Gaussian (sd ``range_std``), bearing noise wrapped-Gaussian (sd ``bearing_std`` radians).
    The posterior has no closed form; ``importance_posterior`` gives a reference.
    """

    theta_dim = 2
    x_dim = 2
    feature_dim = 3  # range, cos(bearing), sin(bearing)

    def __init__(self, *, sensor: tuple[float, float] = (0.0, 0.0), range_std: float = 0.5, bearing_std: float = 0.1):
        if not (range_std > 0 and bearing_std > 0):
            raise InvalidHyperparameterError("range_std and bearing_std must be positive")
        self.sensor = torch.tensor(sensor, dtype=torch.float32)
        self.range_std = float(range_std)
        self.bearing_std = float(bearing_std)

    def _polar(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        offset = theta - self.sensor.to(theta.dtype)
        return offset.norm(dim=-1), torch.atan2(offset[..., 1], offset[..., 0])

    def simulate(self, theta: Tensor, num_obs: int, *, generator: torch.Generator | None = None) -> Tensor:
        distance, angle = self._polar(theta)
        noise = torch.randn(theta.shape[0], num_obs, 2, generator=generator, dtype=theta.dtype)
        observed_range = distance.unsqueeze(-1) + self.range_std * noise[..., 0]
        observed_angle = _wrap(angle.unsqueeze(-1) + self.bearing_std * noise[..., 1])
        return torch.stack([observed_range, observed_angle], dim=-1)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        distance, angle = self._polar(theta)
        range_term = -0.5 * ((x[..., 0] - distance.unsqueeze(-1)) / self.range_std).square()
        difference = _wrap(x[..., 1] - angle.unsqueeze(-1))
        # wrapped normal: the nearest three windings carry all the mass for bearing_std < 1
        windings = torch.stack([difference + 2 * math.pi * k for k in (-1, 0, 1)])
        angle_term = torch.logsumexp(-0.5 * (windings / self.bearing_std).square(), dim=0)
        constant = -math.log(self.range_std) - math.log(self.bearing_std) - math.log(2 * math.pi)
        return (range_term + angle_term + constant).sum(-1)

    def features(self, x: Tensor) -> Tensor:
        return torch.stack([x[..., 0], torch.cos(x[..., 1]), torch.sin(x[..., 1])], dim=-1)


def _wrap(angle: Tensor) -> Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


_LIKELIHOODS = {"linear_gaussian": LinearGaussian, "range_bearing": RangeBearing, "gp_predictive": GPPredictive}


# ------------------------------------------------------------------------------------------ the prior family
class RandomGMMPrior:
    """Datasets (θ, x_1..n) under random GMM priors: the training family of the Distribution Transformer.

    Per dataset: K ~ uniform on [min_components, max_components]; weights ~ Dirichlet(1) over the K used
    components (the rest are padding with weight 0); means ~ N(0, mean_scale² I); covariances
    diag(s) C diag(s) with scales s_d ~ LogUniform(scale_low, scale_high) and a random correlation matrix C
    (off-diagonal Cholesky entries ~ N(0, correlation²) before normalising rows). Then θ ~ GMM and
    x_i ~ likelihood(θ).

    ``batch.meta`` holds the prior: ``prior_logits`` (B, K_max, −inf on padding), ``prior_means``
    (B, K_max, D), ``prior_scale_tril`` (B, K_max, D, D); ``batch.x`` the observations (B, n, Dx) and
    ``batch.theta`` (B, D).
    """

    def __init__(
        self,
        *,
        dim: int = 2,
        max_components: int = 3,
        min_components: int = 1,
        mean_scale: float = 3.0,
        scale_low: float = 0.1,
        scale_high: float = 3.0,
        correlation: float = 0.5,
        likelihood: str = "linear_gaussian",
        likelihood_options: dict | None = None,
    ) -> None:
        check_int(dim, "dim", minimum=1)
        if not 1 <= min_components <= max_components:
            raise InvalidHyperparameterError(
                f"need 1 <= min_components <= max_components, got {min_components}, {max_components}"
            )
        if likelihood not in _LIKELIHOODS:
            raise InvalidHyperparameterError(f"unknown likelihood {likelihood!r}; choose one of {sorted(_LIKELIHOODS)}")
        options = dict(likelihood_options or {})
        if likelihood == "linear_gaussian":
            options.setdefault("theta_dim", dim)
        self.likelihood = _LIKELIHOODS[likelihood](**options)
        if self.likelihood.theta_dim != dim:
            raise InvalidHyperparameterError(f"the {likelihood} likelihood needs dim={self.likelihood.theta_dim}")
        self.dim = int(dim)
        self.max_components = int(max_components)
        self.min_components = int(min_components)
        self.mean_scale = float(mean_scale)
        self.scales = LogUniform(scale_low, scale_high)
        self.scale_range = (float(scale_low), float(scale_high))  # per-coordinate sd of a component
        self.correlation = float(correlation)

    def sample_priors(self, batch_size: int, *, generator: torch.Generator | None = None) -> GMM:
        """A batch of random GMM priors, padded to ``max_components``."""
        k_max, dim = self.max_components, self.dim
        counts = torch.randint(self.min_components, k_max + 1, (batch_size, 1), generator=generator)
        used = torch.arange(k_max).unsqueeze(0) < counts
        raw = -torch.log(torch.rand(batch_size, k_max, generator=generator).clamp_min(1e-12))  # Exp(1) → Dirichlet(1)
        raw = raw * used
        weights = raw / raw.sum(-1, keepdim=True)
        means = self.mean_scale * torch.randn(batch_size, k_max, dim, generator=generator)
        scales = self.scales.sample(batch_size * k_max * dim, generator=generator).view(batch_size, k_max, dim)
        lower = torch.tril(self.correlation * torch.randn(batch_size, k_max, dim, dim, generator=generator), -1)
        lower = lower + torch.eye(dim)
        lower = lower / lower.norm(dim=-1, keepdim=True)  # rows of unit norm: L Lᵀ is a correlation matrix
        scale_tril = scales.unsqueeze(-1) * lower
        logits = torch.where(used, weights.log(), -math.inf)
        return GMM.from_logits(logits, means, scale_tril)

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        prior = self.sample_priors(batch_size, generator=generator)
        if hasattr(self.likelihood, "sample_joint"):  # data that depend on the component θ came from (GP task)
            theta, x = self.likelihood.sample_joint(prior, num_points, generator=generator)
        else:
            theta = sample_gmm(prior, generator)
            x = self.likelihood.simulate(theta, num_points, generator=generator)
        meta = {
            "prior_logits": prior.mixture_distribution.logits,
            "prior_means": prior.means,
            "prior_scale_tril": prior.scale_tril,
        }
        return Batch(x=x, theta=theta, meta=meta)


def importance_posterior(
    prior: GMM, likelihood, x: Tensor, num_samples: int = 100_000, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Self-normalised importance sampling with the prior as proposal.

    Returns draws (S, B, D), normalised log-weights (S, B) and the effective sample size per dataset (B,);
    a small ESS (say < 1,000) means the reference is not trustworthy for that dataset.
    """
    draws = sample_gmm(prior, generator, num_samples)
    log_weights = likelihood.log_likelihood(draws, x)
    log_weights = log_weights - torch.logsumexp(log_weights, dim=0, keepdim=True)
    ess = 1.0 / log_weights.exp().square().sum(0)
    return draws, log_weights, ess
