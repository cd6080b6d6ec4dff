"""``priorfit.load``: one verb, the object a user queries for each kind of checkpoint; the old loaders warn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.exceptions
import torch

import priorfit
from priorfit import AmortizedPosterior, DistributionTransformer, LearningCurveExtrapolator
from priorfit.errors import NotFittedError, PriorfitValidationError
from priorfit.priors.simulators import GaussianLinear


@pytest.mark.parametrize(
    "name, kind",
    [
        ("pfn-gp-1d", "PFNTask"),
        ("tabular-clf-small", "PFNClassifier"),
        ("tabular-reg-small", "PFNRegressor"),
        ("lc-pfn-small", "LearningCurveExtrapolator"),
        ("dt-linear-gaussian-2d", "DistributionTransformer"),
    ],
)
def test_every_bundled_checkpoint_loads_as_the_object_users_query(name, kind):
    loaded = priorfit.load(name)
    assert type(loaded).__name__ == kind
    if kind.startswith("PFN") and kind != "PFNTask":
        assert loaded.checkpoint == name  # the estimator keeps the name, so its repr and clone say it


def test_loaded_estimators_answer_like_constructed_ones():
    X = np.random.default_rng(0).normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    loaded = priorfit.load("tabular-clf-small").set_params(n_estimators=2).fit(X, y)
    built = priorfit.PFNClassifier(n_estimators=2).fit(X, y)
    np.testing.assert_allclose(loaded.predict_proba(X), built.predict_proba(X), rtol=1e-6)
    lc = priorfit.load("lc-pfn-small").fit([1, 2, 3], [0.3, 0.4, 0.5])
    assert lc.predict_mean([50]).shape == (1,)


@pytest.fixture(scope="module")
def trained_gmm():
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior("gmm", max_epochs=2, progress_bar=False, seed=0)
    return problem, post.fit(problem.prior, problem.simulate, num_simulations=400)


def test_a_posterior_round_trips_through_load(trained_gmm, tmp_path):
    problem, post = trained_gmm
    path = post.save(tmp_path / "post.safetensors")
    loaded = priorfit.load(path, prior=problem.prior)
    assert isinstance(loaded, AmortizedPosterior) and loaded.prior_ is problem.prior
    theta, x = torch.zeros(4, 2), torch.ones(1, 2)
    torch.testing.assert_close(loaded.log_prob(theta, x), post.log_prob(theta, x))


def test_posterior_is_a_torch_distribution(trained_gmm):
    problem, post = trained_gmm
    x = torch.ones(1, 2)
    distribution = post.posterior(x)
    assert isinstance(distribution, torch.distributions.Distribution)
    assert distribution.batch_shape == () and distribution.event_shape == (2,)
    assert distribution.sample().shape == (2,) and distribution.sample((5, 7)).shape == (5, 7, 2)
    theta = torch.randn(6, 2)
    torch.testing.assert_close(distribution.log_prob(theta), post.log_prob(theta, x))
    assert distribution.log_prob(theta.view(2, 3, 2)).shape == (2, 3)
    assert 0 < distribution.acceptance_rate <= 1
    # samples stay in the prior's support
    assert problem.prior.support.check(distribution.sample((200,))).all()
    with pytest.raises(PriorfitValidationError, match=r"\(\.\.\., 2\)"):
        distribution.log_prob(torch.zeros(4, 3))


def test_posterior_without_density_refuses_log_prob():
    post = AmortizedPosterior("score", max_epochs=1, progress_bar=False, sampling_steps=5)
    theta = torch.randn(200, 1)
    post.fit_simulations(theta, theta + 0.1 * torch.randn(200, 1))
    distribution = post.posterior(torch.zeros(2, 1))
    assert distribution.sample((4,)).shape == (4, 1)
    with pytest.raises(PriorfitValidationError, match="no tractable density"):
        distribution.log_prob(torch.zeros(4, 1))


def test_prior_is_only_for_posteriors():
    with pytest.raises(PriorfitValidationError, match="prior= is for posterior"):
        priorfit.load("pfn-gp-1d", prior=torch.distributions.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    "model, call",
    [
        (AmortizedPosterior(), lambda m: m.sample(torch.zeros(2))),
        (AmortizedPosterior(), lambda m: m.posterior(torch.zeros(2))),
        (LearningCurveExtrapolator(), lambda m: m.predict_mean([10])),
        (priorfit.PFNClassifier(), lambda m: m.predict(np.zeros((1, 2)))),
        (priorfit.PFNRegressor(), lambda m: m.predict(np.zeros((1, 2)))),
    ],
)
def test_every_unfitted_model_raises_sklearns_not_fitted_error(model, call):
    with pytest.raises(sklearn.exceptions.NotFittedError):
        call(model)


def test_not_fitted_error_is_also_priorfits():
    assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError)
    assert issubclass(NotFittedError, PriorfitValidationError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize(
    "old_call, new_type",
    [
        (lambda: priorfit.load_checkpoint("pfn-gp-1d"), "PFNTask"),
        (lambda: priorfit.load_pfn("pfn-gp-1d"), "PFNModel"),
        (lambda: DistributionTransformer.from_pretrained("dt-linear-gaussian-2d"), "DistributionTransformer"),
    ],
)
def test_old_loaders_still_work_with_a_deprecation_warning(old_call, new_type):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert type(old_call()).__name__ == new_type
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("priorfit.load" in message for message in messages), messages


def test_amortized_posterior_load_still_works_with_a_deprecation_warning(trained_gmm, tmp_path):
    _, post = trained_gmm
    path = post.save(tmp_path / "post.safetensors")
    with pytest.warns(DeprecationWarning, match="priorfit.load"):
        assert isinstance(AmortizedPosterior.load(path), AmortizedPosterior)


@pytest.mark.gpu
def test_posterior_moves_to_the_gpu(trained_gmm):
    _, post = trained_gmm
    distribution = post.posterior(torch.zeros(1, 2), device="cuda")
    assert distribution.sample((3,)).device.type == "cuda"
    post.task_.to("cpu")
