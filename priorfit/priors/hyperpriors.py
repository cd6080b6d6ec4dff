"""Seedable one-dimensional hyperpriors (torch.distributions cannot take a Generator)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError

__all__ = ["Hyperprior", "Fixed", "Uniform", "LogUniform", "Normal", "LogNormal", "as_hyperprior"]


class Hyperprior:
    """A distribution over one positive or real scalar, sampled once per dataset."""

    is_fixed: bool = False

    def sample(self, n: int, *, generator: torch.Generator | None, device, dtype) -> Tensor:
        raise NotImplementedError

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density at ``value`` (−inf outside the support); used by MCMC baselines."""
        raise NotImplementedError


@dataclass(frozen=True)
class Fixed(Hyperprior):
    """A point mass: every dataset uses ``value``."""

    value: float
    is_fixed = True

    def sample(self, n, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        return torch.full((n,), float(self.value), device=device, dtype=dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.where(value == self.value, 0.0, -math.inf).to(value.dtype)


@dataclass(frozen=True)
class Uniform(Hyperprior):
    """Uniform on [low, high]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise InvalidHyperparameterError(
                f"Uniform hyperprior needs low <= high, got low={self.low}, high={self.high}"
            )

    def sample(self, n, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return self.low + (self.high - self.low) * u

    def log_prob(self, value: Tensor) -> Tensor:
        inside = (value >= self.low) & (value <= self.high)
        return torch.where(inside, -math.log(self.high - self.low), -math.inf).to(value.dtype)


@dataclass(frozen=True)
class LogUniform(Hyperprior):
    """Log-uniform on [low, high], both positive."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise InvalidHyperparameterError(
                f"LogUniform hyperprior needs 0 < low <= high, got low={self.low}, high={self.high}"
            )

    def sample(self, n, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return torch.exp(math.log(self.low) + (math.log(self.high) - math.log(self.low)) * u)

    def log_prob(self, value: Tensor) -> Tensor:
        inside = (value >= self.low) & (value <= self.high)
        density = -value.clamp_min(self.low).log() - math.log(math.log(self.high) - math.log(self.low))
        return torch.where(inside, density, -math.inf)


@dataclass(frozen=True)
class Normal(Hyperprior):
    """N(loc, scale²) on the real line (for real-valued parameters; not accepted where positivity is required)."""

    loc: float
    scale: float

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise InvalidHyperparameterError(f"Normal hyperprior needs scale > 0, got scale={self.scale}")

    def sample(self, n, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        return self.loc + self.scale * torch.randn(n, generator=generator, device=device, dtype=dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        z = (value - self.loc) / self.scale
        return -0.5 * z.square() - math.log(self.scale) - 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class LogNormal(Hyperprior):
    """exp(N(loc, scale²))."""

    loc: float
    scale: float

    def __post_init__(self) -> None:
        if not self.scale >= 0:
            raise InvalidHyperparameterError(f"LogNormal hyperprior needs scale >= 0, got scale={self.scale}")

    def sample(self, n, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        z = torch.randn(n, generator=generator, device=device, dtype=dtype)
        return torch.exp(self.loc + self.scale * z)

    def log_prob(self, value: Tensor) -> Tensor:
        log_value = value.clamp_min(torch.finfo(value.dtype).tiny).log()
        z = (log_value - self.loc) / self.scale
        density = -0.5 * z.square() - math.log(self.scale) - 0.5 * math.log(2 * math.pi) - log_value
        return torch.where(value > 0, density, -math.inf)


HyperparameterSpec = float | int | Hyperprior | dict

_BY_NAME = {"fixed": Fixed, "uniform": Uniform, "loguniform": LogUniform, "normal": Normal, "lognormal": LogNormal}


def as_hyperprior(spec: HyperparameterSpec, name: str, *, positive: bool = True) -> Hyperprior:
    """Turn a config value (a number, a Hyperprior, or ``{"dist": ..., **params}``) into a Hyperprior."""
    if isinstance(spec, Hyperprior):
        hyperprior = spec
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        hyperprior = Fixed(float(spec))
    elif isinstance(spec, dict) or hasattr(spec, "items"):
        params = dict(spec.items())
        dist = str(params.pop("dist", "")).lower()
        if dist not in _BY_NAME:
            raise InvalidHyperparameterError(
                f"{name}: unknown hyperprior dist={dist!r}; choose one of {sorted(_BY_NAME)}"
            )
        try:
            hyperprior = _BY_NAME[dist](**params)
        except TypeError as error:
            raise InvalidHyperparameterError(f"{name}: bad parameters for {dist}: {error}") from None
    else:
        raise InvalidHyperparameterError(f"{name} must be a number, a Hyperprior or a dict with 'dist', got {spec!r}")
    if positive:
        if isinstance(hyperprior, Fixed) and not hyperprior.value > 0:
            raise InvalidHyperparameterError(f"{name} must be positive, got {hyperprior.value}")
        if isinstance(hyperprior, Normal):
            raise InvalidHyperparameterError(f"{name} must be positive; a Normal hyperprior can be negative")
        if isinstance(hyperprior, Uniform) and not hyperprior.low > 0:
            raise InvalidHyperparameterError(
                f"{name} must be positive, but its Uniform hyperprior starts at {hyperprior.low}"
            )
    return hyperprior
