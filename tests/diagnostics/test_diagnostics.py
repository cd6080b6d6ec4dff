"""TARP, SBC, C2ST and exact-posterior gaps on a conjugate Gaussian model with known posteriors."""

from __future__ import annotations

import importlib
import platform
import shutil

import numpy as np
import pytest
import torch
from sbi.diagnostics.tarp import _run_tarp, check_tarp
from tarp import get_tarp_coverage
from torch.distributions import Independent, Normal

from priorfit.diagnostics import c2st, exact_gap, sbc, tarp
from priorfit.errors import PriorfitValidationError

tarp_module = importlib.import_module("priorfit.diagnostics.tarp")  # the package's `tarp` is the function

# θ ~ N(0, I), x = θ + N(0, I): the exact posterior is N(x / 2, I / 2)
POSTERIOR_SD = 0.5**0.5
VARIANTS = {
    "exact": (0.0, 1.0),  # (shift in posterior sds, width factor)
    "over-dispersed": (0.0, 1.5),
    "under-dispersed": (0.0, 1 / 1.5),
    "biased": (1.0, 1.0),
}


def conjugate_draws(variant: str, seed: int, num_posteriors: int = 200, num_samples: int = 500, dim: int = 2):
    shift, width = VARIANTS[variant]
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(num_posteriors, dim, generator=generator)
    x = theta + torch.randn(num_posteriors, dim, generator=generator)
    noise = torch.randn(num_samples, num_posteriors, dim, generator=generator)
    return x / 2 + shift * POSTERIOR_SD + width * POSTERIOR_SD * noise, theta


def rejection_rate(variant: str, test, repeats: int = 20) -> float:
    # the diagnostics' own seeds differ from the data's: equal seeds would correlate references with θ
    return float(np.mean([test(*conjugate_draws(variant, seed), seed=1000 + seed) for seed in range(repeats)]))


def tarp_rejects(samples, theta, seed):
    return tarp(samples, theta, seed=seed, num_bootstrap=0).ks_pvalue < 0.05


def sbc_rejects(samples, theta, seed):
    return not sbc(samples, theta, seed=seed).calibrated(0.05)


@pytest.mark.parametrize("test", [tarp_rejects, sbc_rejects], ids=["tarp", "sbc"])
def test_exact_posterior_passes_and_miscalibration_is_detected(test):
    # 20 repeats of 200 posteriors x 500 samples; rejection at the 5% level
    assert rejection_rate("exact", test) <= 0.15  # expected 0.05; P(> 3 of 20) = 0.016
    for variant in ("over-dispersed", "under-dispersed", "biased"):
        assert rejection_rate(variant, test) >= 0.9, variant  # stated power: 90% at these sizes


def test_tarp_direction_of_the_miscalibration():
    over = tarp(*conjugate_draws("over-dispersed", 0), seed=1)
    under = tarp(*conjugate_draws("under-dispersed", 0), seed=1)
    exact = tarp(*conjugate_draws("exact", 0), seed=1)
    assert over.atc > 0.03 and under.atc < -0.03 and abs(exact.atc) < 0.03
    assert exact.ecp_band is not None and (exact.ecp_band[0] <= exact.ecp_band[1]).all()
    assert exact.ecp[0] == 0 and exact.ecp[-1] == 1


def test_tarp_sees_what_sbc_cannot():
    # N(x, 1) is SBC-calibrated (θ - x and the samples - x are both N(0, 1)) but is not the posterior
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(200, 2, generator=generator)
    x = theta + torch.randn(200, 2, generator=generator)
    samples = x + torch.randn(500, 200, 2, generator=generator)
    assert sbc(samples, theta, seed=1).calibrated(0.01)
    assert tarp(samples, theta, seed=1).ks_pvalue < 1e-4


@pytest.mark.parametrize("dim", [2, 10])
def test_tarp_matches_sbi_and_the_tarp_package(dim):
    # float64: in float32 a sample whose distance ties the truth's to rounding can be counted differently by
    # each implementation (one such flip moves the ECP by 1/200; benchmarks/diagnostics.py reports both)
    samples, theta = (t.double() for t in conjugate_draws("exact", dim, num_samples=1000, dim=dim))
    unit = torch.rand(theta.shape, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    low, high = theta.min(0).values, theta.max(0).values
    ours = tarp(samples, theta, references=unit)
    ecp_sbi, alpha_sbi = _run_tarp(samples, theta, low + unit * (high - low + 1e-10), z_score_theta=True)
    ecp_pkg, alpha_pkg = get_tarp_coverage(
        samples.numpy().copy(), theta.numpy().copy(), references=unit.numpy(), norm=True
    )
    assert (ours.ecp_at(alpha_sbi) - ecp_sbi).abs().max() <= 1e-6
    assert np.abs(ours.ecp_at(torch.as_tensor(alpha_pkg)).numpy() - ecp_pkg).max() <= 1e-6
    # sbi's ATC on its own grid, ours on the unit grid: the same curve, so close
    atc_sbi, _ = check_tarp(ecp_sbi, alpha_sbi)
    assert abs(atc_sbi - ours.atc) < 0.02


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("cc") is None, reason="needs x86-64 and a C compiler"
)
def test_the_c_count_is_built_here():
    # setup.py builds it as optional: a failed build would only show as TARP running slower
    assert tarp_module._count_closer_avx2 is not None


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5, 8, 10, 13])
def test_c_count_equals_the_torch_expression(dim, monkeypatch):
    if tarp_module._count_closer_avx2 is None:
        pytest.skip("the C count is not built in this install")
    # 203 posteriors: not a multiple of the kernel's 8 lanes, so its scalar tail runs too
    samples, theta = conjugate_draws("over-dispersed", dim, num_posteriors=203, num_samples=300, dim=dim)
    references = torch.rand(theta.shape, generator=torch.Generator().manual_seed(dim))
    in_c = tarp_module.tarp_coverage_values(samples, theta, references)
    monkeypatch.setattr(tarp_module, "_count_closer_avx2", None)
    in_torch = tarp_module.tarp_coverage_values(samples, theta, references)
    assert torch.equal(in_c, in_torch)
    assert 0.05 < in_c.mean() < 0.95  # a real mix of counts, not all 0 or all S


def test_sbc_ranks_count_samples_below_the_truth():
    samples = torch.arange(10.0).view(10, 1, 1).expand(10, 3, 1)
    result = sbc(samples, torch.tensor([[-1.0], [4.5], [20.0]]))
    assert result.ranks[:, 0].tolist() == [0, 5, 10]


def test_c2st_of_unequal_sets_of_one_distribution_is_chance_not_the_majority_rate():
    generator = torch.Generator().manual_seed(0)
    few, many = torch.randn(5, 2, generator=generator), torch.randn(2000, 2, generator=generator)
    result = c2st(few, many)
    assert result.accuracy < 0.7  # plain accuracy says 0.998 here: the share of the larger set
    assert result.to_dict()["scoring"] == "balanced_accuracy" and result.sizes == (5, 2000)
    assert c2st(few + 5.0, many).accuracy > 0.7  # a real difference still shows with five draws


def test_c2st_separates_shifted_samples_and_not_equal_ones():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 2, generator=generator), torch.randn(1000, 2, generator=generator)
    assert c2st(a, b).accuracy < 0.6
    assert c2st(a, b + 3.0).accuracy > 0.95


def test_exact_gap_matches_the_analytic_kl():
    exact = Independent(Normal(torch.zeros(4, 2, dtype=torch.float64), 1.0), 1)
    shifted = Independent(Normal(torch.full((4, 2), 0.5, dtype=torch.float64), 1.0), 1)
    result = exact_gap(exact, shifted.log_prob, torch.zeros(4, 2), num_samples=20_000)
    assert result.mean_kl == pytest.approx(0.25, abs=0.02)  # 2 dims x 0.5² / 2
    assert result.mean_nll_gap == pytest.approx(0.25, abs=1e-9)  # at θ = 0 exactly
    assert exact_gap(exact, exact.log_prob).mean_kl == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_get_named_errors():
    samples, theta = conjugate_draws("exact", 0, num_samples=50)
    with pytest.raises(PriorfitValidationError, match="do not match"):
        tarp(samples, theta[:10])
    with pytest.raises(PriorfitValidationError, match="shape"):
        sbc(samples[0], theta)
    broken = samples.clone()
    broken[3, 4, 1] = float("nan")
    with pytest.raises(PriorfitValidationError, match="NaN"):
        tarp(broken, theta)
    with pytest.raises(PriorfitValidationError, match="NaN"):
        sbc(broken, theta)
    many = torch.zeros(1000, 200, 10, dtype=torch.float64)  # 16 MB: TARP works through it in several blocks
    many[-1, 0, 0] = float("inf")
    with pytest.raises(PriorfitValidationError, match="infinity"):
        tarp(many, torch.randn(200, 10, dtype=torch.float64))
    wide = torch.randn(100, 203, 10)  # float32: the C count's own check, in its 8-lane part and its tail
    for position in ((99, 5, 9), (0, 202, 3)):
        broken = wide.clone()
        broken[position] = float("inf")
        with pytest.raises(PriorfitValidationError, match="infinity"):
            tarp(broken, torch.randn(203, 10))
    with pytest.raises(PriorfitValidationError, match="references"):
        tarp(samples, theta, references=torch.rand(3, 2))
    with pytest.raises(PriorfitValidationError, match="metric"):
        tarp(samples, theta, metric="cosine")
    with pytest.raises(PriorfitValidationError, match="same D|shape"):
        c2st(torch.randn(100, 2), torch.randn(100, 3))


def test_results_serialise_and_plot(tmp_path):
    import json

    import matplotlib

    matplotlib.use("Agg")
    samples, theta = conjugate_draws("exact", 0)
    for result in (tarp(samples, theta), sbc(samples, theta), c2st(samples[:, 0], samples[:, 1])):
        json.dumps(result.to_dict())
        assert result.plot() is not None
    assert len(sbc(samples, theta).plot(kind="hist")) == 2
