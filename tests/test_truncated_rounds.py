"""Truncated sequential rounds (TSNPE): TruncatedPrior, and AmortizedPosterior.fit with a list of budgets."""

from __future__ import annotations

import math

import pytest
import torch

from priorfit import AmortizedPosterior
from priorfit.errors import PriorfitValidationError
from priorfit.priors import TruncatedPrior
from priorfit.priors.simulators import GaussianLinear, box_uniform

FAST = {"max_epochs": 30, "patience": 8, "batch_size": 50, "lr": 1e-3, "logger": None, "progress_bar": False}


def test_truncated_prior_samples_only_the_region_at_the_prior_rate():
    prior = box_uniform(-1.0, 1.0, 2)
    truncated = TruncatedPrior(prior, lambda theta: -theta.square().sum(-1), threshold=-0.25)  # the disc r <= 0.5
    draws = truncated.sample((4000,))
    assert draws.shape == (4000, 2)
    assert bool((draws.norm(dim=-1) <= 0.5).all())
    assert abs(truncated.acceptance_rate - math.pi * 0.25 / 4) < 0.02
    assert abs(draws[:, 0].mean().item()) < 0.03  # uniform inside: the prior's shape is kept
    log_prob = truncated.log_prob(torch.tensor([[0.1, 0.1], [0.9, 0.0]]))
    assert log_prob[0] == prior.log_prob(torch.tensor([0.1, 0.1])) and log_prob[1] == -math.inf
    empty = TruncatedPrior(prior, lambda theta: -theta.square().sum(-1), threshold=1.0, max_draws=20)
    with pytest.raises(PriorfitValidationError, match="too small to sample by rejection"):
        empty.sample((10,))


def test_rounds_concentrate_simulations_near_the_observation():
    problem = GaussianLinear(dim=2, prior_var=1.0, noise_var=0.01)
    torch.manual_seed(0)
    x_obs = problem.simulate(torch.tensor([[0.3, -0.2]]))
    post = AmortizedPosterior("gmm", network={"components": 2, "hidden": 32}, **FAST)
    post.fit(problem.prior, problem.simulate, num_simulations=[600, 600], x_obs=x_obs)
    assert [r["num_simulations"] for r in post.rounds_] == [600, 600]
    assert post.rounds_[0]["prior_acceptance"] is None
    assert 0.005 < post.rounds_[1]["prior_acceptance"] < 0.3  # the region: about 4.3 posterior std around x_obs
    assert post.training_["num_simulations"] == 1200
    exact = problem.posterior(x_obs)
    samples = post.sample(x_obs, 2000)
    assert (samples.mean(0).double() - exact.mean).abs().max() < 0.03  # posterior std 0.1
    assert torch.allclose(samples.std(0).double(), exact.stddev, rtol=0.3)


def test_rounds_need_an_observation_and_a_density():
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior("gmm", **FAST)
    with pytest.raises(PriorfitValidationError, match="pass x_obs"):
        post.fit(problem.prior, problem.simulate, num_simulations=[100, 100])
    with pytest.raises(PriorfitValidationError, match="truncated rounds"):
        AmortizedPosterior("score", **FAST).fit(problem.prior, problem.simulate, [100, 100], x_obs=torch.zeros(1, 2))
    with pytest.raises(PriorfitValidationError, match="num_simulations"):
        post.fit(problem.prior, problem.simulate, num_simulations=[])
