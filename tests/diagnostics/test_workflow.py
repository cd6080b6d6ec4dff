"""Expected (highest-density) coverage, posterior predictive checks and the pair plot, against exact posteriors."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from priorfit.diagnostics import expected_coverage, pairplot, posterior_predictive_check
from priorfit.errors import PriorfitValidationError
from priorfit.priors.simulators import GaussianLinear

matplotlib.use("Agg")


def _gaussian_posteriors(scale: float, count: int = 400, draws: int = 500):
    """Truths θ_b ~ N(m_b, I) (so N(m_b, I) is each exact posterior) and samples of N(m_b, scale² I)."""
    generator = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(count, 2, generator=generator, dtype=torch.float64)
    theta = means + torch.randn(count, 2, generator=generator, dtype=torch.float64)
    samples = means + scale * torch.randn(draws, count, 2, generator=generator, dtype=torch.float64)
    approximate = torch.distributions.MultivariateNormal(means, scale**2 * torch.eye(2, dtype=torch.float64))
    return approximate.log_prob(samples), approximate.log_prob(theta)


def test_expected_coverage_follows_the_diagonal_for_the_exact_posterior():
    result = expected_coverage(*_gaussian_posteriors(1.0))
    assert result.ks_pvalue > 0.01 and result.max_deviation < 0.08
    assert result.to_dict()["num_posteriors"] == 400


@pytest.mark.parametrize(("scale", "side"), [(0.6, "below"), (1.6, "above")])
def test_expected_coverage_tells_too_narrow_from_too_wide(scale, side):
    result = expected_coverage(*_gaussian_posteriors(scale))
    at_90 = float(result.coverage[90])  # the 0.9 level
    assert result.ks_pvalue < 1e-6
    assert at_90 < 0.75 if side == "below" else at_90 > 0.97


def test_expected_coverage_rejects_mismatched_shapes():
    with pytest.raises(PriorfitValidationError, match=r"\(num_samples, B\) and of the true parameters \(B,\)"):
        expected_coverage(torch.zeros(10, 5), torch.zeros(4))
    with pytest.raises(PriorfitValidationError, match="NaN"):
        expected_coverage(torch.full((10, 5), float("nan")), torch.zeros(5))


def test_posterior_predictive_check_passes_exact_posteriors_and_flags_a_shifted_observation():
    problem = GaussianLinear(dim=2)
    torch.manual_seed(0)
    theta = problem.prior.sample((1,))
    x_obs = problem.simulate(theta.expand(10, 2))  # one set of 10 observations
    draws = problem.posterior(x_obs).sample((1000,)).float()
    result = posterior_predictive_check(draws, problem.simulate, x_obs)
    assert result.names == ["mean x[0]", "mean x[1]", "sd x[0]", "sd x[1]"] and result.replicated.shape == (1000, 4)
    assert result.consistent() and result.to_dict()["consistent_at_0.05"]
    widened = x_obs.mean(0) + 4 * (x_obs - x_obs.mean(0))  # same mean, four times the spread
    flagged = posterior_predictive_check(draws, problem.simulate, widened)
    assert not flagged.consistent() and float(flagged.p_values[2:].max()) < 0.01
    flagged.plot()


def test_posterior_predictive_check_names_a_simulator_of_the_wrong_shape():
    with pytest.raises(PriorfitValidationError, match="expected one observation of 2 features per draw"):
        posterior_predictive_check(torch.zeros(5, 2), lambda theta: theta[:, :1], torch.zeros(3, 2))


def test_pairplot_draws_every_pair_with_truth_and_reference():
    samples = torch.randn(400, 3)
    fig = pairplot(samples, truth=torch.tensor([5.0, 0.0, 0.0]), reference=torch.randn(300, 3), labels="abc")
    axes = fig.axes
    assert len(axes) == 9  # the upper triangle is switched off, not removed
    assert axes[0].get_xlim()[1] >= 5.0  # widened to show the truth
    with pytest.raises(PriorfitValidationError, match="labels must name each of the 3 dimensions"):
        pairplot(samples, labels=["a"])
    with pytest.raises(PriorfitValidationError, match=r"reference must have shape \(num_samples, 3\)"):
        pairplot(samples, reference=torch.randn(10, 2))
