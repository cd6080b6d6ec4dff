import math

import numpy as np
import pytest
import torch

from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.priors import Batch, BNNPrior, ExactRelationPrior, GPPrior, LogUniform, Prior, SCMPrior, kernel_matrix

PRIORS = {
    "gp_rbf": lambda: GPPrior(kernel="rbf", num_features=2),
    "gp_matern_hyper": lambda: GPPrior(
        kernel="matern52",
        num_features=3,
        lengthscale={"dist": "loguniform", "low": 0.1, "high": 1.0},
        outputscale={"dist": "lognormal", "loc": 0.0, "scale": 0.3},
        noise=LogUniform(1e-3, 0.1),
        input_distribution="gaussian",
    ),
    "bnn": lambda: BNNPrior(num_features=3),
    "scm_classification": lambda: SCMPrior(num_features=5, task="classification"),
    "scm_regression": lambda: SCMPrior(num_features=4, task="regression"),
    "exact_relations": lambda: ExactRelationPrior(num_features=4),
}


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_shapes_finite_and_protocol(name):
    prior = PRIORS[name]()
    assert isinstance(prior, Prior)
    batch = prior.sample(16, 25, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch)
    assert batch.x.shape == (16, 25, prior.num_features)
    assert batch.y.shape == (16, 25, 1)
    assert batch.x.dtype == batch.y.dtype == torch.float32
    assert torch.isfinite(batch.x).all() and torch.isfinite(batch.y).all()


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_deterministic_given_generator(name):
    prior = PRIORS[name]()
    first = prior.sample(8, 10, generator=torch.Generator().manual_seed(3))
    again = prior.sample(8, 10, generator=torch.Generator().manual_seed(3))
    other = prior.sample(8, 10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert not torch.equal(first.y, other.y)


def test_kernel_matrix_matches_formulas():
    x1 = torch.tensor([[[0.0, 0.0], [0.3, 0.4]]], dtype=torch.float64)
    x2 = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    ls, scale = torch.tensor([0.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    dist = np.array([[0.0, 1.0], [0.5, math.sqrt(0.49 + 0.16)]])
    rbf = 2.0 * np.exp(-0.5 * (dist / 0.5) ** 2)
    r = math.sqrt(5) * dist / 0.5
    matern = 2.0 * (1 + r + r**2 / 3) * np.exp(-r)
    np.testing.assert_allclose(kernel_matrix(x1, x2, "rbf", ls, scale)[0].numpy(), rbf, rtol=1e-10)
    np.testing.assert_allclose(kernel_matrix(x1, x2, "matern52", ls, scale)[0].numpy(), matern, rtol=1e-10)


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_gp_samples_have_the_kernel_covariance(kernel):
    """Whitening each dataset by its own kernel matrix must give iid standard normals."""
    prior = GPPrior(kernel=kernel, num_features=2, lengthscale=0.3, outputscale=1.5, noise=0.05)
    batch = prior.sample(4000, 6, generator=torch.Generator().manual_seed(1))
    x = batch.x.double()
    n = x.shape[0]
    cov = kernel_matrix(
        x, x, kernel, torch.full((n,), 0.3, dtype=torch.float64), torch.full((n,), 1.5, dtype=torch.float64)
    )
    cov = cov + 0.05 * torch.eye(6, dtype=torch.float64)
    z = torch.linalg.solve_triangular(torch.linalg.cholesky(cov), batch.y.double(), upper=False).squeeze(-1)
    empirical = torch.cov(z.T)
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=0.06)
    assert torch.allclose(empirical, torch.eye(6, dtype=torch.float64), atol=0.08)


def test_gp_empirical_covariance_on_a_fixed_grid():
    """With all datasets sharing one input grid, E[y yᵀ] is the kernel matrix plus noise."""
    prior = GPPrior(
        kernel="rbf",
        num_features=1,
        lengthscale=0.2,
        outputscale=1.0,
        noise=0.05,
        input_distribution="uniform",
        input_low=0.0,
        input_high=1e-9,
    )
    # tiny input range: every point sits at x≈0, so cov = outputscale + noise on the diagonal, outputscale off it
    y = prior.sample(20000, 3, generator=torch.Generator().manual_seed(2)).y.squeeze(-1).double()
    expected = torch.full((3, 3), 1.0, dtype=torch.float64) + 0.05 * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(torch.cov(y.T), expected, atol=0.05)


def test_hyperpriors_draw_per_dataset_within_range():
    prior = PRIORS["gp_matern_hyper"]()
    batch = prior.sample(256, 5, generator=torch.Generator().manual_seed(0))
    ls = batch.meta["lengthscale"]
    assert ls.shape == (256,) and ls.min() >= 0.1 - 1e-6 and ls.max() <= 1.0 + 1e-6
    assert ls.std() > 0.1
    assert not prior.has_exact_predictive
    with pytest.raises(PriorfitValidationError, match="fixed hyperparameters"):
        prior.predictive_mean_var(batch.x[:, :3], batch.y[:, :3], batch.x[:, 3:])


def test_exact_predictive_matches_textbook_formula():
    prior = GPPrior(kernel="rbf", num_features=1, lengthscale=0.2, outputscale=1.0, noise=0.05)
    batch = prior.sample(3, 12, generator=torch.Generator().manual_seed(5))
    xc, yc, xq, yq = batch.x[:, :9], batch.y[:, :9], batch.x[:, 9:], batch.y[:, 9:]
    mean, var = prior.predictive_mean_var(xc, yc, xq)
    logp = prior.predictive_log_density(xc, yc, xq, yq)
    for b in range(3):
        a, q = xc[b, :, 0].double().numpy(), xq[b, :, 0].double().numpy()
        k = lambda u, v: np.exp(-0.5 * (u[:, None] - v[None, :]) ** 2 / 0.04)  # noqa: E731
        inv = np.linalg.inv(k(a, a) + 0.05 * np.eye(9))
        mu = k(q, a) @ inv @ yc[b, :, 0].double().numpy()
        v = 1.0 - np.einsum("ij,jk,ik->i", k(q, a), inv, k(q, a)) + 0.05
        np.testing.assert_allclose(mean[b].numpy(), mu, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(var[b].numpy(), v, rtol=1e-6)
        expected = -0.5 * (np.log(2 * np.pi * v) + (yq[b, :, 0].double().numpy() - mu) ** 2 / v)
        np.testing.assert_allclose(logp[b].numpy(), expected, rtol=1e-6)


def test_exact_predictive_with_empty_context_is_the_prior():
    prior = GPPrior(outputscale=2.0, noise=0.1)
    x = torch.rand(2, 4, 1)
    mean, var = prior.predictive_mean_var(x[:, :0], torch.zeros(2, 0), x)
    assert torch.all(mean == 0) and torch.allclose(var, torch.full_like(var, 2.1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lengthscale": -0.2}, "lengthscale must be positive"),
        ({"noise": 0.0}, "noise must be positive"),
        ({"num_features": 0}, "num_features"),
        ({"kernel": "cosine"}, "unknown kernel"),
        ({"lengthscale": {"dist": "gamma", "a": 1}}, "unknown hyperprior"),
        ({"lengthscale": {"dist": "loguniform", "low": -1, "high": 1}}, "0 < low"),
        ({"input_distribution": "beta"}, "input_distribution"),
    ],
)
def test_invalid_gp_hyperparameters_get_named_errors(kwargs, message):
    with pytest.raises(InvalidHyperparameterError, match=message):
        GPPrior(**kwargs)


def test_exact_predictive_rejects_wrong_shapes():
    prior = GPPrior(num_features=1)
    with pytest.raises(PriorfitValidationError, match="Dx=1"):
        prior.predictive_mean_var(torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 2, 2))
    with pytest.raises(PriorfitValidationError, match="does not match"):
        prior.predictive_mean_var(torch.rand(1, 3, 1), torch.rand(1, 4), torch.rand(1, 2, 1))


def test_bnn_prior_varies_architecture_and_standardises_signal():
    prior = BNNPrior(num_features=2, noise_std=0.01)
    batch = prior.sample(64, 200, generator=torch.Generator().manual_seed(0))
    assert set(batch.meta["depth"].tolist()) == {1, 2, 3}
    assert len(set(batch.meta["activation"].tolist())) == 4
    std = batch.y.squeeze(-1).std(1)
    assert torch.allclose(std, torch.ones_like(std), atol=0.05)


def test_bnn_invalid_settings():
    with pytest.raises(InvalidHyperparameterError, match="unknown activations"):
        BNNPrior(activations=("swish",))
    with pytest.raises(InvalidHyperparameterError, match="min_width"):
        BNNPrior(min_width=10, max_width=5)
    with pytest.raises(InvalidHyperparameterError, match="num_features"):
        BNNPrior(num_features=0)


def test_mixture_follows_weights_pads_inputs_and_is_deterministic():
    from priorfit.priors import PriorMixture

    mix = PriorMixture({"gp": GPPrior(num_features=1), "bnn": BNNPrior(num_features=3)}, {"gp": 3.0, "bnn": 1.0})
    batch = mix.sample(4000, 5, generator=torch.Generator().manual_seed(0))
    assert batch.x.shape == (4000, 5, 3) and batch.y.shape == (4000, 5, 1)
    from_gp = batch.meta["component"] == 0
    assert abs(from_gp.float().mean().item() - 0.75) < 0.03
    assert torch.all(batch.x[from_gp][..., 1:] == 0)  # GP datasets padded from Dx=1 to 3
    assert torch.all(batch.meta["num_features"][from_gp] == 1) and torch.all(batch.meta["num_features"][~from_gp] == 3)
    again = mix.sample(4000, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch.y, again.y)
    with pytest.raises(InvalidHyperparameterError, match="non-negative"):
        PriorMixture([GPPrior()], [-1.0])


def test_scm_prior_features_classes_and_categoricals():
    prior = SCMPrior(num_features=6, task="classification", max_classes=5, categorical_prob=0.5)
    batch = prior.sample(300, 80, generator=torch.Generator().manual_seed(0))
    num_features, num_classes = batch.meta["num_features"], batch.meta["num_classes"]
    assert num_features.min() >= 1 and num_features.max() == 6 and len(set(num_features.tolist())) > 3
    assert num_classes.min() == 2 and num_classes.max() == 5
    for i in range(300):
        assert torch.all(batch.x[i, :, num_features[i] :] == 0), "features beyond num_features are padding"
        labels = batch.y[i, :, 0]
        assert torch.all(labels == labels.round()) and labels.min() >= 0 and labels.max() < num_classes[i]
    categorical = batch.meta["categorical"]
    assert 0.3 < categorical.float().sum().item() / num_features.sum().item() < 0.7
    codes = batch.x.permute(0, 2, 1)[categorical]
    assert torch.all(codes == codes.round()) and codes.min() >= 0 and codes.max() <= 7
    numeric = batch.x.permute(0, 2, 1)[~categorical & (torch.arange(6) < num_features.unsqueeze(1))]
    assert torch.allclose(numeric.std(1, correction=0), torch.ones(len(numeric)), atol=1e-3)


def test_scm_class_assignments_by_threshold_and_by_argmax():
    """Thresholds cut one node into ordered bands; argmax makes one region per class node. Both relabelled."""
    generator = torch.Generator().manual_seed(1)
    for argmax in (0.0, 1.0):
        prior = SCMPrior(num_features=4, task="classification", max_classes=6, argmax_class_prob=argmax)
        batch = prior.sample(200, 300, generator=generator)
        labels, num_classes = batch.y[..., 0].long(), batch.meta["num_classes"]
        present = torch.tensor([len(labels[i].unique()) for i in range(200)])
        assert (labels.max(1).values < num_classes).all()
        assert (present == num_classes).float().mean() > 0.75  # most datasets show every class
    # with shuffling, label 0 is not systematically the smallest target band
    unshuffled = SCMPrior(
        num_features=4, task="classification", max_classes=3, argmax_class_prob=0.0, shuffle_classes=False
    ).sample(200, 300, generator=generator)
    shuffled = SCMPrior(num_features=4, task="classification", max_classes=3, argmax_class_prob=0.0)
    shuffled = shuffled.sample(200, 300, generator=generator)
    assert (unshuffled.y == 0).any() and not torch.equal(unshuffled.y, shuffled.y)
    with pytest.raises(InvalidHyperparameterError, match="argmax_class_prob"):
        SCMPrior(argmax_class_prob=1.5)


def test_scm_invalid_settings():
    with pytest.raises(InvalidHyperparameterError, match="task"):
        SCMPrior(task="ranking")
    with pytest.raises(InvalidHyperparameterError, match="nodes"):
        SCMPrior(num_features=100, max_depth=2, max_width=8)
