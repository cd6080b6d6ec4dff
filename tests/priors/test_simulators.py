"""SimulatorPrior and the standard SBI problems: shapes, seeding, NaN handling, likelihoods and reference posteriors."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from sbi.utils.metrics import c2st

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.simulator_prior import SimulatorError, SimulatorPrior
from priorfit.priors.simulators import PROBLEMS, GaussianLinear, TwoMoons, get_problem, mcmc_posterior


def gaussian_prior(dim: int = 2) -> torch.distributions.Distribution:
    return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(dim), 1.0), 1)


ALL = ["gaussian_linear", "two_moons", "slcp", "gaussian_mixture", "bernoulli_glm", "sir", "lotka_volterra"]


@pytest.mark.parametrize("name", ALL)
def test_problems_simulate_batches_of_the_declared_shape(name):
    problem = get_problem(name)
    theta = problem.prior.sample((7,))
    x = problem.simulate(theta)
    assert theta.shape == (7, problem.theta_dim) and x.shape == (7, problem.x_dim)
    assert torch.isfinite(x).all()
    log_lik = problem.log_likelihood(theta.double(), x[:1].double())
    assert log_lik.shape == (7,)
    batch = SimulatorPrior(problem.prior, problem.simulate, num_iid=3).sample(5, 0)
    assert batch.x.shape == (5, 3, problem.x_dim) and batch.theta.shape == (5, problem.theta_dim)


def test_simulator_prior_is_seeded_and_leaves_the_global_rng_alone():
    problem = GaussianLinear(dim=3)
    sim = SimulatorPrior(problem.prior, problem.simulate, num_iid=(1, 6))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = sim.sample(4, 0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(1), before), "sampling must not advance the global RNG"
    b = sim.sample(4, 0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.x, b.x, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(a.theta, b.theta)
    # a range gives each dataset its own n: rows past it are NaN padding
    sizes = a.meta["num_iid"]
    assert a.x.shape[1] == 6 and all(
        torch.isnan(a.x[i, n:]).all() and torch.isfinite(a.x[i, :n]).all() for i, n in enumerate(sizes)
    )
    counts = set(sim.sample(50, 0).meta["num_iid"].tolist())
    assert counts == set(range(1, 7))
    assert SimulatorPrior(problem.prior, problem.simulate, num_iid=None).sample(2, 9).x.shape[1] == 9


def test_non_finite_simulations_are_dropped_counted_and_replaced():
    def flaky(theta):
        x = theta.clone()
        x[theta[:, 0] > 1.0] = float("nan")  # about 16% of standard-normal draws
        return x

    sim = SimulatorPrior(gaussian_prior(), flaky)
    batch = sim.sample(500, 0, generator=torch.Generator().manual_seed(0))
    assert batch.x.shape == (500, 1, 2) and torch.isfinite(batch.x).all()
    assert (batch.theta[:, 0] <= 1.0).all()
    assert 0.1 < sim.dropped_fraction < 0.25 and sim.num_dropped > 50

    always_nan = SimulatorPrior(gaussian_prior(), lambda t: t + float("nan") if len(t) > 1 else t)
    with pytest.raises(SimulatorError, match="NaN/inf"):
        always_nan.sample(4, 0)


def test_bad_priors_and_simulators_get_named_errors():
    with pytest.raises(InvalidHyperparameterError, match="log_prob"):
        SimulatorPrior(object(), lambda t: t)
    with pytest.raises(SimulatorError, match=r"shape \(M, Dx\)"):
        SimulatorPrior(gaussian_prior(), lambda t: t.sum(1))
    with pytest.raises(InvalidHyperparameterError, match="num_iid"):
        SimulatorPrior(gaussian_prior(), lambda t: t, num_iid=0)
    with pytest.raises(InvalidHyperparameterError, match="unknown SBI problem"):
        get_problem("three_moons")
    with pytest.raises(InvalidHyperparameterError, match=r"shape \(n, 2\)"):
        TwoMoons().log_likelihood(torch.zeros(3, 2), torch.zeros(4, 3))


@pytest.mark.parametrize("name", ["two_moons", "gaussian_mixture"])
def test_two_dimensional_likelihoods_integrate_to_one(name):
    problem = get_problem(name)
    theta = problem.prior.sample((1,)).double()
    center = problem.simulate(theta.float().repeat(2000, 1)).double().mean(0)
    half = 0.4 if name == "two_moons" else 6.0
    grid = torch.linspace(-half, half, 1001, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid) + center
    density = problem.log_likelihood_terms(theta, points).exp()
    assert abs(density.sum() * (grid[1] - grid[0]) ** 2 - 1.0) < 0.02


def test_slcp_likelihood_matches_its_simulations():
    problem = get_problem("slcp")
    theta = torch.tensor([[0.5, -1.0, 1.2, -0.8, 0.7]])
    x = problem.simulate(theta.repeat(20_000, 1)).view(-1, 4, 2).reshape(-1, 2).double()
    mean, cov = x.mean(0), torch.cov(x.T)
    s1, s2, rho = 1.2**2, 0.8**2, math.tanh(0.7)
    torch.testing.assert_close(mean, torch.tensor([0.5, -1.0], dtype=torch.float64), atol=0.03, rtol=0)
    expected = torch.tensor([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]], dtype=torch.float64)
    torch.testing.assert_close(cov, expected, atol=0.05, rtol=0.03)


def test_sir_ode_conserves_population_and_peaks():
    problem = get_problem("sir")
    infected = problem.infected_fraction(torch.tensor([[0.4, 0.125], [0.1, 0.125]]))
    assert infected.shape == (2, 10) and (infected >= 0).all() and (infected <= 1).all()
    assert infected[0].max() > 0.05 and infected[1].max() < 1e-4  # R0 = 3.2 spreads; R0 = 0.8 dies out


def test_lotka_volterra_keeps_its_conserved_quantity_and_its_likelihood_matches_its_noise():
    """Along an exact trajectory V = δX − γ log X + βY − α log Y stays constant: RK4 keeps it to 2e-3 relative over
    20 days, and halving the step cuts the drift by more than 8× (fourth order: 16×), which wrong equations or a wrong
    time grid would not; the observations' log residuals have the stated noise sd; the likelihood peaks at the
    simulating θ."""
    problem = get_problem("lotka_volterra", num_times=40)
    theta = torch.tensor([[0.9, 0.05, 0.9, 0.05], [1.3, 0.03, 0.6, 0.08]], dtype=torch.float64)
    alpha, beta, gamma, delta = (column[:, None] for column in theta.unbind(1))
    start = delta * 30.0 - gamma * math.log(30.0) + beta * 1.0  # log Y(0) = 0

    def drift(states: torch.Tensor) -> torch.Tensor:
        prey, predators = states[..., 0], states[..., 1]
        conserved = delta * prey - gamma * prey.log() + beta * predators - alpha * predators.log()
        return ((conserved - start).abs() / start.abs()).max()

    states = problem.populations(theta)  # (2, 40, 2)
    assert states.shape == (2, 40, 2)
    assert drift(states) < 2e-3
    finer = get_problem("lotka_volterra", num_times=40, steps_per_unit=40).populations(theta)
    assert drift(finer) < drift(states) / 8
    prey, predators = states[..., 0], states[..., 1]
    assert prey.max(1).values.min() > 40 and predators.max(1).values.min() > 5  # the populations cycle
    x = problem.simulate(theta[:1].float().repeat(4000, 1)).double()  # (4000, 80), time-major (X, Y) pairs
    residuals = x.log() - states[0].reshape(1, -1).log()
    assert abs(residuals.std().item() - 0.1) < 0.005 and abs(residuals.mean().item()) < 0.005
    nearby = theta[:1] * torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.05, 1.0, 1.0, 1.0], [1.0, 1.0, 0.95, 1.0]])
    assert problem.log_likelihood(nearby, x[:1]).argmax() == 0


def test_mcmc_matches_the_analytic_gaussian_linear_posterior():
    problem = GaussianLinear(dim=3)
    x_obs = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.0, 0.4], [0.2, -0.4, 0.6]])
    exact = problem.posterior(x_obs)
    samples = mcmc_posterior(lambda t: problem.log_posterior_unnormalized(t, x_obs), problem.prior, 6000).double()
    torch.testing.assert_close(samples.mean(0), exact.mean, atol=0.01, rtol=0)
    torch.testing.assert_close(samples.std(0), exact.stddev, atol=0.01, rtol=0.05)
    assert float(c2st(samples[:2000].float(), exact.sample((2000,)).float())) < 0.55


def test_mode_started_mcmc_begins_in_a_posterior_no_prior_draw_reaches():
    # 400 observations: the posterior's sd (0.016) is 1/20 of the prior's, so no prior draw of 500 lies in it;
    # after a short warm-up, chains started at the mode's Laplace approximation have the exact posterior, chains
    # started from importance-resampled prior draws have not arrived yet
    problem = GaussianLinear(dim=2)
    torch.manual_seed(0)
    x_obs = problem.simulate(torch.tensor([[0.4, -0.3]]).repeat(400, 1))
    exact = problem.posterior(x_obs)
    density = partial(problem.log_posterior_unnormalized, x_obs=x_obs)
    reference = exact.sample((2000,)).float()
    samples = mcmc_posterior(density, problem.prior, 2000, num_init=500, start="mode", warmup=20)
    torch.testing.assert_close(samples.mean(0).double(), exact.mean, atol=0.002, rtol=0)
    torch.testing.assert_close(samples.std(0).double(), exact.stddev, atol=0, rtol=0.08)
    assert float(c2st(samples, reference)) < 0.56
    crude = mcmc_posterior(density, problem.prior, 2000, num_init=500, warmup=20)
    assert float(c2st(crude, reference)) > 0.7


def test_lotka_volterra_reference_runs_agree_and_cover_the_truth():
    problem = get_problem("lotka_volterra", num_times=10, steps_per_unit=5)
    torch.manual_seed(3)
    theta = problem.prior.sample((1,))
    x_obs = problem.simulate(theta)
    first, second = (problem.reference_posterior(x_obs, 1000, seed=seed) for seed in (0, 1))
    assert float(c2st(first, second)) < 0.57
    z = (theta[0] - first.mean(0)) / first.std(0)
    assert z.abs().max() < 4


def test_two_moons_grid_reference_is_bimodal_and_on_the_likelihood_ridge():
    problem = TwoMoons()
    x_obs = torch.zeros(1, 2)
    samples = problem.reference_posterior(x_obs, 4000, grid=800)
    # the posterior is symmetric under θ -> -θ (|θ1 + θ2| in the simulator): two crescents, half the mass each
    assert (samples.sum(1) > 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    log_lik = problem.log_likelihood_terms(samples.double(), x_obs.double())[:, 0]
    assert torch.isfinite(log_lik).float().mean() > 0.99  # in-cell jitter may step over the support's edge
    # samples sit where the radius is near 0.1: within 3 noise sds of the ridge
    shift = TwoMoons._shift(samples.double())
    radius = (x_obs.double() - shift - torch.tensor([0.25, 0.0], dtype=torch.float64)).norm(dim=1)
    assert ((radius - 0.1).abs() < 0.03).float().mean() > 0.98


def test_all_problems_are_registered():
    assert set(PROBLEMS) == set(ALL)


def test_mcmc_refuses_an_unknown_start():
    problem = GaussianLinear(dim=2)
    density = partial(problem.log_posterior_unnormalized, x_obs=torch.zeros(1, 2))
    with pytest.raises(InvalidHyperparameterError, match="start must be"):
        mcmc_posterior(density, problem.prior, 10, start="x")


def test_bernoulli_glm_statistics_are_sufficient_and_its_likelihood_is_the_spike_trains():
    problem = get_problem("bernoulli_glm")
    torch.manual_seed(0)
    theta = problem.prior.sample((3,)).double()
    spikes = torch.bernoulli(torch.full((1, 100), 0.3)).double()
    drive = theta @ problem.design.double().T
    bernoulli = spikes * torch.nn.functional.logsigmoid(drive) + (1 - spikes) * torch.nn.functional.logsigmoid(-drive)
    x = spikes @ problem.design.double()  # the spike count and the 9 spike-triggered stimulus sums
    torch.testing.assert_close(problem.log_likelihood(theta, x), bernoulli.sum(1))
    simulated = problem.simulate(problem.prior.sample((500,)))
    counts = simulated[:, 0]
    assert torch.equal(counts, counts.round()) and counts.min() >= 0 and counts.max() <= 100


def test_bernoulli_glm_reference_matches_sbibms():
    # sbibm 1.1.0's observation 1 and the mean / sd of its 10,000 Polya-Gamma Gibbs reference samples (read from the
    # files in its wheel; benchmarks/sbibm_references.py compares all ten observations by C2ST)
    x_obs = torch.tensor(
        [[56.0, 3.32306, 14.356438, 11.104893, -4.167525, -18.507809, -21.917496, -9.553517, -0.357257, -5.497825]]
    )
    mean = torch.tensor([0.888, 1.977, 3.285, 2.519, 0.315, -1.646, -2.429, -1.553, -0.283, 0.322])
    sd = torch.tensor([0.401, 0.462, 0.64, 0.52, 0.312, 0.398, 0.504, 0.418, 0.338, 0.388])
    samples = get_problem("bernoulli_glm").reference_posterior(x_obs, 2000)
    assert ((samples.mean(0) - mean).abs() / sd).max() < 0.1  # 0.1 sd: ~4 standard errors of a 2,000-sample mean
    torch.testing.assert_close(samples.std(0), sd, atol=0, rtol=0.08)


def test_gaussian_mixture_reference_is_exact():
    problem = get_problem("gaussian_mixture")
    samples = problem.reference_posterior(torch.zeros(1, 2), 20_000).double()
    # half the mass is N(x, 0.01 I), half N(x, I): the share within 0.3 of x is ½(1 − e^{−4.5}) + ½(1 − e^{−0.045})
    share = (samples.norm(dim=1) < 0.3).double().mean()
    assert abs(float(share) - 0.5 * (2 - math.exp(-4.5) - math.exp(-0.045))) < 0.01
    # two observations 1 apart: the assignment "both narrow" has evidence e^{-25} relative to the others
    pair = problem.reference_posterior(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), 20_000).double()
    log_density = problem.log_posterior_unnormalized(pair[:200], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert torch.isfinite(log_density).all()
    assert 0.3 < float(pair[:, 0].mean()) < 0.7 and float(pair[:, 1].mean()) == pytest.approx(0, abs=0.02)
