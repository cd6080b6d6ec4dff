"""Fisher-information regularizer and adversarial attack: analytic Gaussian cases and a trained set flow."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from priorfit import AmortizedPosterior
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.priors.simulators import GaussianLinear
from priorfit.robustness import attack, fisher_penalty, monte_carlo_kl
from priorfit.tasks.posterior import PosteriorTask, SimulationShapes

SENSITIVITY = torch.tensor([3.0, 0.1])


def linear_gaussian(x: torch.Tensor):
    """q(θ | x) = N(M x̄, 0.5² I) with M = diag(3, 0.1): x̄ the mean of the set's observations."""
    return Independent(Normal(SENSITIVITY * x.mean(1), 0.5), 1)


def test_fisher_penalty_is_the_analytic_trace():
    # ∇_x log q = M (θ - M x) / σ² / n per observation: E||·||² = Σ_d M_d² / σ² / n
    x = torch.randn(4000, 2, 2)
    trace = fisher_penalty(linear_gaussian, x).mean().detach()
    assert float(trace) == pytest.approx(float((SENSITIVITY**2).sum() / 0.25 / 2), rel=0.05)


def test_attack_finds_the_most_sensitive_direction_and_beats_random_noise():
    x = torch.randn(50, 1, 2)
    epsilon = 0.2
    result = attack(linear_gaussian, x, epsilon, steps=20, eval_samples=2000)
    # KL of a mean shift Mδ: |Mδ|² / (2 σ²); the best δ lies along the first axis
    best = float(SENSITIVITY[0] ** 2 * epsilon**2 / (2 * 0.25))
    random = float((SENSITIVITY**2).mean() * epsilon**2 / (2 * 0.25))
    assert float(result.divergence.mean()) == pytest.approx(best, rel=0.1)
    assert float(result.random_divergence.mean()) == pytest.approx(random, rel=0.25)
    assert (result.delta.flatten(1).norm(dim=1) <= epsilon + 1e-5).all()
    linf = attack(linear_gaussian, x, epsilon, norm="linf", steps=20)
    assert linf.delta.abs().max() <= epsilon + 1e-6


def test_zero_budget_changes_nothing():
    x = torch.randn(10, 1, 2)
    result = attack(linear_gaussian, x, 0.0)
    assert (result.delta == 0).all()
    assert (result.divergence == 0).all() and (result.random_divergence == 0).all()
    assert (monte_carlo_kl(linear_gaussian, x, x) == 0).all()


@pytest.fixture(scope="module")
def set_flow():
    """A flow on 2-D Gaussian linear trained on sets of 4 observations: its posterior depends on their sum."""
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior(
        "flow",
        num_iid=4,
        network={
            "encoder": {"width": 32, "heads": 2, "layers": 0, "embed_dim": 32},
            "transforms": 2,
            "hidden": [32, 32],
        },
        max_epochs=25,
        patience=5,
        batch_size=100,
        lr=2e-3,
        logger=None,
        progress_bar=False,
    )
    return problem, post.fit(problem.prior, problem.simulate, num_simulations=2000)


def test_attack_on_a_trained_set_flow_beats_random_noise(set_flow):
    problem, post = set_flow
    torch.manual_seed(3)
    theta = problem.prior.sample((30,))
    x = problem.simulate(theta.repeat_interleave(4, 0)).view(30, 4, 2)
    result = attack(post, x, 0.5, steps=20, eval_samples=300)
    # the exact posterior's ratio is 4 (moving all observations together); random noise mostly cancels
    assert result.ratio > 2.0, result.to_dict()


def test_regularizer_gradient_reaches_the_network(set_flow):
    _, post = set_flow
    network = post.task_.network
    network.zero_grad()
    fisher_penalty(post, torch.randn(8, 4, 2)).mean().backward()
    assert network.encoder.embed[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.flow.parameters())


def test_fisher_weight_adds_the_penalty_to_the_training_loss():
    shapes = SimulationShapes(2, 2)
    kwargs = {"prior": shapes, "network": {"kind": "gmm", "encoder": {"layers": 0}}}
    plain, regularized = PosteriorTask(**kwargs), PosteriorTask(**kwargs, fisher_weight=1.0)
    regularized.load_state_dict(plain.state_dict())
    theta, x = torch.randn(16, 2), torch.randn(16, 3, 2)
    torch.manual_seed(0)
    base = plain.training_step((theta, x), 0)
    torch.manual_seed(0)
    total = regularized.training_step((theta, x), 0)
    assert float(total) > float(base)
    with pytest.raises(InvalidHyperparameterError, match="fisher_weight"):
        PosteriorTask(**kwargs, fisher_weight=-1.0)
    with pytest.raises(InvalidHyperparameterError, match="score"):
        PosteriorTask(prior=shapes, network={"kind": "score"}, fisher_weight=0.1)


def test_bad_attack_arguments_are_named():
    x = torch.randn(3, 1, 2)
    with pytest.raises(PriorfitValidationError, match="norm"):
        attack(linear_gaussian, x, 0.1, norm="l1")
    with pytest.raises(PriorfitValidationError, match="epsilon"):
        attack(linear_gaussian, x, -1.0)
    with pytest.raises(PriorfitValidationError, match="NaN"):
        attack(linear_gaussian, x * float("nan"), 0.1)
    with pytest.raises(PriorfitValidationError, match="score"):
        attack(AmortizedPosterior("score"), x, 0.1)


def test_regularizer_works_through_attention_layers():
    # the fused CPU attention kernels have no double backward; fisher_penalty must still train set encoders
    from priorfit.networks.posterior import FlowPosterior

    network = FlowPosterior(
        2, 2, encoder={"width": 16, "heads": 2, "layers": 1, "embed_dim": 16}, transforms=2, hidden=(16, 16)
    )
    fisher_penalty(network, torch.randn(4, 3, 2)).mean().backward()
    assert network.encoder.layers[0].qkv.weight.grad.abs().sum() > 0
