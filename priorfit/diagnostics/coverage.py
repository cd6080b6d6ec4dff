"""Expected coverage of highest-density regions (sbi's ``run_sbc(..., reduce_fns=posterior.log_prob)``, BayesFlow's
coverage plot).

For a true θ_i with posterior q(· | x_i), the smallest highest-density region of q that contains θ_i has
credibility r_i = P_q(log q(θ) > log q(θ_i)), estimated by the fraction of posterior samples whose density is
higher than the truth's. A calibrated posterior gives r_i ~ Uniform(0, 1), so the coverage of the level-α region,
mean_i 1[r_i ≤ α], follows the diagonal: above it the regions are too wide (under-confident), below too narrow.
Unlike per-dimension SBC it checks the joint posterior, and unlike TARP it needs densities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor

from priorfit._validation import check_int
from priorfit.diagnostics._inputs import as_tensor
from priorfit.errors import PriorfitValidationError

__all__ = ["CoverageResult", "expected_coverage"]


@dataclass
class CoverageResult:
    """Highest-density-region coverage of a set of posteriors.

    Attributes:
        levels: credibility levels (num_levels,) from 0 to 1.
        coverage: fraction of true parameters inside the level-α highest-density region, per level.
        credibility: per true parameter, the credibility of the smallest region that contains it (B,).
        ks_pvalue: Kolmogorov–Smirnov test of ``credibility`` against Uniform(0, 1); small: miscalibrated.
    """

    levels: Tensor
    coverage: Tensor
    credibility: Tensor
    ks_pvalue: float

    @property
    def max_deviation(self) -> float:
        """sup_α |coverage(α) − α| on the grid; positive area above the diagonal is under-confidence."""
        return float((self.coverage - self.levels).abs().max())

    def to_dict(self) -> dict:
        return {
            "num_posteriors": int(self.credibility.numel()),
            "levels": self.levels.tolist(),
            "coverage": self.coverage.tolist(),
            "ks_pvalue": self.ks_pvalue,
            "max_deviation": self.max_deviation,
        }

    def plot(self, ax=None, *, label: str = "posterior"):
        """Coverage against credibility with the diagonal and a pointwise 95 % band for B posteriors."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(4, 4))[1]
        levels = self.levels.numpy()
        count = self.credibility.numel()
        low = stats.binom.ppf(0.025, count, levels) / count
        high = stats.binom.ppf(0.975, count, levels) / count
        ax.fill_between(levels, low, high, color="grey", alpha=0.3, label="95% band (calibrated)")
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
        ax.plot(levels, self.coverage.numpy(), label=f"{label} (KS p {self.ks_pvalue:.2g})")
        ax.set(
            xlabel="credibility of the highest-density region",
            ylabel="fraction of true θ inside",
            xlim=(0, 1),
            ylim=(0, 1),
            title="expected coverage (above: too wide, below: too narrow)",
        )
        ax.title.set_fontsize("small")
        ax.legend(loc="upper left", fontsize="small")
        return ax


def expected_coverage(log_prob_samples, log_prob_true, *, num_levels: int = 101) -> CoverageResult:
    """Coverage of highest-density regions from densities: ``log_prob_samples`` (S, B) is log q(θ_s | x_b) of S
    posterior samples for each of B data sets, ``log_prob_true`` (B,) is log q(θ_b | x_b) of the true parameters.

    Example:
        >>> theta = torch.randn(500, 2)                       # truths; the posterior of each is N(0, I)
        >>> samples = torch.randn(1000, 500, 2)
        >>> normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
        >>> result = expected_coverage(normal.log_prob(samples), normal.log_prob(theta))
        >>> result.max_deviation < 0.1
        True
    """
    check_int(num_levels, "num_levels", minimum=2)
    log_prob_samples = as_tensor(log_prob_samples, "log_prob_samples", check_finite=False)
    log_prob_true = as_tensor(log_prob_true, "log_prob_true", check_finite=False)
    if log_prob_samples.dim() != 2 or log_prob_true.dim() != 1 or log_prob_samples.shape[1] != len(log_prob_true):
        raise PriorfitValidationError(
            "need log densities of posterior samples (num_samples, B) and of the true parameters (B,), got "
            f"{tuple(log_prob_samples.shape)} and {tuple(log_prob_true.shape)}"
        )
    if log_prob_samples.shape[0] < 2 or log_prob_samples.shape[1] < 2:
        raise PriorfitValidationError("need at least 2 posterior samples and 2 true parameters")
    if torch.isnan(log_prob_samples).any() or torch.isnan(log_prob_true).any():
        raise PriorfitValidationError("log densities contain NaN")
    # -inf is a legitimate density (a truth outside the posterior's support lies in no region but the whole space)
    above = (log_prob_samples > log_prob_true).double().sum(0)  # 0..S samples denser than the truth
    credibility = above / log_prob_samples.shape[0]
    levels = torch.linspace(0, 1, num_levels, dtype=torch.float64)
    coverage = (credibility[:, None] <= levels).double().mean(0)
    # the counts are discrete: the KS test takes them jittered within their cell, (count + U) / (S + 1), as SBC does
    jitter = torch.rand(above.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    continuous = (above + jitter) / (log_prob_samples.shape[0] + 1)
    ks_pvalue = float(stats.kstest(continuous.numpy(), "uniform").pvalue)
    return CoverageResult(levels=levels, coverage=coverage, credibility=credibility, ks_pvalue=ks_pvalue)
