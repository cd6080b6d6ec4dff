"""AmortizedPosterior(n_ensemble=k): k members from different initial weights, answered as their mixture."""

from __future__ import annotations

import math

import pytest
import torch

import priorfit
from priorfit import AmortizedPosterior
from priorfit.errors import InvalidHyperparameterError
from priorfit.networks.ensemble import EnsemblePosterior, EqualMixture
from priorfit.priors.simulators import GaussianLinear

FAST = {"max_epochs": 15, "patience": 5, "batch_size": 50, "lr": 1e-3, "logger": None, "progress_bar": False}


@pytest.fixture(scope="module")
def problem():
    return GaussianLinear(dim=2)


@pytest.fixture(scope="module")
def ensemble(problem):
    post = AmortizedPosterior("gmm", n_ensemble=3, network={"components": 2, "hidden": 32}, **FAST)
    return post.fit(problem.prior, problem.simulate, num_simulations=1000)


def test_members_differ_and_the_density_is_their_mixture(ensemble, problem):
    network = ensemble.task_.network
    assert isinstance(network, EnsemblePosterior) and len(network.members) == 3
    first, second = (next(member.parameters()) for member in network.members[:2])
    assert not torch.equal(first, second)  # different initial weights, so different members
    x_obs = problem.simulate(problem.prior.sample((1,)))
    theta = problem.posterior(x_obs).sample((200,)).float()
    members = torch.stack([m.distribution(x_obs[None]).log_prob(theta[:, None])[:, 0] for m in network.members])
    expected = torch.logsumexp(members, 0) - math.log(3)
    torch.testing.assert_close(ensemble.log_prob(theta, x_obs), expected)
    # log of a mean is at least the mean of logs: the mixture's NLL never exceeds the members' mean NLL
    assert -expected.mean() <= -members.mean()
    exact = problem.posterior(x_obs)
    samples = ensemble.sample(x_obs, 4000)
    assert samples.shape == (4000, 2)
    assert (samples.mean(0).double() - exact.mean).abs().max() < 0.15


def test_mixture_samples_come_from_every_member_in_equal_shares():
    members = [
        torch.distributions.Independent(torch.distributions.Normal(torch.full((1, 1), c), 1e-3), 1)
        for c in (-1.0, 0.0, 1.0)
    ]
    draws = EqualMixture(members).sample((3000,))
    assert draws.shape == (3000, 1, 1)
    shares = torch.stack([(draws.round() == c).float().mean() for c in (-1.0, 0.0, 1.0)])
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.04)


def test_saved_ensemble_loads_with_the_same_answers(ensemble, problem, tmp_path):
    x_obs = torch.tensor([[0.3, -0.2]])
    theta = torch.randn(50, 2)
    loaded = priorfit.load(ensemble.save(tmp_path / "ensemble.safetensors"))
    assert loaded.estimator == "gmm" and loaded.n_ensemble == 3
    torch.testing.assert_close(loaded.log_prob(theta, x_obs), ensemble.log_prob(theta, x_obs))


def test_ensembles_of_score_networks_are_refused():
    with pytest.raises(InvalidHyperparameterError, match="density estimator"):
        AmortizedPosterior("score", n_ensemble=2)
    with pytest.raises(InvalidHyperparameterError, match="n_ensemble"):
        AmortizedPosterior("flow", n_ensemble=0)
    from priorfit.networks.posterior import FlowPosterior, GMMPosterior
    from priorfit.networks.score import ScoreNetwork

    with pytest.raises(InvalidHyperparameterError, match="one family"):
        EnsemblePosterior(2, 2, members=[GMMPosterior(2, 2), FlowPosterior(2, 2)])
    with pytest.raises(InvalidHyperparameterError, match="has none"):
        EnsemblePosterior(2, 2, members=[ScoreNetwork(2, 2)])
    with pytest.raises(InvalidHyperparameterError, match="θ of size 3"):
        EnsemblePosterior(3, 2, members=[GMMPosterior(2, 2)])
