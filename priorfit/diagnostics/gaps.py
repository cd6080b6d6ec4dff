"""Gaps to an analytic posterior: KL(exact ‖ approximate) and the excess NLL of the true parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from priorfit.diagnostics._inputs import as_tensor
from priorfit.errors import PriorfitValidationError

__all__ = ["PosteriorGapResult", "exact_gap"]


@dataclass
class PosteriorGapResult:
    """How far approximate posteriors are from exact ones, in nats.

    Attributes:
        kl: per posterior, Monte Carlo KL(exact ‖ approximate) (B,).
        nll_gap: per posterior, −log q(θ_true) + log p(θ_true | x) (B,), or None without true parameters.
    """

    kl: Tensor
    nll_gap: Tensor | None

    @property
    def mean_kl(self) -> float:
        return float(self.kl.mean())

    @property
    def mean_nll_gap(self) -> float | None:
        return None if self.nll_gap is None else float(self.nll_gap.mean())

    def to_dict(self) -> dict:
        sem = float(self.kl.std() / len(self.kl) ** 0.5) if len(self.kl) > 1 else float("nan")
        return {
            "mean_kl": self.mean_kl,
            "kl_standard_error": sem,
            "mean_nll_gap": self.mean_nll_gap,
            "num_posteriors": len(self.kl),
        }

    def plot(self, ax=None):
        """Histogram of the per-posterior KL. Returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(4, 3))[1]
        ax.hist(self.kl.numpy(), bins=30)
        ax.axvline(self.mean_kl, color="black", linestyle="--", label=f"mean {self.mean_kl:.3f}")
        ax.set(xlabel="KL(exact ‖ approximate) [nats]", ylabel="posteriors", title="exact-posterior gap")
        ax.legend(fontsize="small")
        return ax


@torch.no_grad()
def exact_gap(
    exact: Distribution,
    log_prob: Callable[[Tensor], Tensor],
    theta_true: Tensor | None = None,
    *,
    num_samples: int = 1000,
    seed: int = 0,
) -> PosteriorGapResult:
    """Compare approximate posteriors with exact ones.

    Args:
        exact: the exact posteriors as one torch Distribution with batch shape (B,) and event shape (D,).
        log_prob: the approximate log density: θ (S, B, D) -> (S, B), posterior b evaluated at θ[:, b].
        theta_true: (B, D) the parameters the observations were simulated from (for the NLL gap).
        num_samples: exact-posterior draws per posterior for the Monte Carlo KL.
    """
    if len(exact.batch_shape) != 1 or len(exact.event_shape) != 1:
        raise PriorfitValidationError(
            "exact must have batch shape (B,) and event shape (D,), got "
            f"{tuple(exact.batch_shape)} and {tuple(exact.event_shape)}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = exact.sample((num_samples,))
    log_q = torch.as_tensor(log_prob(draws))
    if log_q.shape != draws.shape[:2]:
        raise PriorfitValidationError(f"log_prob must return shape {tuple(draws.shape[:2])}, got {tuple(log_q.shape)}")
    kl = (exact.log_prob(draws) - log_q).mean(0).double()
    nll_gap = None
    if theta_true is not None:
        theta_true = as_tensor(theta_true, "theta_true").to(draws.dtype)
        if theta_true.shape != draws.shape[1:]:
            raise PriorfitValidationError(
                f"theta_true must have shape {tuple(draws.shape[1:])}, got {tuple(theta_true.shape)}"
            )
        truth = theta_true.unsqueeze(0)
        nll_gap = (exact.log_prob(truth) - torch.as_tensor(log_prob(truth)))[0].double()
    return PosteriorGapResult(kl, nll_gap)
