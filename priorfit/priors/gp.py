"""Gaussian-process prior over regression datasets, with its exact posterior predictive."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.hyperpriors import HyperparameterSpec, as_hyperprior

__all__ = ["GPPrior", "kernel_matrix"]

KernelName = Literal["rbf", "matern52"]
_KERNELS = ("rbf", "matern52")


def kernel_matrix(x1: Tensor, x2: Tensor, kernel: KernelName, lengthscale: Tensor, outputscale: Tensor) -> Tensor:
    """Batched stationary kernel: x1 (B, N, D), x2 (B, M, D), scales (B,) -> (B, N, M)."""
    ls = lengthscale.view(-1, 1, 1)
    sq_dist = torch.cdist(x1 / ls, x2 / ls, compute_mode="donot_use_mm_for_euclid_dist").square()
    if kernel == "rbf":
        k = torch.exp(-0.5 * sq_dist)
    elif kernel == "matern52":
        r = math.sqrt(5.0) * sq_dist.clamp_min(0).sqrt()
        k = (1.0 + r + r.square() / 3.0) * torch.exp(-r)
    else:
        raise InvalidHyperparameterError(f"unknown kernel {kernel!r}; choose one of {_KERNELS}")
    return outputscale.view(-1, 1, 1) * k


def _robust_cholesky(matrix: Tensor, jitter: float) -> Tensor:
    """Cholesky factor; where the matrix is not numerically PD, retry with jitter (×10, 5 times)."""
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    factor, info = torch.linalg.cholesky_ex(matrix)
    tries = 0
    while bool((info > 0).any()) and tries < 5:
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        jitter *= 10.0
        tries += 1
    if bool((info > 0).any()):
        raise torch.linalg.LinAlgError(f"kernel matrix not positive definite even with jitter {jitter}")
    return factor


class GPPrior:
    """Datasets y = f(x) + ε with f ~ GP(0, k), ε ~ N(0, noise).

    Each hyperparameter is a fixed number or a hyperprior drawn once per dataset
    (``{"dist": "lognormal", "loc": -1.5, "scale": 0.5}``). ``noise`` is a variance.

    Example:
        >>> prior = GPPrior(kernel="rbf", lengthscale=0.2, outputscale=1.0, noise=0.05)
        >>> batch = prior.sample(8, 20, generator=torch.Generator().manual_seed(0))
        >>> tuple(batch.x.shape), tuple(batch.y.shape)
        ((8, 20, 1), (8, 20, 1))
    """

    def __init__(
        self,
        *,
        kernel: KernelName = "rbf",
        num_features: int = 1,
        lengthscale: HyperparameterSpec = 0.2,
        outputscale: HyperparameterSpec = 1.0,
        noise: HyperparameterSpec = 0.05,
        input_distribution: Literal["uniform", "gaussian"] = "uniform",
        input_low: float = 0.0,
        input_high: float = 1.0,
        jitter: float = 1e-6,
    ) -> None:
        if kernel not in _KERNELS:
            raise InvalidHyperparameterError(f"unknown kernel {kernel!r}; choose one of {_KERNELS}")
        if not isinstance(num_features, int) or num_features < 1:
            raise InvalidHyperparameterError(f"num_features (Dx) must be a positive integer, got {num_features!r}")
        if input_distribution not in ("uniform", "gaussian"):
            raise InvalidHyperparameterError(
                f"input_distribution must be 'uniform' or 'gaussian', got {input_distribution!r}"
            )
        if input_distribution == "uniform" and not input_low < input_high:
            raise InvalidHyperparameterError(
                f"uniform inputs need input_low < input_high, got {input_low}, {input_high}"
            )
        self.kernel = kernel
        self.num_features = num_features
        self.lengthscale = as_hyperprior(lengthscale, "lengthscale")
        self.outputscale = as_hyperprior(outputscale, "outputscale")
        self.noise = as_hyperprior(noise, "noise")
        self.input_distribution = input_distribution
        self.input_low = float(input_low)
        self.input_high = float(input_high)
        self.jitter = float(jitter)

    @property
    def has_exact_predictive(self) -> bool:
        """True when all hyperparameters are fixed, so the predictive is a closed-form Gaussian."""
        return all(h.is_fixed for h in (self.lengthscale, self.outputscale, self.noise))

    def sample_inputs(self, batch_size: int, num_points: int, *, generator=None, device=None) -> Tensor:
        shape = (batch_size, num_points, self.num_features)
        if self.input_distribution == "uniform":
            u = torch.rand(shape, generator=generator, device=device)
            return self.input_low + (self.input_high - self.input_low) * u
        return torch.randn(shape, generator=generator, device=device)

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        """Draw ``batch_size`` datasets of ``num_points`` points, all in one batched Cholesky."""
        check_sample_arguments(batch_size, num_points, generator)
        device = generator.device if generator is not None else None
        x = self.sample_inputs(batch_size, num_points, generator=generator, device=device)
        hyper = {
            name: getattr(self, name).sample(batch_size, generator=generator, device=device, dtype=torch.float64)
            for name in ("lengthscale", "outputscale", "noise")
        }
        x64 = x.double()
        cov = kernel_matrix(x64, x64, self.kernel, hyper["lengthscale"], hyper["outputscale"])
        cov = cov + hyper["noise"].view(-1, 1, 1) * torch.eye(num_points, dtype=cov.dtype, device=device)
        factor = _robust_cholesky(cov, self.jitter)
        eps = torch.randn(batch_size, num_points, 1, generator=generator, device=device, dtype=torch.float64)
        y = (factor @ eps).float()
        return Batch(x=x, y=y, meta={k: v.float() for k, v in hyper.items()})

    # exact posterior predictive (fixed hyperparameters only)

    def _fixed_hyperparameters(self) -> tuple[float, float, float]:
        if not self.has_exact_predictive:
            raise PriorfitValidationError(
                "the exact predictive needs fixed hyperparameters; this GPPrior has hyperpriors"
            )
        return self.lengthscale.value, self.outputscale.value, self.noise.value

    def predictive_mean_var(self, x_context: Tensor, y_context: Tensor, x_query: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance (noise included) of y at x_query given the context.

        Shapes: x_context (B, n, Dx), y_context (B, n, 1) or (B, n), x_query (B, m, Dx);
        returns two (B, m) float64 tensors. n may be 0 (the prior predictive).
        """
        lengthscale, outputscale, noise = self._fixed_hyperparameters()
        x_context, y_context, x_query = _check_predictive_inputs(x_context, y_context, x_query, self.num_features)
        batch, n = x_context.shape[:2]
        dev = x_context.device
        ls = torch.full((batch,), lengthscale, dtype=torch.float64, device=dev)
        os_ = torch.full((batch,), outputscale, dtype=torch.float64, device=dev)
        m = x_query.shape[1]
        if n == 0:
            mean = torch.zeros(batch, m, dtype=torch.float64, device=dev)
            return mean, torch.full_like(mean, outputscale + noise)
        k_cc = kernel_matrix(x_context, x_context, self.kernel, ls, os_)
        k_cc = k_cc + noise * torch.eye(n, dtype=torch.float64, device=dev)
        factor = _robust_cholesky(k_cc, self.jitter)
        k_cq = kernel_matrix(x_context, x_query, self.kernel, ls, os_)
        v = torch.linalg.solve_triangular(factor, k_cq, upper=False)  # (B, n, m)
        alpha = torch.cholesky_solve(y_context.unsqueeze(-1), factor)  # (B, n, 1)
        mean = (k_cq.transpose(1, 2) @ alpha).squeeze(-1)
        var = outputscale - v.square().sum(1) + noise
        return mean, var.clamp_min(noise)

    def predictive_log_density(self, x_context: Tensor, y_context: Tensor, x_query: Tensor, y_query: Tensor) -> Tensor:
        """log p(y_query | x_query, context) per query point under the exact GP, shape (B, m)."""
        mean, var = self.predictive_mean_var(x_context, y_context, x_query)
        y_query = y_query.to(torch.float64).reshape(mean.shape)
        return -0.5 * (math.log(2 * math.pi) + var.log() + (y_query - mean).square() / var)

    def __repr__(self) -> str:
        return (
            f"GPPrior(kernel={self.kernel!r}, num_features={self.num_features}, "
            f"lengthscale={self.lengthscale}, outputscale={self.outputscale}, noise={self.noise})"
        )


def _check_predictive_inputs(
    x_context: Tensor, y_context: Tensor, x_query: Tensor, num_features: int
) -> tuple[Tensor, Tensor, Tensor]:
    if x_context.dim() != 3 or x_query.dim() != 3:
        raise PriorfitValidationError(
            f"x_context and x_query must be (B, N, Dx); got {tuple(x_context.shape)} and {tuple(x_query.shape)}"
        )
    if x_context.shape[-1] != num_features or x_query.shape[-1] != num_features:
        raise PriorfitValidationError(
            f"this prior has Dx={num_features}, got inputs with {x_context.shape[-1]} and {x_query.shape[-1]} features"
        )
    if y_context.dim() == 3:
        y_context = y_context.squeeze(-1)
    if y_context.shape != x_context.shape[:2]:
        raise PriorfitValidationError(
            f"y_context shape {tuple(y_context.shape)} does not match x_context {tuple(x_context.shape)}"
        )
    return x_context.double(), y_context.double(), x_query.double()
