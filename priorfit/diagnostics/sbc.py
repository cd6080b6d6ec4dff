"""Simulation-based calibration (Talts et al. 2018): ranks of true parameters among posterior samples.

If θ ~ p(θ), x ~ p(x | θ) and the posterior is exact, the rank of each coordinate of θ among S posterior
samples is uniform on {0, ..., S}. Ranks piling up at the ends mean an under-dispersed (or biased)
posterior, a hump in the middle an over-dispersed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor

from priorfit._validation import check_int
from priorfit.diagnostics._inputs import check_samples_and_truth

__all__ = ["SBCResult", "sbc"]


@dataclass
class SBCResult:
    """SBC ranks and per-dimension uniformity tests.

    Attributes:
        ranks: (B, D) number of posterior samples below the true value, in 0..num_samples.
        num_samples: posterior samples per true parameter.
        ks_pvalues: (D,) Kolmogorov–Smirnov test of the (randomised, continuous) normalised ranks against
            Uniform(0, 1).
        chi2_pvalues: (D,) chi-square test of the rank histogram with ``num_bins`` bins.
        num_bins: histogram bins used by the chi-square test and the plot.
    """

    ranks: Tensor
    num_samples: int
    ks_pvalues: Tensor
    chi2_pvalues: Tensor
    num_bins: int

    def calibrated(self, level: float = 0.05) -> bool:
        """True unless a dimension's KS test rejects uniformity at ``level`` (Bonferroni over dimensions)."""
        return bool((self.ks_pvalues >= level / len(self.ks_pvalues)).all())

    def to_dict(self) -> dict:
        return {
            "num_posteriors": int(self.ranks.shape[0]),
            "num_samples": self.num_samples,
            "ks_pvalues": self.ks_pvalues.tolist(),
            "chi2_pvalues": self.chi2_pvalues.tolist(),
            "calibrated_at_0.05": self.calibrated(0.05),
        }

    def plot(self, ax=None, *, kind: str = "ecdf"):
        """``kind="ecdf"``: ECDF of normalised ranks minus the uniform CDF with a pointwise 95% band (all
        dimensions on one axes); ``kind="hist"``: rank histograms with a 99% band per bin. Returns the Axes."""
        import matplotlib.pyplot as plt

        num_posteriors, dims = self.ranks.shape
        if kind == "hist":
            axes = ax if ax is not None else plt.subplots(1, dims, figsize=(2.6 * dims, 2.4), squeeze=False)[1][0]
            axes = list(axes) if hasattr(axes, "__len__") else [axes]
            expected = num_posteriors / self.num_bins
            low, high = stats.binom.ppf([0.005, 0.995], num_posteriors, 1 / self.num_bins)
            for dim, axis in enumerate(axes[:dims]):
                axis.axhspan(low, high, color="grey", alpha=0.3)
                axis.axhline(expected, color="black", linewidth=1)
                axis.hist(self.ranks[:, dim].numpy(), bins=self.num_bins, range=(0, self.num_samples + 1))
                axis.set(title=f"θ[{dim}] (KS p {float(self.ks_pvalues[dim]):.2g})", xlabel="rank")
            return axes
        ax = ax if ax is not None else plt.subplots(figsize=(4, 3))[1]
        grid = torch.linspace(0, 1, 201, dtype=torch.float64)
        low = stats.binom.ppf(0.025, num_posteriors, grid.numpy()) / num_posteriors
        high = stats.binom.ppf(0.975, num_posteriors, grid.numpy()) / num_posteriors
        ax.fill_between(grid, low - grid.numpy(), high - grid.numpy(), color="grey", alpha=0.3, label="95% band")
        normalised = self.ranks.double() / (self.num_samples + 1)
        for dim in range(dims):
            ecdf = (normalised[:, dim, None] <= grid).double().mean(0)
            ax.plot(grid, ecdf - grid, label=f"θ[{dim}]")
        ax.set(xlabel="normalised rank", ylabel="ECDF − uniform", title="SBC")
        if dims <= 10:
            ax.legend(fontsize="small")
        return ax


def sbc(samples: Tensor, theta_true: Tensor, *, num_bins: int | None = None, seed: int = 0) -> SBCResult:
    """SBC ranks of ``theta_true`` (B, D) among posterior ``samples`` (num_samples, B, D), with uniformity tests.

    ``num_bins`` (None: about B / 20, at most 20 and at least 2) sets the chi-square test's histogram; ``seed``
    the jitter that makes the discrete ranks continuous for the KS test.
    """
    samples, theta_true = check_samples_and_truth(samples, theta_true)
    if num_bins is not None:
        check_int(num_bins, "num_bins", minimum=2)
    check_int(seed, "seed")
    num_samples, num_posteriors, dims = samples.shape
    ranks = (samples < theta_true).sum(0)  # (B, D)
    num_bins = num_bins or int(min(20, max(2, num_posteriors // 20)))
    generator = torch.Generator().manual_seed(seed)
    # (rank + U) / (S + 1) is exactly Uniform(0, 1) under calibration, so the KS test needs no discreteness fix
    jittered = (ranks.double() + torch.rand(ranks.shape, generator=generator, dtype=torch.float64)) / (num_samples + 1)
    ks_pvalues = torch.tensor([stats.kstest(jittered[:, d].numpy(), "uniform").pvalue for d in range(dims)])
    binned = (jittered * num_bins).long().clamp_max(num_bins - 1)
    counts = torch.stack([torch.bincount(binned[:, d], minlength=num_bins) for d in range(dims)])
    chi2_pvalues = torch.tensor([stats.chisquare(counts[d].numpy()).pvalue for d in range(dims)])
    return SBCResult(ranks, num_samples, ks_pvalues.double(), chi2_pvalues.double(), num_bins)
