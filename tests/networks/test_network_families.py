"""One test over every network family of the registry: shapes, gradients, eval determinism, save/load."""

from __future__ import annotations

import io

import pytest
import torch

from priorfit.registry import FAMILIES, resolve_target

B, N, M = 3, 6, 4  # data sets, context points / observations, query points


def _inputs(*shapes):
    """Inputs drawn from their own generator: the same for a rebuilt network, whatever its weights' seed."""
    generator = torch.Generator().manual_seed(123)
    return [torch.randn(*shape, generator=generator) for shape in shapes]


def _pfn():
    network = resolve_target("priorfit.networks.PFNTransformer")(
        max_features=2, num_outputs=7, d_model=16, n_heads=2, n_layers=1, d_ff=32
    )
    x, y, query = _inputs((B, N, 2), (B, N, 1), (B, M, 2))

    def output():
        return network(x, y, query)

    return network, output, lambda: output().logsumexp(-1).sum(), (B, M, 7)


def _dt():
    network = resolve_target("priorfit.networks.DistributionTransformer")(
        theta_dim=2, x_dim=2, max_components=2, d_model=16, n_heads=2, n_layers=1, d_ff=32, posterior_head="message"
    )
    means, x, theta = _inputs((B, 2, 2), (B, N, 2), (B, 2))
    logits, tril = torch.zeros(B, 2), torch.eye(2).expand(B, 2, 2, 2)

    def output():
        return network.posterior_parameters(logits, means, tril, x)[1]

    return network, output, lambda: -network(logits, means, tril, x).log_prob(theta).sum(), (B, 2, 2)


ENCODER = {"width": 8, "heads": 2, "layers": 1}


def _density(build):
    """A density family's maker: ``build()`` gives the network (θ of size 2, observations of size 3)."""

    def make():
        network = build()
        fit_theta, fit_x, theta, x = _inputs((50, 2), (50, N, 3), (B, 2), (B, N, 3))
        network.fit_standardization(fit_theta, fit_x)

        def output():
            return network.distribution(x).log_prob(theta)

        return network, output, lambda: network.training_loss(theta, x).sum(), (B,)

    return make


def _posterior(name: str, **options):
    return _density(lambda: resolve_target(name)(theta_dim=2, x_dim=3, encoder=ENCODER, **options))


def _score():
    network = resolve_target("priorfit.networks.score.ScoreNetwork")(
        theta_dim=2, x_dim=3, hidden=16, layers=2, embed_dim=8, null_prob=0.5
    )
    fit_theta, fit_x, theta, x = _inputs((50, 2), (50, 1, 3), (8, 2), (8, 1, 3))
    network.fit_standardization(fit_theta, fit_x)

    def output():  # the score of p_t(θ | x_1, x_2) at two points, composed from single-observation scores
        return network.composed_score(theta[:2], 0.5, network.embed_observations(x[:2, 0], 2), None)

    def loss():
        torch.manual_seed(0)  # the null-observation dropout: some rows train the unconditional score
        return network.training_loss(theta, x).sum()

    return network, output, loss, (2, 2)


def _ensemble():
    def build():
        gmm = resolve_target("priorfit.networks.posterior.GMMPosterior")
        members = [gmm(theta_dim=2, x_dim=3, encoder=ENCODER, components=2) for _ in range(2)]
        return resolve_target("priorfit.networks.ensemble.EnsemblePosterior")(theta_dim=2, x_dim=3, members=members)

    return _density(build)


MAKERS = {
    "priorfit.networks.PFNTransformer": _pfn,
    "priorfit.networks.DistributionTransformer": _dt,
    "priorfit.networks.posterior.FlowPosterior": _posterior("priorfit.networks.posterior.FlowPosterior", transforms=2),
    "priorfit.networks.posterior.GMMPosterior": _posterior("priorfit.networks.posterior.GMMPosterior", components=2),
    "priorfit.networks.flow_matching.FlowMatchingPosterior": _posterior(
        "priorfit.networks.flow_matching.FlowMatchingPosterior", width=16, depth=2, time_dim=8
    ),
    "priorfit.networks.score.ScoreNetwork": _score,
    "priorfit.networks.ensemble.EnsemblePosterior": _ensemble(),
}


def test_every_network_family_of_the_registry_is_tested_here():
    networks = {name for name in FAMILIES if name.startswith("priorfit.networks.")}
    assert networks == set(MAKERS), "add the new family to MAKERS"


@pytest.mark.parametrize("family", sorted(MAKERS))
def test_network_family(family):
    check_family(MAKERS[family])


def test_the_coupling_layout_of_the_flow_family():
    check_family(_posterior("priorfit.networks.posterior.FlowPosterior", transforms=3, coupling=True))


def check_family(make):
    """Output shape, a gradient to every parameter, deterministic eval mode, and a state-dict round trip."""
    torch.manual_seed(0)
    network, output, loss, shape = make()

    assert tuple(output().shape) == shape
    with torch.no_grad():  # zero-initialised output layers would hide the layers behind them
        for parameter in network.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    loss().backward()
    silent = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"

    network.eval()
    with torch.no_grad():
        first, second = output(), output()
    assert torch.equal(first, second), "eval mode must be deterministic"

    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    torch.manual_seed(1)
    rebuilt, rebuilt_output, _, _ = make()
    buffer.seek(0)
    rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
    rebuilt.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt_output(), first, atol=1e-6), "save/load must round-trip"


def test_a_new_posterior_family_needs_one_module_and_one_registry_line(monkeypatch, tmp_path):
    """The architecture's promise: a family written in its own module (tests/networks/tiny_family.py) plus its line in
    FAMILIES trains, answers, saves and loads like the built-in ones, with no other change."""
    import priorfit
    from priorfit import AmortizedPosterior
    from priorfit.priors.simulators import GaussianLinear

    monkeypatch.setitem(FAMILIES, "tests.networks.tiny_family.MLPPosterior", "tests.networks.tiny_family:MLPPosterior")
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior("mlp", max_epochs=3, progress_bar=False, network={"encoder": {"width": 16}})
    post.fit(problem.prior, problem.simulate, num_simulations=300)
    x_obs = torch.zeros(1, 2)
    assert post.sample(x_obs, 50).shape == (50, 2) and post.posterior(x_obs).log_prob(torch.zeros(2)).isfinite()
    loaded = priorfit.load(post.save(tmp_path / "mlp.safetensors"))  # no trusted_targets: it is on the list
    torch.testing.assert_close(loaded.log_prob(torch.zeros(3, 2), x_obs), post.log_prob(torch.zeros(3, 2), x_obs))
    monkeypatch.delitem(FAMILIES, "tests.networks.tiny_family.MLPPosterior")
    with pytest.raises(priorfit.CheckpointError, match="tests.networks.tiny_family.MLPPosterior"):
        priorfit.load(tmp_path / "mlp.safetensors")  # off the list again: refused, never imported
    trusted = priorfit.load(tmp_path / "mlp.safetensors", trusted_targets={"tests.networks.tiny_family.MLPPosterior"})
    assert trusted.estimator == "mlp" and trusted.sample(x_obs, 5).shape == (5, 2)  # a user's own family, named


def test_flow_layouts_default_to_coupling_and_old_configs_rebuild_autoregressive(tmp_path):
    """``AmortizedPosterior("flow")`` trains the coupling flow (stored explicitly); a stored flow config without
    ``coupling`` (the earlier default) rebuilds zuko's autoregressive NSF; ``passes`` is zuko's option."""
    import priorfit
    from priorfit import AmortizedPosterior
    from priorfit.errors import InvalidHyperparameterError
    from priorfit.networks.posterior import FlowPosterior
    from priorfit.posterior import default_flow
    from priorfit.priors.simulators import GaussianLinear
    from priorfit.registry import build

    problem = GaussianLinear(dim=3)
    post = AmortizedPosterior("flow", max_epochs=2, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=300)
    stored = post.task_.hparams["network"]
    assert {key: stored[key] for key in default_flow(3)} == default_flow(3) and post.task_.network.coupling
    assert default_flow(3)["transforms"] == 5 and default_flow(2)["transforms"] == 10
    x_obs = problem.simulate(problem.prior.sample((1,)))
    samples = post.sample(x_obs, 50)
    assert samples.shape == (50, 3) and torch.isfinite(post.log_prob(samples, x_obs)).all()
    post.save(tmp_path / "coupling.safetensors")
    loaded = priorfit.load(tmp_path / "coupling.safetensors")
    assert loaded.task_.network.coupling
    assert torch.allclose(loaded.log_prob(samples, x_obs), post.log_prob(samples, x_obs), atol=1e-5)

    old = build({"_target_": "priorfit.networks.posterior.FlowPosterior"}, theta_dim=3, x_dim=3)
    assert not old.coupling and len(old.flow.transform.transforms) == 8  # the earlier default, unchanged
    for network in ({"passes": 2}, {"coupling": False}):
        explicit = AmortizedPosterior("flow", network=network, max_epochs=1, progress_bar=False)
        explicit.fit(problem.prior, problem.simulate, num_simulations=200)
        assert not explicit.task_.network.coupling
    with pytest.raises(InvalidHyperparameterError, match="passes must be None"):
        FlowPosterior(2, 2, passes=0)
    with pytest.raises(InvalidHyperparameterError, match="Drop passes"):
        FlowPosterior(2, 2, coupling=True, passes=2)
