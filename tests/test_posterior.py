"""AmortizedPosterior (flow and GMM heads over a set encoder) against exact Gaussian-linear posteriors."""

from __future__ import annotations

import pickle

import pytest
import torch
from sbi.utils.metrics import c2st

import priorfit
from priorfit import AmortizedPosterior
from priorfit.checkpoint import load_task
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.networks.posterior import FlowPosterior, GMMPosterior, SetEncoder
from priorfit.networks.score import T_MIN, ScoreNetwork
from priorfit.priors.simulators import GaussianLinear, box_uniform

SMALL = {"encoder": {"width": 32, "heads": 2, "layers": 1, "embed_dim": 32}}
FAST = {"max_epochs": 40, "patience": 10, "batch_size": 50, "lr": 1e-3, "logger": None, "progress_bar": False}


@pytest.fixture(scope="module")
def problem():
    return GaussianLinear(dim=2)


@pytest.fixture(scope="module", params=["gmm", "flow"])
def trained(request, problem):
    network = {**SMALL, **({"transforms": 3, "hidden": [32, 32]} if request.param == "flow" else {})}
    post = AmortizedPosterior(request.param, num_iid=(1, 8), network=network, **FAST)
    return post.fit(problem.prior, problem.simulate, num_simulations=2000)


def test_posterior_matches_the_exact_one_for_several_set_sizes(trained, problem):
    torch.manual_seed(0)
    theta = problem.prior.sample((1,))
    for n in (1, 8):
        x_obs = problem.simulate(theta.repeat(n, 1))
        samples = trained.sample(x_obs, 1000)
        reference = problem.reference_posterior(x_obs, 1000)
        assert float(c2st(samples, reference)) < 0.65, n
        exact = problem.posterior(x_obs)
        assert (samples.mean(0).double() - exact.mean).abs().max() < 0.1


def test_posterior_contracts_with_more_observations(trained, problem):
    theta = problem.prior.sample((1,))
    wide = trained.sample(problem.simulate(theta), 2000).std(0)
    narrow = trained.sample(problem.simulate(theta.repeat(8, 1)), 2000).std(0)
    assert (narrow < 0.75 * wide).all()  # exact ratio 0.47


def test_log_prob_tracks_the_exact_density(trained, problem):
    x_obs = torch.tensor([[0.2, -0.1], [0.3, 0.0]])
    exact = problem.posterior(x_obs)
    theta = exact.sample((500,)).float()
    learned = trained.log_prob(theta, x_obs).double()
    truth = exact.log_prob(theta.double())
    assert (learned - truth).mean().abs() < 0.25  # KL(exact || learned) estimate
    # the shape: on points spread twice as wide, where the density varies over several nats (at the posterior's own
    # spread it varies by about one, so a correlation there swings with the trained weights and thread count)
    wide = (exact.mean + 2 * (theta.double() - exact.mean)).float()
    learned, truth = trained.log_prob(wide, x_obs).double(), exact.log_prob(wide.double())
    assert torch.corrcoef(torch.stack([learned, truth]))[0, 1] > 0.9
    mode = trained.map(x_obs)
    assert (mode.double() - exact.mean).abs().max() < 0.1


def test_pickle_and_checkpoint_round_trip(trained, problem, tmp_path):
    x_obs = torch.tensor([[0.2, -0.1]])
    theta = torch.tensor([[0.1, 0.0], [0.3, -0.2]])
    expected = trained.log_prob(theta, x_obs)
    torch.testing.assert_close(pickle.loads(pickle.dumps(trained)).log_prob(theta, x_obs), expected)
    path = trained.save(tmp_path / "posterior.safetensors")
    torch.testing.assert_close(priorfit.load(path).log_prob(theta, x_obs), expected)
    assert type(load_task(path)).__name__ == "PosteriorTask"


def test_samples_outside_the_prior_are_rejected_and_counted():
    prior = box_uniform(0.0, 1.0, 1)
    simulator = lambda t: t + 0.3 * torch.randn_like(t)  # noqa: E731
    post = AmortizedPosterior("gmm", network=SMALL, **FAST).fit(prior, simulator, num_simulations=1000)
    samples = post.sample(torch.tensor([[1.2]]), 2000)
    assert ((samples >= 0) & (samples <= 1)).all()
    assert 0.2 < post.acceptance_rate_ < 0.99  # the mixture's tails leak past the prior's edge at 1
    unrestricted = post.sample(torch.tensor([[1.2]]), 2000, reject_outside_prior=False)
    assert (unrestricted > 1).any()


def test_set_encoder_is_permutation_invariant():
    encoder = SetEncoder(3, width=16, heads=2, layers=2, embed_dim=8)
    x = torch.randn(4, 7, 3)
    torch.testing.assert_close(encoder(x), encoder(x[:, torch.randperm(7)]), atol=1e-5, rtol=1e-5)
    for head in (FlowPosterior(2, 3, encoder={"width": 16, "heads": 2}), GMMPosterior(2, 3, components=3)):
        distribution = head(x)
        assert distribution.batch_shape == (4,) and distribution.event_shape == (2,)
        assert distribution.log_prob(torch.zeros(4, 2)).shape == (4,)


def test_bad_inputs_get_named_errors(trained):
    with pytest.raises(PriorfitValidationError, match=r"shape \(n, 2\)"):
        trained.sample(torch.zeros(3, 5), 10)
    with pytest.raises(PriorfitValidationError, match="one set of observations"):
        trained.sample(torch.zeros(2, 3, 2), 10)
    with pytest.raises(PriorfitValidationError, match="NaN"):
        trained.sample(torch.tensor([[float("nan"), 0.0]]), 10)
    with pytest.raises(PriorfitValidationError, match=r"θ must have shape \(M, 2\)"):
        trained.log_prob(torch.zeros(3, 4), torch.zeros(1, 2))
    with pytest.raises(PriorfitValidationError, match="not trained"):
        AmortizedPosterior().sample(torch.zeros(1, 2))
    with pytest.raises(InvalidHyperparameterError, match="log_prob"):
        AmortizedPosterior(**FAST).fit(object(), lambda t: t, num_simulations=100)
    with pytest.raises(PriorfitValidationError, match="shape"):
        AmortizedPosterior(**FAST).fit(box_uniform(0, 1, 2), lambda t: t.sum(), num_simulations=100)
    with pytest.raises(InvalidHyperparameterError, match="estimator"):
        AmortizedPosterior("nope")


@pytest.mark.slow
@pytest.mark.parametrize("field", ["mlp", "residual"])
def test_score_estimator_composes_single_observation_scores(problem, tmp_path, field):
    """Trained on single observations only; n = 1 matches the exact posterior, n = 5 composes the scores
    (GAUSS by default, Geffner's sum with Langevin correction on request); the weights save and load."""
    post = AmortizedPosterior(
        "score", network={"field": field}, sampling_steps=100, **{**FAST, "max_epochs": 150, "patience": 20}
    )
    post.fit(problem.prior, problem.simulate, num_simulations=3000)
    torch.manual_seed(1)
    theta = problem.prior.sample((1,))
    single = problem.simulate(theta)
    samples = post.sample(single, 800)
    assert float(c2st(samples, problem.reference_posterior(single, 800))) < 0.6
    five = problem.simulate(theta.repeat(5, 1))
    composed = post.sample(five, 800)
    exact = problem.posterior(five)
    assert (composed.std(0) < 0.75 * samples.std(0)).all()  # exact ratio 0.58
    assert (composed.mean(0).double() - exact.mean).abs().max() < 2.5 * exact.stddev.max()
    assert float(c2st(composed, problem.reference_posterior(five, 800))) < 0.85
    with pytest.raises(PriorfitValidationError, match="no tractable density"):
        post.log_prob(torch.zeros(1, 2), single)
    loaded = priorfit.load(post.save(tmp_path / "score.safetensors"), prior=problem.prior)
    loaded.iid_method = "geffner"
    geffner = loaded.sample(five, 400)
    assert loaded.estimator == "score" and torch.isfinite(geffner).all()
    assert (geffner.mean(0).double() - exact.mean).abs().max() < 2.5 * exact.stddev.max()


@pytest.mark.slow
def test_partially_factorized_score_composes_groups(problem):
    """PF-NPSE: trained on groups of 1..4 observations; 10 observations are 3 score terms (4 + 4 + 2)."""
    post = AmortizedPosterior(
        "score", num_iid=(1, 4), network={"group_size": 4}, sampling_steps=50, **{**FAST, "max_epochs": 100}
    )
    post.fit(problem.prior, problem.simulate, num_simulations=2000)
    network = post._network()
    assert network.embed_observations(torch.zeros(10, 2), 10).shape == (3, network.null.numel())
    torch.manual_seed(2)
    theta = problem.prior.sample((1,))
    x_obs = problem.simulate(theta.repeat(10, 1))
    samples = post.sample(x_obs, 800)
    exact = problem.posterior(x_obs)
    assert (samples.mean(0).double() - exact.mean).abs().max() < 2.5 * exact.stddev.max()
    assert float(c2st(samples, problem.reference_posterior(x_obs, 800))) < 0.85
    with pytest.raises(ValueError, match="group_size"):
        AmortizedPosterior("score", network={"group_size": 0}, **FAST).fit(
            problem.prior, problem.simulate, num_simulations=100
        )


def test_score_estimators_smoke(problem, tmp_path):
    """The two score tests above in two epochs (the default run): composition for n > 1, PF-NPSE groups, no
    density, save and load; the accuracy checks are the slow versions'."""
    post = AmortizedPosterior("score", sampling_steps=5, **{**FAST, "max_epochs": 2})
    post.fit(problem.prior, problem.simulate, num_simulations=300)
    five = problem.simulate(problem.prior.sample((1,)).repeat(5, 1))
    assert post.sample(five, 50).shape == (50, 2) and post.estimator == "score"
    with pytest.raises(PriorfitValidationError, match="no tractable density"):
        post.log_prob(torch.zeros(1, 2), five)
    loaded = priorfit.load(post.save(tmp_path / "score.safetensors"), prior=problem.prior)
    loaded.iid_method = "geffner"
    assert torch.isfinite(loaded.sample(five, 20)).all()
    grouped = AmortizedPosterior(
        "score", num_iid=(1, 4), network={"group_size": 4}, sampling_steps=5, **{**FAST, "max_epochs": 2}
    )
    grouped.fit(problem.prior, problem.simulate, num_simulations=300)
    network = grouped._network()
    assert network.embed_observations(torch.zeros(10, 2), 10).shape == (3, network.null.numel())
    assert torch.isfinite(grouped.sample(problem.simulate(problem.prior.sample((1,)).repeat(10, 1)), 50)).all()


@pytest.mark.parametrize("field", ["mlp", "residual"])
def test_per_observation_scores_equal_one_evaluation_per_observation(field):
    """The K-fold evaluation (θ_t and each observation's part of the first or merge layer computed once, summed
    by broadcasting, later layers in row blocks) gives what evaluating ε̂ once per observation gives."""
    torch.manual_seed(0)
    network = ScoreNetwork(3, 4, field=field)
    embeddings = network.x_embed(torch.randn(5, 4))
    shared, paired = torch.randn(7, 3), torch.randn(5, 7, 3)
    times = torch.full((7,), 0.3)
    with torch.no_grad():
        expected_shared = torch.stack([network.eps(shared, times, e.expand(7, -1)) for e in embeddings])
        expected_paired = torch.stack([network.eps(paired[k], times, embeddings[k].expand(7, -1)) for k in range(5)])
        assert torch.allclose(network.eps_per_observation(shared, 0.3, embeddings), expected_shared, atol=1e-5)
        assert torch.allclose(network.eps_per_observation(paired, 0.3, embeddings), expected_paired, atol=1e-5)
    with pytest.raises(ValueError, match="field must be one of"):
        ScoreNetwork(3, 4, field="unet")


def test_a_residual_field_score_posterior_trains_saves_and_loads(problem, tmp_path):
    """network={"field": "residual"} is written into the checkpoint's configuration, so the file rebuilds the same
    network; the default (and a configuration without "field": every earlier file) is the MLP."""
    post = AmortizedPosterior("score", network={"field": "residual"}, sampling_steps=5, **{**FAST, "max_epochs": 2})
    post.fit(problem.prior, problem.simulate, num_simulations=300)
    assert post._network().field_kind == "residual" and post.task_.hparams["network"]["field"] == "residual"
    assert ScoreNetwork(2, 2).field_kind == "mlp"
    loaded = priorfit.load(post.save(tmp_path / "residual.safetensors"), prior=problem.prior)
    assert loaded._network().field_kind == "residual"
    theta_t, times, embedding = torch.randn(6, 2), torch.rand(6), torch.randn(6, post._network().null.numel())
    with torch.no_grad():
        expected = post._network().eps(theta_t, times, embedding)
        assert torch.equal(loaded._network().eps(theta_t, times, embedding), expected)
    five = problem.simulate(problem.prior.sample((1,)).repeat(5, 1))
    assert torch.isfinite(loaded.sample(five, 30)).all()


def test_score_training_times_favour_small_times_by_the_share_asked():
    """With half the training times log-uniform on [T_MIN, 1] about 26 % fall below 0.03 and 30 % above 0.5;
    with none, 3 % and 50 % (uniform); all lie in [T_MIN, 1]; a share outside [0, 1] is refused."""
    for share, below, above in ((0.5, 0.261, 0.300), (0.0, 0.029, 0.500)):
        torch.manual_seed(0)
        times = ScoreNetwork(2, 2, log_time_share=share).training_times(200_000)
        assert times.min() >= T_MIN and times.max() <= 1.0
        assert abs(float((times < 0.03).float().mean()) - below) < 0.01
        assert abs(float((times > 0.5).float().mean()) - above) < 0.01
    with pytest.raises(ValueError, match="log_time_share"):
        ScoreNetwork(2, 2, log_time_share=1.5)


def test_score_sampler_defaults_follow_the_number_of_score_terms(problem, monkeypatch):
    """One score term (n = 1, or n ≤ group_size) composes nothing and runs the reverse SDE with 200 steps;
    GAUSS composition for n > 1 runs DDIM with 50; an explicit sampling_steps wins."""
    post = AmortizedPosterior("score", **{**FAST, "max_epochs": 2})
    post.fit(problem.prior, problem.simulate, num_simulations=300)
    network = post._network()
    integrations = []
    integrate = network._reverse_diffusion

    def recording(theta, score_fn, steps, sampler, *args):
        integrations.append((sampler, steps))
        return integrate(theta, score_fn, steps, sampler, *args)

    monkeypatch.setattr(network, "_reverse_diffusion", recording)
    theta = problem.prior.sample((1,))
    post.sample(problem.simulate(theta), 20, reject_outside_prior=False)
    assert integrations[-1] == ("sde", 200)
    post.sample(problem.simulate(theta.repeat(3, 1)), 20, reject_outside_prior=False)
    assert integrations[-1] == ("ddim", 50)  # after the precisions' own DDIM run
    post.sampling_steps = 7
    post.sample(problem.simulate(theta), 20, reject_outside_prior=False)
    assert integrations[-1] == ("sde", 7)


def test_non_finite_simulations_are_dropped_before_training(problem):
    theta = problem.prior.sample((300,))
    x = problem.simulate(theta)
    x[:7, 0] = float("inf")
    post = AmortizedPosterior("gmm", network=SMALL, **{**FAST, "max_epochs": 2})
    post.fit_simulations(theta, x, prior=problem.prior)
    assert post.num_dropped_ == 7 and post.sample(x[10], 50).shape == (50, 2)


def test_log_prob_batch_matches_one_set_at_a_time(trained, problem):
    x = problem.simulate(problem.prior.sample((60,))).unsqueeze(1)  # 60 sets: two chunks
    samples = trained.sample_batch(x, 7)
    batched = trained.log_prob_batch(samples, x)
    assert batched.shape == (7, 60)
    one_by_one = torch.stack([trained.log_prob(samples[:, b], x[b]) for b in (0, 55)], dim=1)
    assert torch.allclose(batched[:, [0, 55]], one_by_one, atol=1e-5)
    assert trained.log_prob_batch(samples[0], x).shape == (60,)
    with pytest.raises(PriorfitValidationError, match=r"θ must have shape \(60, 2\) or \(S, 60, 2\)"):
        trained.log_prob_batch(samples[:, :5], x)
