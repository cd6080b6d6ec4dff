"""The GP-hyperprior predictive task of the Distribution Transformer: θ = f(x*), a GMM prior over it, GP data.

After the Gaussian-process experiment of Whittle et al. (2025). A GMM prior Σ_k w_k N(m_k, s_k²) over θ is read
as a hyperprior over the Gaussian process: component k is a GP with constant mean m_k and outputscale s_k²
(RBF kernel), chosen with probability w_k, so the prior predictive of f at the query input x* is exactly the
GMM. The lengthscale comes from a discrete log-uniform grid (a hyperprior the network marginalises; the
``GPPrior`` of the Foundation issue draws it from a continuous one) and the noise is fixed. One observation is
the pair (x_i − x*, y_i) with y_i = f(x_i) + ε_i, so the posterior over θ is the posterior predictive at x*.

Given the component and the lengthscale everything is jointly Gaussian, so the exact posterior predictive is a
GMM over (component, lengthscale) pairs, weighted by each pair's marginal likelihood: ``exact_posterior``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.gmm import GMM
from priorfit.priors.gp import kernel_matrix

__all__ = ["GPPredictive"]


class GPPredictive:
    """Observations of a GP drawn from a GMM hyperprior, for the predictive at x* (θ = f(x*), D = 1).

    Args:
        lengthscale_low, lengthscale_high, num_lengthscales: the lengthscale grid (log-spaced, equal weights).
        noise_std: observation noise sd.
        input_range: inputs x_i and x* are uniform on [0, input_range].
        jitter: added to the kernel diagonal of f before drawing it.
    """

    theta_dim = 1
    x_dim = 2  # (x_i − x*, y_i)
    feature_dim = 2

    def __init__(
        self,
        *,
        lengthscale_low: float = 0.1,
        lengthscale_high: float = 1.0,
        num_lengthscales: int = 8,
        noise_std: float = 0.1,
        input_range: float = 1.0,
        jitter: float = 1e-6,
    ) -> None:
        if not 0 < lengthscale_low <= lengthscale_high:
            raise InvalidHyperparameterError(
                f"need 0 < lengthscale_low <= lengthscale_high, got {lengthscale_low}, {lengthscale_high}"
            )
        if num_lengthscales < 1:
            raise InvalidHyperparameterError(f"num_lengthscales must be at least 1, got {num_lengthscales}")
        if not (noise_std > 0 and input_range > 0):
            raise InvalidHyperparameterError("noise_std and input_range must be positive")
        self.lengthscales = torch.logspace(
            math.log10(lengthscale_low), math.log10(lengthscale_high), int(num_lengthscales), dtype=torch.float64
        )
        self.noise_std = float(noise_std)
        self.input_range = float(input_range)
        self.jitter = float(jitter)

    def sample_joint(self, prior: GMM, num_obs: int, *, generator: torch.Generator | None = None):
        """θ (B, 1) and observations (B, n, 2) for a batch of GMM priors: component, lengthscale, then f."""
        batch = prior.means.shape[0]
        dtype = prior.means.dtype
        component = torch.multinomial(prior.weights, 1, generator=generator).squeeze(-1)
        rows = torch.arange(batch)
        mean = prior.means[rows, component, 0]
        scale = prior.scale_tril[rows, component, 0, 0]
        pick = torch.randint(len(self.lengthscales), (batch,), generator=generator)
        lengthscale = self.lengthscales.to(dtype)[pick]
        inputs = self.input_range * torch.rand(batch, num_obs + 1, 1, generator=generator, dtype=dtype)  # x*, x_1..n
        covariance = kernel_matrix(inputs, inputs, "rbf", lengthscale, scale.square())
        covariance = covariance + self.jitter * scale.square().view(-1, 1, 1) * torch.eye(num_obs + 1, dtype=dtype)
        z = torch.randn(batch, num_obs + 1, 1, generator=generator, dtype=dtype)
        f = mean.view(-1, 1) + (torch.linalg.cholesky(covariance) @ z).squeeze(-1)
        y = f[:, 1:] + self.noise_std * torch.randn(batch, num_obs, generator=generator, dtype=dtype)
        x = torch.stack([inputs[:, 1:, 0] - inputs[:, :1, 0], y], dim=-1)
        return f[:, :1], x

    def observations(self, x_train, y_train, x_query) -> Tensor:
        """Network inputs (Q, n, 2) for the predictive at each of Q query inputs, from n training pairs."""
        x_train = torch.as_tensor(x_train, dtype=torch.float64).reshape(-1)
        y_train = torch.as_tensor(y_train, dtype=torch.float64).reshape(-1)
        x_query = torch.as_tensor(x_query, dtype=torch.float64).reshape(-1)
        if x_train.shape != y_train.shape:
            raise PriorfitValidationError(
                f"x_train and y_train need one value per point, got {x_train.numel()} and {y_train.numel()}"
            )
        for name, values in (("x_train", x_train), ("y_train", y_train), ("x_query", x_query)):
            if not torch.isfinite(values).all():
                raise PriorfitValidationError(f"{name} contains NaN or infinite values")
        offsets = x_train.unsqueeze(0) - x_query.unsqueeze(1)
        return torch.stack([offsets, y_train.expand_as(offsets)], dim=-1)

    def exact_posterior(self, prior: GMM, x: Tensor) -> GMM:
        """The exact posterior predictive GMM of f(x*) given x (B, n, 2): one component per (k, lengthscale)."""
        dtype = prior.means.dtype
        batch, n = x.shape[0], x.shape[1]
        k_max, grid = prior.means.shape[-2], len(self.lengthscales)
        mean = prior.means[..., 0].reshape(batch, k_max, 1)  # (B, K, 1)
        variance = prior.scale_tril[..., 0, 0].square().reshape(batch, k_max, 1, 1, 1)
        offsets, y = x[..., 0].to(dtype), x[..., 1].to(dtype)
        # unit-outputscale kernels for every (data set, lengthscale) pair; x* sits at offset 0
        points = offsets.unsqueeze(1).expand(batch, grid, n).reshape(batch * grid, n, 1)
        lengthscale = self.lengthscales.to(dtype).repeat(batch)
        ones = torch.ones_like(lengthscale)
        unit = kernel_matrix(points, points, "rbf", lengthscale, ones).view(batch, grid, n, n)
        query = points.new_zeros(batch * grid, 1, 1)
        cross = kernel_matrix(points, query, "rbf", lengthscale, ones).view(batch, grid, n)
        eye = torch.eye(n, dtype=dtype)
        covariance = variance * unit.unsqueeze(1) + self.noise_std**2 * eye  # (B, K, L, n, n)
        chol = torch.linalg.cholesky(covariance)
        residual = (y.view(batch, 1, n) - mean).unsqueeze(2).unsqueeze(-1)  # (B, K, 1, n, 1)
        whitened = torch.linalg.solve_triangular(chol, residual.expand(-1, -1, grid, -1, -1), upper=False)
        k_star = variance[..., 0] * cross.unsqueeze(1)  # (B, K, L, n)
        whitened_cross = torch.linalg.solve_triangular(chol, k_star.unsqueeze(-1), upper=False)
        post_mean = mean + (whitened_cross * whitened).sum((-2, -1))  # (B, K, L)
        post_var = variance[..., 0, 0] - whitened_cross.square().sum((-2, -1))
        log_evidence = (
            -0.5 * whitened.square().sum((-2, -1))
            - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            - 0.5 * n * math.log(2 * math.pi)
        )
        logits = prior.mixture_distribution.logits.reshape(batch, k_max, 1) + log_evidence - math.log(grid)
        scale = (post_var.clamp_min(1e-12) + self.jitter * variance[..., 0, 0]).sqrt()
        return GMM.from_logits(
            logits.reshape(batch, -1), post_mean.reshape(batch, -1, 1), scale.reshape(batch, -1, 1, 1)
        )

    def center(self, x: Tensor, theta_shift: Tensor) -> Tensor:
        """x as if θ (and every GP mean) were shifted by −theta_shift (B, 1): only y moves."""
        return torch.stack([x[..., 0], x[..., 1] - theta_shift[..., :1]], dim=-1)

    def features(self, x: Tensor) -> Tensor:
        return x
