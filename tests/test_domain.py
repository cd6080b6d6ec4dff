"""Amortized posteriors record their training domain and say when a query leaves it (issue 22's first case)."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

import priorfit
from priorfit import AmortizedPosterior
from priorfit.errors import OutOfDomainError, OutOfDomainWarning
from priorfit.priors.simulators import GaussianLinear


@pytest.fixture(scope="module")
def single_observation_posterior():
    """A flow trained on one observation per θ (the case that answered for n = 100, 7x too wide, without a word)."""
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior("gmm", num_iid=1, max_epochs=3, logger=None, progress_bar=False)
    return problem, post.fit(problem.prior, problem.simulate, num_simulations=1000)


def test_more_observations_than_trained_on_warn(single_observation_posterior):
    problem, post = single_observation_posterior
    x_obs = problem.simulate(problem.prior.sample((1,)).repeat(100, 1))
    with pytest.warns(OutOfDomainWarning, match=r"num_observations = 100 is outside the training domain \[1, 1\]"):
        post.sample(x_obs, 10)
    with pytest.warns(OutOfDomainWarning, match="num_iid=\\(1, n\\)"):
        post.log_prob(torch.zeros(1, 2), x_obs)


def test_an_observation_far_outside_the_simulations_warns(single_observation_posterior):
    _, post = single_observation_posterior
    with pytest.warns(OutOfDomainWarning, match=r"x\[0\] = 1e\+30 is outside"):
        post.sample(torch.tensor([1e30, 0.0]), 10, reject_outside_prior=False)


def test_a_query_inside_the_domain_is_silent(single_observation_posterior):
    problem, post = single_observation_posterior
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        post.sample(problem.simulate(problem.prior.sample((1,))), 10)


def test_the_domain_survives_save_load_and_pickle(single_observation_posterior, tmp_path):
    problem, post = single_observation_posterior
    x_obs = torch.zeros(5, 2)
    for restored in (
        priorfit.load(post.save(tmp_path / "post.safetensors")),
        pickle.loads(pickle.dumps(post)),
    ):
        assert restored.task_.domain.ranges["num_observations"] == [1, 1]
        assert restored.task_.domain.ranges["num_simulations"] == [1000, 1000]
        with pytest.warns(OutOfDomainWarning, match="num_observations = 5"):
            restored.sample(x_obs, 10)


def test_the_strict_switch_raises(single_observation_posterior, monkeypatch):
    _, post = single_observation_posterior
    monkeypatch.setenv("PRIORFIT_STRICT_DOMAIN", "1")
    with pytest.raises(OutOfDomainError, match="num_observations = 3"):
        post.sample(torch.zeros(3, 2), 10)


def test_a_range_of_set_sizes_is_recorded():
    problem = GaussianLinear(dim=2)
    post = AmortizedPosterior("gmm", num_iid=(2, 6), max_epochs=1, logger=None, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=500)
    assert post.task_.domain.ranges["num_observations"] == [2, 6]
    with pytest.warns(OutOfDomainWarning, match=r"num_observations = 1 is outside the training domain \[2, 6\]"):
        post.sample(torch.zeros(1, 2), 10)


def test_a_cli_trained_posterior_records_its_domain_in_both_checkpoint_files(tmp_path):
    from priorfit.checkpoint import load_task
    from priorfit.train import train
    from tests.helpers import TINY_POSTERIOR, compose_config

    overrides = ["experiment=sbi_two_moons", "trainer.max_steps=4", "callbacks.model_checkpoint.every_n_train_steps=2"]
    _, objects = train(compose_config(tmp_path, [*overrides, *TINY_POSTERIOR]))
    for path in (objects["model_file"], objects["checkpoint"]):
        ranges = load_task(path).domain.ranges
        assert ranges["num_observations"] == [1, 1] and ranges["num_simulations"] == [100, 100], path


def test_the_distribution_transformer_returns_the_prior_for_no_observations():
    from priorfit import GMM

    dt = priorfit.load("dt-linear-gaussian-2d")
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    prior = GMM(torch.tensor([0.5, 0.5]), means, torch.eye(2).expand(2, 2, 2))
    assert dt.update(prior, torch.zeros(0, 2)) is prior  # was means [[-1.42, 0.07], [1.48, 0.65]]
    batch = dt.update(prior, torch.zeros(3, 0, 2))  # one prior, three empty data sets
    assert torch.equal(batch.component_distribution.loc, means.expand(3, 2, 2))
    assert torch.allclose(batch.mixture_distribution.probs, torch.full((3, 2), 0.5))


def test_simulations_lost_to_nan_are_counted_and_warned_about():
    from priorfit.errors import SimulatorWarning

    theta = torch.randn(400, 2)
    x = theta + 0.1 * torch.randn(400, 2)
    x[:40, 1] = float("nan")  # one NaN coordinate: a broken simulation, not an empty set
    post = AmortizedPosterior("gmm", max_epochs=1, logger=None, progress_bar=False)
    with pytest.warns(SimulatorWarning, match=r"40 of 400 simulations \(10.0%\) were dropped"):
        post.fit_simulations(theta, x)
    assert post.num_dropped_ == 40


def test_a_simulator_that_fails_on_half_the_prior_warns_that_the_prior_is_truncated():
    from priorfit.errors import SimulatorWarning

    problem = GaussianLinear(dim=2)

    def half_broken(theta):
        x = problem.simulate(theta)
        return torch.where(theta[:, :1] > 0, torch.full_like(x, float("nan")), x)

    post = AmortizedPosterior("gmm", max_epochs=1, logger=None, progress_bar=False)
    with pytest.warns(SimulatorWarning, match="truncated"):
        post.fit(problem.prior, half_broken, num_simulations=200)


def test_sample_batch_gives_samples_per_set_and_checks_the_domain(single_observation_posterior):
    problem, post = single_observation_posterior
    theta = problem.prior.sample((7,))
    x = problem.simulate(theta).unsqueeze(1)
    assert post.sample_batch(x, 20).shape == (20, 7, 2)
    with pytest.warns(OutOfDomainWarning, match="num_observations = 3"):
        post.sample_batch(x.repeat(1, 3, 1), 5)


def test_a_falling_learning_curve_is_out_of_the_lc_prior_domain():
    from priorfit import LearningCurveExtrapolator

    loss_like = [0.9, 0.7, 0.55, 0.45, 0.4, 0.36, 0.33, 0.31]
    with pytest.warns(OutOfDomainWarning, match=r"curve_change = -0\.\d+ .*performance curves that rise"):
        LearningCurveExtrapolator().fit(range(1, 9), loss_like)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        LearningCurveExtrapolator().fit(range(1, 9), [0.41, 0.52, 0.58, 0.62, 0.64, 0.66, 0.67, 0.68])
        LearningCurveExtrapolator().fit([1, 2, 3], [0.5, 0.49, 0.5])  # noise, not a trend
        LearningCurveExtrapolator().fit([4], [0.5])  # one epoch: no trend at all


def test_the_distribution_transformer_warns_outside_its_prior_scales_and_observation_counts():
    from priorfit import GMM

    dt = priorfit.load("dt-linear-gaussian-2d")  # trained on component sds in [0.1, 3]
    x = torch.tensor([[0.5, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        dt.update(GMM(torch.ones(1), torch.zeros(1, 2), torch.eye(2).unsqueeze(0)), x)
    wide = GMM(torch.ones(1), torch.zeros(1, 2), 1e4 * torch.eye(2).unsqueeze(0))  # variance 1e4: sd 100
    with pytest.warns(OutOfDomainWarning, match=r"prior_sd = 100 is outside the training domain \[0.1, 3\]"):
        dt.update(wide, x)
    far = GMM(torch.ones(1), torch.tensor([[0.0, 50.0]]), torch.eye(2).unsqueeze(0))  # means were N(0, 3²)
    with pytest.warns(OutOfDomainWarning, match=r"prior_mean = 50 is outside the training domain \[-12, 12\]"):
        dt.update(far, x)
    assert dt.domain.ranges["num_observations"] == [1, 20]  # recorded in the re-exported bundled checkpoint
    with pytest.warns(OutOfDomainWarning, match=r"num_observations = 200 .*dt.filter"):
        dt.update(GMM(torch.ones(1), torch.zeros(1, 2), torch.eye(2).unsqueeze(0)), torch.zeros(200, 2))


def test_a_pfn_says_when_context_labels_leave_the_range_its_buckets_cover():
    model = priorfit.load("pfn-gp-1d")
    data = model.prior.sample(1, 30, generator=torch.Generator().manual_seed(0))
    x_context, y_context, x_query = data.x[:, :20], data.y[:, :20], data.x[:, 20:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        model.predictive(x_context, y_context, x_query)
    borders = r"\[-4\.\d+, 4\.\d+\]"  # the y range of the prior draws the buckets were placed on
    with pytest.warns(OutOfDomainWarning, match=r"y_context = 9\d\.\d+ is outside the training domain " + borders):
        model.predictive(x_context, y_context + 100.0, x_query)


def test_a_pfn_trained_from_now_on_records_its_context_sizes(tmp_path):
    from tests.helpers import TINY_NETWORK, train_briefly

    run = train_briefly(tmp_path, ["trainer.max_steps=2", "data.min_context=2", "data.max_context=10", *TINY_NETWORK])
    model = priorfit.load(run["model_file"])
    assert model.hparams["domain"] == {"num_context": [2, 10]}
    data = model.prior.sample(1, 40, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        model.predictive(data.x[:, :8], data.y[:, :8], data.x[:, 8:])
    with pytest.warns(OutOfDomainWarning, match=r"num_context = 30 is outside the training domain \[2, 10\]"):
        model.predictive(data.x[:, :30], data.y[:, :30], data.x[:, 30:])


def test_a_tabular_query_beyond_the_training_rows_warns_and_one_inside_is_silent(monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(60, 3))
    reg = priorfit.PFNRegressor(n_estimators=1).fit(X, X @ [1.0, 2.0, -1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        reg.predict(rng.uniform(0.05, 0.95, size=(5, 3)))
    far = np.array([[0.5, 1.6, 0.5]])
    outside = r"feature\[1\] = 1\.6 is outside the training domain \[-0\.\d+, 1\.\d+\]"
    with pytest.warns(OutOfDomainWarning, match=outside):
        assert np.isfinite(reg.predict(far)).all()
    monkeypatch.setenv("PRIORFIT_STRICT_DOMAIN", "1")
    with pytest.raises(OutOfDomainError, match="prediction extrapolates"):
        reg.predict(far)


def test_a_table_unlike_the_priors_tables_warns_at_fit():
    """Feature and target ranges against what the prior's tables look like (issue 22's check of PFN tables)."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    X[:6, 1] = 1e4  # 3 % of a column beyond 5 sd: the prior's tables have < 0.01 % there
    with pytest.warns(OutOfDomainWarning, match=r"feature 1: 3\.0% of its values lie beyond 5 standard deviations"):
        priorfit.PFNClassifier(n_estimators=1).fit(X, X[:, 0] > 0)
    y = X[:, 0].copy()
    y[0] = -1000.0  # standardised about -14, below the lowest bucket border the prior's targets gave (-5.6)
    with pytest.warns(OutOfDomainWarning, match=r"standardised y = -1\d\.\d+ is outside the training domain"):
        priorfit.PFNRegressor(n_estimators=1).fit(X[:, [0, 2]], y)
