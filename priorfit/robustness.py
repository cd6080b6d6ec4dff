"""Adversarial robustness of amortized posteriors (Glöckler, Deistler & Macke, ICML 2023).

An amortized posterior q(θ | x) can change a lot under a small change of x. ``attack`` finds such a change:
projected gradient ascent on a Monte Carlo KL(q(θ | x) ‖ q(θ | x + δ)) with ||δ|| ≤ ε, batched over
observations, next to random noise of the same norm as the control. ``fisher_penalty`` is the paper's
defence: the trace of the Fisher information of q with respect to x, E_θ~q(·|x) ||∇_x log q(θ | x)||², added
to the training loss (``PosteriorTask(fisher_weight=...)``, ``AmortizedPosterior(fisher_weight=...)``).
Both need a density (the "flow" and "gmm" estimators).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from priorfit._validation import as_float_tensor, check_observation_sets
from priorfit.errors import PriorfitValidationError
from priorfit.networks.losses import PosteriorFn, as_distribution_fn, fisher_penalty

__all__ = ["fisher_penalty", "attack", "AttackResult", "monte_carlo_kl", "random_perturbation"]

Norm = Literal["l2", "linf"]


def _observation_sets(x: Tensor) -> Tensor:
    x = as_float_tensor(x, "x")
    return check_observation_sets(x.unsqueeze(1) if x.dim() == 2 else x)  # (B, Dx): one observation per set


def _set_norm(values: Tensor, norm: Norm) -> Tensor:
    """Norm of each set (B, n, Dx) -> (B,): over all of its n·Dx entries."""
    flat = values.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


@torch.no_grad()
def _clean_draws(distribution_fn: PosteriorFn, x: Tensor, num_samples: int, seed: int) -> tuple[Tensor, Tensor]:
    """θ ~ q(θ | x) (num_samples, B, Dθ) from a seeded stream, and log q(θ | x) at those draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clean = distribution_fn(x)
        theta = clean.sample((num_samples,))
        return theta, clean.log_prob(theta)


def monte_carlo_kl(posterior, x: Tensor, x_perturbed: Tensor, *, num_samples: int = 1000, seed: int = 0) -> Tensor:
    """KL(q(θ | x) ‖ q(θ | x_perturbed)) per row (B,), from ``num_samples`` draws of q(θ | x)."""
    distribution_fn = as_distribution_fn(posterior)
    x, x_perturbed = _observation_sets(x), _observation_sets(x_perturbed)
    theta, clean_log_q = _clean_draws(distribution_fn, x, num_samples, seed)
    with torch.no_grad():
        return (clean_log_q - distribution_fn(x_perturbed).log_prob(theta)).mean(0)


def random_perturbation(shape: torch.Size, epsilon: float, norm: Norm, generator: torch.Generator) -> Tensor:
    """Random δ with ||δ|| = ε per set: a uniform direction (L2) or a random corner of the box (L∞)."""
    if norm == "l2":
        direction = torch.randn(shape, generator=generator)
        return epsilon * direction / _set_norm(direction, "l2").clamp_min(1e-12).view(-1, 1, 1)
    return epsilon * (torch.randint(0, 2, shape, generator=generator) * 2 - 1).float()


def _project(delta: Tensor, epsilon: float, norm: Norm) -> Tensor:
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scale = (epsilon / _set_norm(delta, "l2").clamp_min(1e-12)).clamp_max(1.0)
    return delta * scale.view(-1, 1, 1)


@dataclass
class AttackResult:
    """An adversarial attack on a batch of observations and its random-noise control.

    Attributes:
        delta: the perturbation per observation set (B, n, Dx), ||δ|| ≤ ε.
        divergence: KL(q(θ | x) ‖ q(θ | x + δ)) per set (B,), on fresh samples.
        random_divergence: the same KL under random noise of norm ε, averaged over ``random_trials`` draws (B,).
    """

    epsilon: float
    norm: str
    delta: Tensor
    divergence: Tensor
    random_divergence: Tensor

    @property
    def ratio(self) -> float:
        """Mean attacked divergence over mean random-noise divergence."""
        return float(self.divergence.mean() / self.random_divergence.mean().clamp_min(1e-12))

    def to_dict(self) -> dict:
        return {
            "epsilon": self.epsilon,
            "norm": self.norm,
            "mean_divergence": float(self.divergence.mean()),
            "median_divergence": float(self.divergence.median()),
            "mean_random_divergence": float(self.random_divergence.mean()),
            "ratio": self.ratio,
            "num_observations": len(self.divergence),
        }

    def plot(self, ax=None):
        """Attacked against random-noise divergence per observation (log axes). Returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(4, 4))[1]
        ax.scatter(self.random_divergence.clamp_min(1e-6), self.divergence.clamp_min(1e-6), s=8)
        low = float(min(self.random_divergence.clamp_min(1e-6).min(), self.divergence.clamp_min(1e-6).min()))
        high = float(max(self.random_divergence.max(), self.divergence.max()))
        ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="KL under random noise",
            ylabel="KL under attack",
            title=f"ε = {self.epsilon:g} ({self.norm}), ratio {self.ratio:.1f}",
        )
        return ax


def attack(
    posterior,
    x: Tensor,
    epsilon: float,
    *,
    norm: Norm = "l2",
    steps: int = 50,
    step_size: float | None = None,
    num_samples: int = 64,
    eval_samples: int = 1000,
    random_trials: int = 10,
    seed: int = 0,
) -> AttackResult:
    """Projected gradient ascent on KL(q(θ | x) ‖ q(θ | x + δ)) with ||δ|| ≤ ε, for every row of x at once.

    Args:
        posterior: an ``AmortizedPosterior`` ("flow" / "gmm"), a posterior network, or x -> Distribution.
        x: observation sets (B, n, Dx), or (B, Dx) for one observation each.
        epsilon: the budget; the norm is taken over each whole set.
        norm: "l2" (steps along the normalised gradient) or "linf" (signed gradient steps).
        steps, step_size: ascent iterations and their length (None: 2.5 ε / steps, as Madry et al.).
        num_samples: θ draws of q(θ | x) in the KL estimate while optimising (fixed across steps).
        eval_samples: fresh θ draws for the reported divergences.
        random_trials: random-noise perturbations of norm ε averaged for the control.
    """
    if norm not in ("l2", "linf"):
        raise PriorfitValidationError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if not epsilon >= 0:
        raise PriorfitValidationError(f"epsilon must be >= 0, got {epsilon!r}")
    distribution_fn = as_distribution_fn(posterior)
    x = _observation_sets(x)
    generator = torch.Generator().manual_seed(seed)
    best = torch.zeros_like(x)
    if epsilon > 0:
        step_size = step_size or 2.5 * epsilon / steps
        theta, clean_log_q = _clean_draws(distribution_fn, x, num_samples, seed)
        delta = random_perturbation(x.shape, epsilon / 2, norm, generator)  # random start inside the ball
        best_kl = torch.full((len(x),), -float("inf"))
        for _ in range(steps):
            delta.requires_grad_(True)
            kl = (clean_log_q - distribution_fn(x + delta).log_prob(theta)).mean(0)  # (B,)
            (grad,) = torch.autograd.grad(kl.sum(), delta)
            with torch.no_grad():
                improved = kl.detach() > best_kl
                best_kl = torch.where(improved, kl.detach(), best_kl)
                best[improved] = delta.detach()[improved]
                if norm == "l2":
                    step = grad / _set_norm(grad, "l2").clamp_min(1e-12).view(-1, 1, 1)
                else:
                    step = grad.sign()
                delta = _project(delta.detach() + step_size * step, epsilon, norm)
        with torch.no_grad():  # the last iterate was never scored
            kl = (clean_log_q - distribution_fn(x + delta).log_prob(theta)).mean(0)
            improved = kl > best_kl
            best[improved] = delta[improved]
    # every reported KL is an expectation under the same clean q(θ | x): draw its samples once
    eval_theta, eval_log_q = _clean_draws(distribution_fn, x, eval_samples, seed + 1)

    @torch.no_grad()
    def kl_to(x_perturbed: Tensor) -> Tensor:
        return (eval_log_q - distribution_fn(x_perturbed).log_prob(eval_theta)).mean(0)

    divergence = kl_to(x + best)
    random_kl = torch.stack(
        [kl_to(x + random_perturbation(x.shape, epsilon, norm, generator)) for _ in range(random_trials)]
    ).mean(0)
    return AttackResult(float(epsilon), norm, best, divergence, random_kl)
