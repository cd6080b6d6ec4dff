"""TARP: Tests of Accuracy with Random Points (Lemos et al., ICML 2023).

For each true parameter θ_i with posterior samples and a random reference point r_i, the coverage value
f_i is the fraction of samples closer to r_i than θ_i is. A calibrated posterior gives f_i ~ Uniform(0, 1),
so the expected coverage probability ECP(α) = mean_i 1[f_i < α] follows the diagonal; an over-dispersed
posterior lies above it, an under-dispersed one below. With random references the test is also sensitive to
bias (the paper's Theorem 3). Parameters are first scaled to the unit cube spanned by the true values, and
references are drawn uniformly in that cube (the paper's and the ``tarp`` package's choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from priorfit._validation import check_int
from priorfit.diagnostics._inputs import as_tensor, check_samples_and_truth
from priorfit.errors import PriorfitValidationError

try:  # the optional C count (setup.py); without it the torch expression below gives the same counts
    from priorfit.diagnostics._tarp_kernel import count_closer as _count_closer_avx2
except ImportError:  # pragma: no cover - depends on the install
    _count_closer_avx2 = None

__all__ = ["TarpResult", "tarp", "tarp_coverage_values"]

_CACHE_BYTES = 2 * 1024 * 1024  # block size of the sample differences: about one core's L2 cache


@dataclass
class TarpResult:
    """TARP coverage of a set of posteriors.

    Attributes:
        alpha: credibility levels (num_bins + 1,) from 0 to 1.
        ecp: expected coverage probability at each level.
        ecp_band: (2, num_bins + 1) bootstrap 2.5% and 97.5% quantiles of the ECP (None without bootstrap).
        coverage: per true parameter, the fraction of samples closer to its reference than the truth (B,).
        atc: area between ECP and the diagonal for α ≥ 0.5 (sbi's statistic): > 0 over-dispersed, < 0 under.
        ks_statistic, ks_pvalue: one-sample Kolmogorov–Smirnov test of the coverage values against
            Uniform(0, 1), i.e. of ECP(α) = α; a small p-value rejects calibration.
    """

    alpha: Tensor
    ecp: Tensor
    ecp_band: Tensor | None
    coverage: Tensor
    atc: float
    ks_statistic: float
    ks_pvalue: float

    @property
    def max_deviation(self) -> float:
        """sup_α |ECP(α) − α| on the grid."""
        return float((self.ecp - self.alpha).abs().max())

    def ecp_at(self, alpha) -> Tensor:
        """ECP at given credibility levels (e.g. another implementation's histogram edges)."""
        alpha = torch.as_tensor(alpha)
        alpha = alpha if alpha.is_floating_point() else alpha.double()
        return expected_coverage(self.coverage.to(alpha.dtype), alpha)  # in the grid's precision

    def to_dict(self) -> dict:
        return {
            "atc": self.atc,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "max_deviation": self.max_deviation,
            "num_posteriors": len(self.coverage),
            "alpha": self.alpha.tolist(),
            "ecp": self.ecp.tolist(),
            "ecp_band": None if self.ecp_band is None else self.ecp_band.tolist(),
        }

    def plot(self, ax=None, *, label: str = "ECP"):
        """The ECP curve against the diagonal, with the bootstrap band. Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(4, 4))[1]
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="ideal")
        if self.ecp_band is not None:
            ax.fill_between(self.alpha, self.ecp_band[0], self.ecp_band[1], alpha=0.3, label="95% bootstrap")
        ax.plot(self.alpha, self.ecp, label=f"{label} (ATC {self.atc:+.3f}, KS p {self.ks_pvalue:.2g})")
        ax.set(xlabel="credibility level α", ylabel="expected coverage", xlim=(0, 1), ylim=(0, 1), title="TARP")
        ax.legend(loc="upper left", fontsize="small")
        return ax


def tarp_coverage_values(
    samples: Tensor,
    theta_true: Tensor,
    references: Tensor,
    *,
    normalize: bool = True,
    metric: Literal["euclidean", "manhattan"] = "euclidean",
) -> Tensor:
    """f_i: the fraction of posterior samples closer to reference r_i than θ_i is (B,).

    samples (S, B, D), theta_true (B, D), references (B, D) in the units of θ, or, with ``normalize``, in the
    unit cube spanned by ``theta_true`` (as the ``tarp`` package takes them).
    """
    if normalize:
        low, high = theta_true.min(0).values, theta_true.max(0).values
        scale = 1.0 / (high - low + 1e-10)
        # compare in the unit cube without rescaling every sample: move the references to θ's units instead
        references = references / scale + low
    else:
        scale = torch.ones_like(theta_true[0])
    if metric == "euclidean":  # squared distances order the same as distances
        weights = scale.square()
        truth_distance = (theta_true - references).square() @ weights
    elif metric == "manhattan":
        weights = scale
        truth_distance = (theta_true - references).abs() @ weights
    else:
        raise PriorfitValidationError(f"metric must be 'euclidean' or 'manhattan', got {metric!r}")
    closer = None
    if metric == "euclidean" and samples.dtype == torch.float32 and samples.device.type == "cpu":
        closer = _count_closer_c(samples, references, weights, truth_distance)
    if closer is None:
        closer = _count_closer_torch(samples, references, weights, truth_distance, metric)
    return closer.to(samples.dtype) / len(samples)


def _count_closer_torch(
    samples: Tensor, references: Tensor, weights: Tensor, truth_distance: Tensor, metric: str
) -> Tensor:
    """The count of :func:`_count_closer_c` in torch, for any dtype, device and metric.

    One subtraction over the samples, then the per-dimension weights and the sum over D as a single mat-vec;
    done in blocks of samples whose differences fit in a core's cache (the (S, B, D) temporary otherwise goes
    to memory and back, a fifth of the time at D = 10).
    """
    num_samples, batch, dim = samples.shape
    block = max(1, _CACHE_BYTES // (batch * dim * samples.element_size()))
    buffer = samples.new_empty(min(block, num_samples), batch, dim)
    closer = torch.zeros(batch, dtype=torch.int32, device=samples.device)  # counts ≤ S; int32 sums faster
    largest = samples.new_zeros(())
    for start in range(0, num_samples, block):
        part = samples[start : start + block]
        difference = torch.sub(part, references, out=buffer[: len(part)])
        difference = difference.square_() if metric == "euclidean" else difference.abs_()
        sample_distance = difference @ weights
        largest = torch.maximum(largest, sample_distance.max())  # NaN / inf samples show up here (max keeps NaN)
        closer += (sample_distance < truth_distance).sum(0, dtype=torch.int32)
    if not torch.isfinite(largest):
        raise PriorfitValidationError("samples contain NaN or infinity")
    return closer


def _count_closer_c(samples: Tensor, references: Tensor, weights: Tensor, truth_distance: Tensor) -> Tensor | None:
    """Per true parameter, how many samples are closer to the reference than the truth (squared, weighted
    distances), by the C kernel in one pass over float32 samples; None where it is not built or the CPU lacks
    AVX2."""
    if _count_closer_avx2 is None:
        return None
    num_samples, batch, dim = samples.shape
    x = samples.contiguous()
    r, w, t = (v.to(torch.float32).contiguous() for v in (references, weights, truth_distance))
    closer = torch.zeros(batch, dtype=torch.int32)
    status = _count_closer_avx2(
        x.data_ptr(), r.data_ptr(), w.data_ptr(), t.data_ptr(), num_samples, batch, dim, closer.data_ptr()
    )
    if status == -1:
        raise PriorfitValidationError("samples contain NaN or infinity")
    return closer if status == 1 else None


def expected_coverage(coverage: Tensor, alpha: Tensor, counts: Tensor | None = None) -> Tensor:
    """ECP(α) = fraction of coverage values below α, and 1 from the largest value on (histogram convention).

    ``counts`` (R, B) weighs the coverage values (bootstrap resamples as multiplicities): returns (R, len(α)).
    """
    below = (coverage[:, None] < alpha[None, :]).to(coverage.dtype)
    if counts is None:
        return torch.where(alpha >= coverage.max(), 1.0, below.mean(0))
    counts = counts.to(coverage.dtype)
    ecp = counts @ below / counts.sum(-1, keepdim=True)
    largest = torch.where(counts > 0, coverage, -1.0).max(-1, keepdim=True).values
    return torch.where(alpha >= largest, 1.0, ecp)


def _ks_uniform(values: Tensor) -> tuple[float, float]:
    """Two-sided one-sample KS test against Uniform(0, 1) (the statistic in NumPy, scipy's exact p-value)."""
    ordered = np.sort(values.detach().double().cpu().numpy())  # B values: NumPy's per-call cost is lower here
    n = len(ordered)
    ranks = np.arange(1, n + 1) / n
    statistic = float(max((ranks - ordered).max(), (ordered - (ranks - 1 / n)).max()))
    # kstwo._sf is sf without its argument checks, which cost more than the p-value itself at n = 200
    return statistic, float(stats.kstwo._sf(statistic, n))


def tarp(
    samples: Tensor,
    theta_true: Tensor,
    *,
    references: Tensor | None = None,
    num_bins: int | None = None,
    normalize: bool = True,
    metric: Literal["euclidean", "manhattan"] = "euclidean",
    num_bootstrap: int = 100,
    seed: int = 0,
) -> TarpResult:
    """TARP expected coverage of posterior ``samples`` (num_samples, B, D) for true parameters (B, D).

    Args:
        references: one reference point per true parameter (B, D), in the unit cube of θ when ``normalize``
            (as in the ``tarp`` package); None draws them uniformly there.
        num_bins: α grid resolution (None: B // 10, as ``tarp`` and sbi).
        normalize: scale θ to the unit cube spanned by ``theta_true`` first (the paper's choice).
        num_bootstrap: resamples of the B posteriors for the ECP band (0: no band).
        seed: seeds the references and the bootstrap.
    """
    samples, theta_true = check_samples_and_truth(samples, theta_true, check_finite=False)
    if num_bins is not None:
        check_int(num_bins, "num_bins", minimum=1)
    check_int(num_bootstrap, "num_bootstrap", minimum=0)
    flat = (theta_true.max(0).values == theta_true.min(0).values).nonzero()
    if normalize and len(flat):
        raise PriorfitValidationError(
            f"theta_true does not vary in dimension {int(flat[0])}: TARP scales θ to the cube its values span, "
            "which is empty there; pass more varied true parameters, or normalize=False"
        )
    generator = torch.Generator().manual_seed(check_int(seed, "seed"))
    if references is None:
        references = torch.rand(theta_true.shape, generator=generator, dtype=theta_true.dtype)
        if not normalize:
            low, high = theta_true.min(0).values, theta_true.max(0).values
            references = low + references * (high - low)
    references = as_tensor(references, "references").to(theta_true.dtype)
    if references.shape != theta_true.shape:
        raise PriorfitValidationError(
            f"references must have the shape of theta_true {tuple(theta_true.shape)}, got {tuple(references.shape)}"
        )
    coverage = tarp_coverage_values(samples, theta_true, references, normalize=normalize, metric=metric)
    num_bins = num_bins or max(len(coverage) // 10, 1)
    alpha = torch.linspace(0, 1, num_bins + 1, dtype=coverage.dtype)
    ecp = expected_coverage(coverage, alpha)
    band = None
    if num_bootstrap:
        resampled = torch.randint(len(coverage), (num_bootstrap, len(coverage)), generator=generator)
        counts = torch.zeros(num_bootstrap, len(coverage)).scatter_add_(1, resampled, torch.ones(resampled.shape))
        boot = expected_coverage(coverage, alpha, counts)
        band = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype), dim=0)
    upper = slice(len(alpha) // 2, None)  # α ≥ 0.5, as sbi's check_tarp
    atc = float((ecp - alpha)[upper].sum() / num_bins)
    ks_statistic, ks_pvalue = _ks_uniform(coverage)
    return TarpResult(alpha, ecp, band, coverage, atc, ks_statistic, ks_pvalue)
