"""Learning-curve prior of LC-PFN: convex combinations of parametric curve families, plus noise.

Curves follow Adriaensen et al., "Efficient Bayesian Learning Curve Extrapolation using
Prior-Data Fitted Networks" (NeurIPS 2023), which builds on the family catalogue of Domhan et
al. (2015): y(t) = Σ_k w_k f_k(t; θ_k) at epochs t = 1..T, weights w uniform on [0, 1] and
normalised to sum to one, θ_k from the LC-PFN paper's ("peaked") parameter priors, Gaussian
noise with a log-normal standard deviation. A curve is rejected and redrawn when its noise-free
values leave [0, 1], are not finite, or do not end higher than they start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.hyperpriors import Hyperprior, LogNormal, LogUniform, Normal, Uniform

__all__ = ["CurveFamily", "FAMILIES", "LearningCurvePrior", "combined_curves", "valid_curves"]

CurveFunction = Callable[[Tensor, dict[str, Tensor]], Tensor]


@dataclass(frozen=True)
class CurveFamily:
    """A parametric family f(t; θ) and the prior over its parameters θ (one distribution per name)."""

    function: CurveFunction  # (t (T,), {name: (B, 1)}) -> (B, T)
    parameters: dict[str, Hyperprior]


def _pow3(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["c"] - p["a"] * t.pow(-p["alpha"])


def _ilog2(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["c"] - p["a"] / torch.log(t + 1)


def _janoschek(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["a"] - (p["a"] - p["beta"]) * torch.exp(-p["k"] * t.pow(p["delta"]))


def _log_power(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["a"] / (1 + (t / torch.exp(p["b"])).pow(p["c"]))


def _weibull(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["alpha"] - (p["alpha"] - p["beta"]) * torch.exp(-(p["kappa"] * t).pow(p["delta"]))


def _mmf(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["alpha"] - (p["alpha"] - p["beta"]) / (1 + (p["kappa"] * t).pow(p["delta"]))


def _vap(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return torch.exp(p["a"] + p["b"] / t + p["c"] * torch.log(t))


def _loglog_linear(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return torch.log(p["a"] * torch.log(t) + p["b"])


def _exp4(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    return p["c"] - torch.exp(-p["a"] * t.pow(p["alpha"]) + p["b"])


def _pow4(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    # parametrised by gap = 1 - c (the asymptote's distance to 1), whose prior is log-uniform
    return (1 - p["gap"]) - (p["a"] * t + p["b"]).pow(-p["alpha"])


def _dr_hill(t: Tensor, p: dict[str, Tensor]) -> Tensor:
    rise = t.pow(p["eta"])
    return p["theta"] * rise / (p["kappa"].pow(p["eta"]) + rise)


# The parameter priors of the LC-PFN reference implementation ("peaked" variant); the first three
# families are the ones the paper trains on, the rest complete Domhan et al.'s catalogue.
FAMILIES: dict[str, CurveFamily] = {
    "pow3": CurveFamily(_pow3, {"c": Uniform(0.0, 1.25), "a": Uniform(-0.6, 0.6), "alpha": LogNormal(0.0, 2.0)}),
    "ilog2": CurveFamily(_ilog2, {"c": Uniform(0.0, 1.0), "a": Uniform(-0.5, 0.5)}),
    "janoschek": CurveFamily(
        _janoschek,
        {"a": Uniform(0.0, 1.0), "beta": Uniform(0.0, 2.0), "k": LogNormal(-2.0, 1.0), "delta": LogNormal(0.0, 0.5)},
    ),
    "log_power": CurveFamily(_log_power, {"a": Normal(0.8, 0.1), "b": Normal(1.0, 1.0), "c": Uniform(-3.0, 0.0)}),
    "weibull": CurveFamily(
        _weibull,
        {
            "alpha": Uniform(0.0, 1.5),
            "beta": Uniform(0.0, 1.0),
            "kappa": LogNormal(-2.0, 1.0),
            "delta": LogNormal(0.0, 0.5),
        },
    ),
    "mmf": CurveFamily(
        _mmf,
        {
            "alpha": Normal(0.8, 0.1),
            "beta": Normal(0.2, 0.1),
            "kappa": LogNormal(0.0, 2.0),
            "delta": LogNormal(0.0, 1.0),
        },
    ),
    "vap": CurveFamily(_vap, {"a": Uniform(-2.0, 0.0), "b": Uniform(-4.0, 0.0), "c": LogUniform(math.exp(-8.0), 1.0)}),
    "loglog_linear": CurveFamily(_loglog_linear, {"a": LogNormal(-2.0, 1.0), "b": LogUniform(1.0, math.e)}),
    "exp4": CurveFamily(
        _exp4,
        {"c": Normal(0.8, 0.1), "a": LogNormal(-2.0, 1.0), "b": LogNormal(0.0, 0.5), "alpha": LogNormal(0.0, 1.0)},
    ),
    "pow4": CurveFamily(
        _pow4,
        {
            "gap": LogUniform(math.exp(-5.0), 1.0),
            "a": LogNormal(-3.0, 2.0),
            "b": LogUniform(1.0, math.e),
            "alpha": LogNormal(0.0, 1.0),
        },
    ),
    "dr_hill_zero_background": CurveFamily(
        _dr_hill, {"theta": Normal(0.8, 0.1), "eta": LogNormal(1.0, 1.0), "kappa": LogNormal(1.0, 2.0)}
    ),
}
PAPER_FAMILIES = ("pow3", "ilog2", "janoschek")


def combined_curves(
    epochs: Tensor, families: Sequence[str], weights: Tensor, parameters: dict[str, dict[str, Tensor]]
) -> Tensor:
    """Noise-free curves Σ_k w_k f_k(t): epochs (T,), weights (B, K), parameters[family][name] (B,) -> (B, T)."""
    curves = torch.zeros(weights.shape[0], epochs.shape[0], dtype=weights.dtype, device=weights.device)
    for k, name in enumerate(families):
        params = {key: value.unsqueeze(-1) for key, value in parameters[name].items()}
        curves = curves + weights[:, k : k + 1] * FAMILIES[name].function(epochs, params)
    return curves


def valid_curves(curves: Tensor) -> Tensor:
    """(B, T) -> (B,) bool: finite, inside [0, 1] and ending higher than they start (the prior's rejection rule)."""
    inside = torch.isfinite(curves).all(-1) & (curves >= 0).all(-1) & (curves <= 1).all(-1)
    return inside & (curves[:, -1] > curves[:, 0])


class LearningCurvePrior:
    """Noisy learning curves: inputs x = t / T for epochs t = 1..num_points, targets y(t).

    Each dataset is one curve; its points are ordered by epoch, so the PFN task's split into
    the first ``n`` points (context) and the rest (queries) is "observed so far" versus "future".
    ``batch.meta`` holds the noise-free ``curve`` (B, N), ``noise_std`` (B,), ``weights`` (B, K) and
    the family ``parameters``.

    Args:
        num_epochs: T, the length of a full curve; inputs are scaled by it and the rejection rule
            looks at all T epochs even when fewer points are sampled.
        families: names from ``FAMILIES`` combined in each curve (default: the paper's three).
        noise_log_loc, noise_log_scale: log of the noise standard deviation ~ N(loc, scale²).

    Example:
        >>> prior = LearningCurvePrior(num_epochs=50)
        >>> batch = prior.sample(4, 50, generator=torch.Generator().manual_seed(0))
        >>> tuple(batch.x.shape), tuple(batch.y.shape), bool((batch.meta["curve"] <= 1).all())
        ((4, 50, 1), (4, 50, 1), True)
    """

    max_rounds = 50

    def __init__(
        self,
        *,
        num_epochs: int = 100,
        families: Sequence[str] = PAPER_FAMILIES,
        noise_log_loc: float = -4.0,
        noise_log_scale: float = 1.0,
    ) -> None:
        if num_epochs < 2:
            raise InvalidHyperparameterError(f"num_epochs must be at least 2, got {num_epochs}")
        unknown = [name for name in families if name not in FAMILIES]
        if unknown or not families:
            raise InvalidHyperparameterError(
                f"unknown curve families {unknown or '(none given)'}; choose from {sorted(FAMILIES)}"
            )
        if not noise_log_scale >= 0:
            raise InvalidHyperparameterError(f"noise_log_scale must be >= 0, got {noise_log_scale}")
        self.num_epochs = int(num_epochs)
        self.families = tuple(families)
        self.noise = LogNormal(noise_log_loc, noise_log_scale)

    def epochs(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The epochs 1..T as floats."""
        return torch.arange(1, self.num_epochs + 1, dtype=dtype)

    def _candidates(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, dict, Tensor]:
        """n noise-free candidate curves over all T epochs, with their weights and parameters."""
        raw = torch.rand(n, len(self.families), generator=generator)
        weights = raw / raw.sum(-1, keepdim=True)
        parameters = {
            name: {key: dist.sample(n, generator=generator) for key, dist in FAMILIES[name].parameters.items()}
            for name in self.families
        }
        return weights, parameters, combined_curves(self.epochs(), self.families, weights, parameters)

    def sample_curves(self, batch_size: int, *, generator: torch.Generator | None = None) -> dict:
        """``batch_size`` accepted noise-free curves over all T epochs (rejection sampling in whole batches)."""
        kept: list[tuple[Tensor, dict, Tensor]] = []
        have, acceptance = 0, 0.5
        for _ in range(self.max_rounds):
            need = batch_size - have
            n = max(16, math.ceil(1.3 * need / max(acceptance, 0.02)))
            weights, parameters, curves = self._candidates(n, generator)
            ok = valid_curves(curves)
            acceptance = max(float(ok.float().mean()), 1.0 / n)
            index = ok.nonzero().squeeze(-1)[:need]
            kept.append((weights[index], _select(parameters, index), curves[index]))
            have += index.numel()
            if have == batch_size:
                break
        else:
            raise InvalidHyperparameterError(
                f"learning-curve prior accepted only {have} of {batch_size} curves in {self.max_rounds} rounds; "
                f"families {self.families} rarely give increasing curves inside [0, 1]"
            )
        return {
            "weights": torch.cat([w for w, _, _ in kept]),
            "parameters": {
                name: {key: torch.cat([p[name][key] for _, p, _ in kept]) for key in FAMILIES[name].parameters}
                for name in self.families
            },
            "curve": torch.cat([c for _, _, c in kept]),
        }

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        if not 1 <= num_points <= self.num_epochs:
            raise InvalidHyperparameterError(
                f"num_points must be in [1, num_epochs={self.num_epochs}], got {num_points}"
            )
        drawn = self.sample_curves(batch_size, generator=generator)
        curve = drawn["curve"][:, :num_points]
        noise_std = self.noise.sample(batch_size, generator=generator)
        y = curve + noise_std.unsqueeze(-1) * torch.randn(curve.shape, generator=generator)
        x = (self.epochs()[:num_points] / self.num_epochs).expand(batch_size, num_points)
        meta = {"curve": curve, "noise_std": noise_std, "weights": drawn["weights"], "parameters": drawn["parameters"]}
        return Batch(x=x.unsqueeze(-1).contiguous(), y=y.unsqueeze(-1), meta=meta)


def _select(parameters: dict[str, dict[str, Tensor]], index: Tensor) -> dict[str, dict[str, Tensor]]:
    return {name: {key: value[index] for key, value in group.items()} for name, group in parameters.items()}
