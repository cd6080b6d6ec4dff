"""GMM, random GMM priors and likelihoods, the Distribution Transformer network and DTTask."""

import math

import pytest
import torch

import priorfit
from priorfit import GMM
from priorfit.checkpoint import export_checkpoint, load_task
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.gmm import sample_gmm
from priorfit.networks import DistributionTransformer, MessageHead
from priorfit.priors import LinearGaussian, RandomGMMPrior, RangeBearing
from priorfit.priors.gmm import importance_posterior
from priorfit.priors.gp_predictive import GPPredictive
from priorfit.tasks import DTTask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def two_component_prior():
    covs = torch.stack([torch.eye(2), torch.tensor([[2.0, 0.5], [0.5, 1.0]])])
    return GMM(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), covs)


def test_gmm_density_matches_a_hand_written_mixture():
    prior = two_component_prior()
    theta = torch.randn(50, 2)
    by_hand = torch.logsumexp(
        torch.stack(
            [
                math.log(w) + torch.distributions.MultivariateNormal(m, c).log_prob(theta)
                for w, m, c in zip([0.3, 0.7], prior.means, prior.covs)
            ]
        ),
        0,
    )
    assert torch.allclose(prior.log_prob(theta), by_hand, atol=1e-5)
    draws = sample_gmm(prior, gen(), 200_000)
    assert draws.shape == (200_000, 2) and torch.allclose(draws.mean(0), prior.mean, atol=0.02)


@pytest.mark.parametrize(
    "weights, covs, message",
    [
        ([0.5, 0.6], None, "sum to 1"),
        ([-0.5, 1.5], None, "non-negative"),
        ([0.5, 0.5], torch.tensor([[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]), "not positive definite"),
        ([0.5, 0.5], torch.tensor([[[1.0, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]), "symmetric"),
        ([0.5, 0.5], torch.eye(3).expand(2, 3, 3), "covs have shape"),
        ([1.0], None, "one per component"),
    ],
)
def test_bad_gmms_get_named_errors(weights, covs, message):
    covs = torch.eye(2).expand(2, 2, 2) if covs is None else covs
    with pytest.raises(PriorfitValidationError, match=message):
        GMM(torch.tensor(weights), torch.zeros(2, 2), covs)


def test_random_priors_have_the_configured_shape():
    prior = RandomGMMPrior(dim=3, max_components=4, min_components=2)
    batch = prior.sample(500, 7, generator=gen())
    assert batch.x.shape == (500, 7, 3) and batch.theta.shape == (500, 3)
    used = torch.isfinite(batch.meta["prior_logits"]).sum(-1)
    assert used.min() == 2 and used.max() == 4
    covs = batch.meta["prior_scale_tril"] @ batch.meta["prior_scale_tril"].mT
    assert (torch.linalg.eigvalsh(covs) > 0).all()
    again = prior.sample(500, 7, generator=gen())
    assert torch.equal(batch.x, again.x)
    with pytest.raises(InvalidHyperparameterError, match="likelihood"):
        RandomGMMPrior(likelihood="poisson")


def test_exact_posterior_single_gaussian_is_conjugate():
    likelihood = LinearGaussian(2, noise_std=0.7, matrix=3)
    prior = GMM(torch.ones(1), torch.tensor([[1.0, -1.0]]), torch.tensor([[[2.0, 0.3], [0.3, 1.0]]]))
    x = torch.randn(1, 6, 2)
    posterior = likelihood.exact_posterior(
        GMM.from_logits(prior.mixture_distribution.logits[None], prior.means[None], prior.scale_tril[None]), x
    )
    a, noise = likelihood.matrix, 0.7**2
    precision = torch.linalg.inv(prior.covs[0]) + 6 * a.T @ a / noise
    cov = torch.linalg.inv(precision)
    mean = cov @ (torch.linalg.inv(prior.covs[0]) @ prior.means[0] + a.T @ x[0].sum(0) / noise)
    assert torch.allclose(posterior.means[0, 0], mean, atol=1e-5)
    assert torch.allclose(posterior.covs[0, 0], cov, atol=1e-5)


def test_importance_sampling_recovers_the_exact_mixture_posterior():
    prior_family = RandomGMMPrior(dim=2, max_components=3)
    batch = prior_family.sample(6, 3, generator=gen(1))
    meta = batch.meta
    prior = GMM.from_logits(
        meta["prior_logits"].double(), meta["prior_means"].double(), meta["prior_scale_tril"].double()
    )
    exact = prior_family.likelihood.exact_posterior(prior, batch.x.double())
    draws, log_weights, ess = importance_posterior(
        prior, prior_family.likelihood, batch.x.double(), 200_000, generator=gen(2)
    )
    weights = log_weights.exp().unsqueeze(-1)
    mean = (weights * draws).sum(0)
    second = (weights.unsqueeze(-1) * draws.unsqueeze(-1) * draws.unsqueeze(-2)).sum(0)
    covariance = second - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    assert (ess > 1000).all()
    assert torch.allclose(mean, exact.mean, atol=0.05)
    assert torch.allclose(covariance, exact.covariance, atol=0.08)


def test_range_bearing_likelihood_matches_its_simulator():
    likelihood = RangeBearing(range_std=0.3, bearing_std=0.2)
    theta = torch.tensor([[3.0, -1.0]])
    x = likelihood.simulate(theta, 20_000, generator=gen())
    assert abs(float(x[0, :, 0].mean()) - math.hypot(3, 1)) < 0.01
    assert abs(float(x[0, :, 1].mean()) - math.atan2(-1, 3)) < 0.01
    assert (x[0, :, 1].abs() <= math.pi).all()
    # the log-likelihood of one observation is a normalised density in (range, bearing)
    grid_r = torch.linspace(2.0, 4.3, 400)
    grid_b = torch.linspace(-math.pi, math.pi, 800)
    points = torch.stack(torch.meshgrid(grid_r, grid_b, indexing="ij"), -1).reshape(1, -1, 1, 2)
    density = likelihood.log_likelihood(theta.expand(1, 1, 2).reshape(1, 1, 2), points.reshape(-1, 1, 2)).exp()
    cell = (grid_r[1] - grid_r[0]) * (grid_b[1] - grid_b[0])
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=0.01)


def _gp_batch(count: int, n: int, seed: int):
    family = RandomGMMPrior(dim=1, likelihood="gp_predictive", likelihood_options={"noise_std": 0.1})
    batch = family.sample(count, n, generator=gen(seed))
    meta = batch.meta
    prior = GMM.from_logits(
        meta["prior_logits"].double(), meta["prior_means"].double(), meta["prior_scale_tril"].double()
    )
    return family, prior, batch


def test_gp_predictive_exact_posterior_matches_scikit_learn_for_one_gp():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    likelihood = GPPredictive(lengthscale_low=0.3, lengthscale_high=0.3, num_lengthscales=1, noise_std=0.2)
    x_train, y_train, x_query = torch.rand(7, generator=gen(4)), torch.randn(7, generator=gen(5)), 0.42
    prior = GMM(torch.ones(1, dtype=torch.float64), torch.tensor([[0.5]]).double(), torch.tensor([[[1.5**2]]]).double())
    x = likelihood.observations(x_train, y_train, [x_query])
    single = GMM.from_logits(prior.mixture_distribution.logits[None], prior.means[None], prior.scale_tril[None])
    posterior = likelihood.exact_posterior(single, x)
    kernel = ConstantKernel(1.5**2, "fixed") * RBF(0.3, "fixed")
    gp = GaussianProcessRegressor(kernel, alpha=0.2**2, optimizer=None).fit(x_train[:, None].numpy(), y_train - 0.5)
    mean, sd = gp.predict([[x_query]], return_std=True)
    assert float(posterior.means[0, 0, 0]) == pytest.approx(float(mean[0]) + 0.5, abs=1e-6)
    assert float(posterior.scale_tril[0, 0, 0, 0]) == pytest.approx(float(sd[0]), abs=1e-5)


def test_gp_predictive_exact_posterior_is_calibrated_on_its_own_simulations():
    from scipy import stats

    family, prior, batch = _gp_batch(3000, 8, seed=6)
    for n in (1, 8):  # probability integral transform of θ = f(x*) under the exact predictive is uniform
        exact = family.likelihood.exact_posterior(prior, batch.x[:, :n].double())
        z = (batch.theta.double() - exact.means[..., 0]) / exact.scale_tril[..., 0, 0]
        pit = (exact.weights * torch.special.ndtr(z)).sum(-1)
        assert stats.kstest(pit.numpy(), "uniform").pvalue > 1e-3
        prior_nll = -prior.log_prob(batch.theta.double()).mean()
        assert -exact.log_prob(batch.theta.double()).mean() < prior_nll - 0.3  # the data are informative
    # shifting every GP mean and the observations by c shifts the predictive by c (what ``center`` relies on)
    shifted = GMM.from_logits(prior.mixture_distribution.logits, prior.means + 4.0, prior.scale_tril)
    moved_x = family.likelihood.center(batch.x.double(), torch.full((3000, 1), -4.0, dtype=torch.float64))
    moved = family.likelihood.exact_posterior(shifted, moved_x)
    assert torch.allclose(moved.mean, exact.mean + 4.0, atol=1e-8)


def test_gp_predictive_observations_and_one_prior_for_many_query_points():
    likelihood = GPPredictive()
    x = likelihood.observations([0.1, 0.5, 0.9], [1.0, 2.0, 3.0], [0.0, 0.5])
    assert x.shape == (2, 3, 2) and torch.allclose(x[1, :, 0], torch.tensor([-0.4, 0.0, 0.4]).double())
    assert torch.equal(x[0, :, 1], x[1, :, 1])
    with pytest.raises(PriorfitValidationError, match="one value per point"):
        likelihood.observations([0.1, 0.5], [1.0], [0.0])
    with pytest.raises(PriorfitValidationError, match="x_query contains NaN"):
        likelihood.observations([0.1], [1.0], [float("nan")])
    network = DistributionTransformer(
        theta_dim=1, x_dim=2, posterior_head="message", d_model=16, n_heads=2, n_layers=1, d_ff=32
    )
    network.bind_likelihood(likelihood)
    prior = GMM(torch.tensor([0.4, 0.6]), torch.tensor([[0.0], [1.0]]), torch.tensor([[[1.0]], [[0.25]]]))
    predictive = network.update(prior, x)  # one prior, one posterior per query point
    assert predictive.means.shape == (2, 2, 1)
    one = network.update(prior, x[1])
    assert one.means.shape == (2, 1) and torch.allclose(one.means, predictive.means[1], atol=1e-6)
    with pytest.raises(InvalidHyperparameterError, match="dim=1"):
        RandomGMMPrior(dim=2, likelihood="gp_predictive")


# -------------------------------------------------------------------------------------------- network
def make_small_network(posterior_head: str = "relative"):
    prior = RandomGMMPrior(dim=2, max_components=3)
    network = DistributionTransformer(
        theta_dim=2,
        x_dim=2,
        max_components=3,
        posterior_head=posterior_head,
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_ff=64,
    )
    return prior, network.bind_likelihood(prior.likelihood)


@pytest.fixture(params=["relative", "message"])
def small_network(request):
    return make_small_network(request.param)


def test_untrained_network_returns_the_prior():
    prior, network = make_small_network("relative")
    batch = prior.sample(16, 5, generator=gen())
    meta = batch.meta
    posterior = network(meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], batch.x)
    prior_gmm = GMM.from_logits(meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"])
    assert torch.allclose(posterior.log_prob(batch.theta), prior_gmm.log_prob(batch.theta), atol=1e-3)


def test_network_is_permutation_invariant_and_shift_equivariant(small_network):
    prior, network = small_network
    torch.manual_seed(0)
    for parameter in network.parameters():  # random weights everywhere, including the zero-initialised head
        parameter.data.normal_(0, 0.1)
    batch = prior.sample(4, 6, generator=gen(3))
    logits, means, tril = batch.meta["prior_logits"], batch.meta["prior_means"], batch.meta["prior_scale_tril"]
    theta = batch.theta
    base = network(logits, means, tril, batch.x).log_prob(theta)
    data_order, component_order = torch.randperm(6), torch.tensor([2, 0, 1])
    shuffled = network(
        logits[:, component_order], means[:, component_order], tril[:, component_order], batch.x[:, data_order]
    ).log_prob(theta)
    assert torch.allclose(base, shuffled, atol=1e-4)
    shift = torch.tensor([25.0, -40.0])  # far outside the training means: x = θ + ε moves with θ
    moved = network(logits, means + shift, tril, batch.x + shift).log_prob(theta + shift)
    assert torch.allclose(base, moved, atol=1e-3)


def test_update_and_filter_and_their_errors(small_network):
    _, network = small_network
    prior = two_component_prior()
    posterior = network.update(prior, torch.randn(5, 2))
    assert isinstance(posterior, GMM) and posterior.means.shape == (2, 2)
    steps = network.filter(prior, [torch.randn(2, 2) for _ in range(3)])
    assert len(steps) == 3 and all(isinstance(step, GMM) for step in steps)
    too_many = GMM(torch.full((4,), 0.25), torch.zeros(4, 2), torch.eye(2).expand(4, 2, 2))
    with pytest.raises(PriorfitValidationError, match="at most 3"):
        network.update(too_many, torch.randn(5, 2))
    wrong_dim = GMM(torch.ones(1), torch.zeros(1, 3), torch.eye(3).expand(1, 3, 3))
    with pytest.raises(PriorfitValidationError, match="dimension 3"):
        network.update(wrong_dim, torch.randn(5, 3))
    with pytest.raises(PriorfitValidationError, match="NaN"):
        network.update(prior, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(PriorfitValidationError, match="shape"):
        network.update(prior, torch.randn(5, 3))


def test_message_head_given_the_exact_likelihood_message_is_the_exact_posterior():
    # linear-Gaussian x = θ + N(0, I): the likelihood of n observations is N(θ; x̄, I / n) for every component
    torch.manual_seed(0)
    batch, components, dim, n = 4, 3, 2, 5
    head = MessageHead(8, dim).double()
    with torch.no_grad():  # token features 0..1 carry x̄; the factor B = √n I (its diagonal through softplus)
        head.proj.weight.zero_()
        head.proj.weight[1, 0] = head.proj.weight[2, 1] = 1.0
        head.proj.bias.zero_()
        head.proj.bias[3] = head.proj.bias[5] = math.log(math.expm1(math.sqrt(n)))
    means = 3 * torch.randn(batch, components, dim, dtype=torch.float64)
    factors = torch.randn(batch, components, dim, dim, dtype=torch.float64)
    tril = torch.linalg.cholesky(factors @ factors.transpose(-1, -2) + 0.1 * torch.eye(dim, dtype=torch.float64))
    logits = torch.randn(batch, components, dtype=torch.float64)
    x = torch.randn(batch, n, dim, dtype=torch.float64)
    tokens = torch.zeros(batch, components, 8, dtype=torch.float64)
    tokens[..., :dim] = x.mean(1, keepdim=True)
    posterior = head(tokens, logits, means, tril)
    exact = LinearGaussian(dim).exact_posterior(GMM.from_logits(logits, means, tril), x)
    theta = 3 * torch.randn(batch, dim, dtype=torch.float64)
    assert torch.allclose(posterior.log_prob(theta), exact.log_prob(theta), atol=1e-10)


def test_unknown_posterior_head_is_a_named_error():
    with pytest.raises(PriorfitValidationError, match="posterior_head"):
        DistributionTransformer(theta_dim=2, x_dim=2, posterior_head="kalman")


def test_learned_output_components_give_a_mixture_of_that_size():
    prior = RandomGMMPrior(dim=2, max_components=2)
    network = DistributionTransformer(
        theta_dim=2, x_dim=2, max_components=2, output_components=5, d_model=32, n_heads=2, n_layers=1, d_ff=64
    ).bind_likelihood(prior.likelihood)
    batch = prior.sample(3, 4, generator=gen())
    meta = batch.meta
    posterior = network(meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], batch.x)
    assert posterior.component_distribution.loc.shape == (3, 5, 2)
    assert torch.isfinite(posterior.log_prob(batch.theta)).all()


def test_dt_task_learns_and_round_trips_through_a_checkpoint(tmp_path):
    prior_config = {
        "_target_": "priorfit.priors.RandomGMMPrior",
        "dim": 2,
        "max_components": 2,
        "scale_low": 0.3,
        "scale_high": 2.0,
    }
    network_config = {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_ff": 64}
    task = DTTask(prior=prior_config, network=network_config, lr=3e-3, warmup_steps=10)
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    held_out = task.prior.sample(256, 10, generator=gen(99))

    def gap() -> float:
        with torch.no_grad():
            return float(
                -task(held_out).log_prob(held_out.theta).mean()
                + task.exact_posterior(held_out).log_prob(held_out.theta.double()).mean()
            )

    before = gap()
    for step in range(150):
        batch = task.prior.sample(64, int(torch.randint(1, 11, (1,))), generator=gen(step))
        loss = -task(batch).log_prob(batch.theta).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = gap()
    assert after < 0.5 * before
    path = export_checkpoint(task, tmp_path / "dt.safetensors")
    loaded = load_task(path)
    assert isinstance(loaded, DTTask)
    network = priorfit.load(str(path))
    prior = GMM(torch.tensor([0.4, 0.6]), torch.tensor([[-1.0, 0.0], [1.0, 1.0]]), torch.eye(2).expand(2, 2, 2))
    x = torch.randn(4, 2)
    assert torch.allclose(network.update(prior, x).means, task.network.update(prior, x).means, atol=1e-5)
