"""The flow-matching posterior (``AmortizedPosterior("fmpe")``) against exact Gaussian-linear posteriors."""

from __future__ import annotations

import pytest
import torch

import priorfit
from priorfit import AmortizedPosterior
from priorfit.errors import InvalidHyperparameterError
from priorfit.networks.flow_matching import FlowMatchingPosterior
from priorfit.priors.simulators import GaussianLinear

FAST = {"max_epochs": 60, "patience": 15, "batch_size": 100, "lr": 2e-3, "progress_bar": False}


@pytest.fixture(scope="module")
def problem():
    return GaussianLinear(dim=2)


@pytest.fixture(scope="module")
def trained(problem):
    # looser ODE tolerances than the default keep the card's 50,000 samples quick
    post = AmortizedPosterior("fmpe", network={"width": 64, "depth": 2, "atol": 1e-5, "rtol": 1e-4}, **FAST)
    return post.fit(problem.prior, problem.simulate, num_simulations=3000)


def test_samples_and_densities_match_the_exact_posterior(trained, problem):
    torch.manual_seed(1)
    x_obs = problem.simulate(problem.prior.sample((1,)))
    exact = problem.posterior(x_obs)
    samples = trained.sample(x_obs, 2000)
    assert (samples.mean(0).double() - exact.mean).abs().max() < 0.15
    assert torch.allclose(samples.std(0).double(), exact.stddev, rtol=0.2)
    theta = exact.sample((300,)).float()
    kl_estimate = (exact.log_prob(theta.double()) - trained.log_prob(theta, x_obs).double()).mean()
    assert kl_estimate.abs() < 0.15  # KL(exact || learned) estimate, from the ODE's change of variables


def test_the_density_integrates_to_one():
    torch.manual_seed(0)
    network = FlowMatchingPosterior(
        2, 2, width=16, depth=2, time_dim=8, encoder={"width": 8, "layers": 0}, atol=1e-5, rtol=1e-4
    )
    with torch.no_grad():
        for parameter in network.velocity_net.parameters():  # a field that bends the paths
            parameter.add_(0.5 * torch.randn_like(parameter))
        grid = torch.linspace(-7, 7, 101)
        points = torch.cartesian_prod(grid, grid)
        density = network.distribution(torch.zeros(1, 1, 2)).log_prob(points).exp()
    assert abs(float(density.sum() * (grid[1] - grid[0]) ** 2) - 1) < 0.01


def test_a_saved_fmpe_posterior_loads_with_the_same_densities(trained, problem, tmp_path):
    x_obs = torch.zeros(1, 2)
    theta = torch.randn(20, 2)
    trained.save(tmp_path / "fmpe.safetensors")
    loaded = priorfit.load(tmp_path / "fmpe.safetensors")
    assert loaded.estimator == "fmpe"
    assert torch.allclose(loaded.log_prob(theta, x_obs), trained.log_prob(theta, x_obs), atol=1e-4)
    assert trained.card.kind == "posterior"


def test_fisher_regularization_is_refused_for_flow_matching(problem):
    post = AmortizedPosterior("fmpe", fisher_weight=0.1, max_epochs=1, progress_bar=False)
    with pytest.raises(InvalidHyperparameterError, match="fisher_weight needs a network trained by likelihood"):
        post.fit(problem.prior, problem.simulate, num_simulations=100)


def test_sampling_takes_few_solver_steps(trained, problem, monkeypatch):
    # the time embedding's frequencies bound how fast v(θ, t | x) can vary in t, hence the adaptive solver's step:
    # with frequencies up to 1,000 rad per unit t (a diffusion model's choice) this count fails
    network = trained.task_.network
    velocity, calls = network.velocity, []
    monkeypatch.setattr(network, "velocity", lambda *args: calls.append(1) or velocity(*args))
    trained.sample(problem.simulate(problem.prior.sample((1,))), 500)
    assert len(calls) < 300, len(calls)


def test_training_outlives_the_first_patience_window(problem):
    # fmpe validates an average of the weights (EMA, decay 0.999) that moves slowly at 5 steps per epoch; a field
    # that starts at zero kept that average at the zero field, and early stopping ended training one patience
    # window after the first epoch
    post = AmortizedPosterior(
        "fmpe", network={"width": 32, "depth": 2}, max_epochs=30, patience=5, seed=0, progress_bar=False
    )
    post.fit(problem.prior, problem.simulate, num_simulations=1000)
    assert post.epochs_ > 5 + 1
