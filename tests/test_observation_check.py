"""``AmortizedPosterior.check``: a conformal test of "this observed set looks like the training simulations"."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import priorfit
from priorfit import AmortizedPosterior
from priorfit.diagnostics.typicality import conformal_p_value, knn_log_distance
from priorfit.errors import OutOfDomainWarning, PriorfitValidationError
from priorfit.priors.simulators import GaussianLinear

PROBLEM = GaussianLinear(dim=2)
SIGMA = math.sqrt(PROBLEM.noise_var)


@pytest.fixture(scope="module")
def posterior():
    post = AmortizedPosterior("gmm", num_iid=(1, 5), max_epochs=3, progress_bar=False, network={"components": 2})
    return post.fit(PROBLEM.prior, PROBLEM.simulate, num_simulations=3000)


def _sets(count: int, n: int, *, offset: float = 0.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    theta = PROBLEM.prior.sample((count,))
    return theta.unsqueeze(1) + SIGMA * (torch.randn(count, n, 2, generator=generator) + offset)


def test_conformal_p_values_rank_against_the_reference():
    reference = torch.arange(99, dtype=torch.float64)
    assert conformal_p_value(1000.0, reference) == pytest.approx(1 / 100)
    assert conformal_p_value(-1.0, reference) == 1.0
    pool = torch.tensor([[0.0], [1.0], [3.0]])
    second_nearest = knn_log_distance(torch.tensor([[0.0]]), pool, 2)
    torch.testing.assert_close(second_nearest, torch.tensor([0.0], dtype=torch.float64))  # log 1


def test_the_reference_sets_are_the_held_out_split_and_survive_save_and_load(posterior, tmp_path):
    task = posterior.task_
    assert task.check_pool.shape == task.check_reference.shape == (150, 5, 2)  # 10 % of 3,000, halved
    x = _sets(1, 4)[0]
    loaded = priorfit.load(posterior.save(tmp_path / "post.safetensors"))
    torch.testing.assert_close(loaded.task_.check_reference, task.check_reference, equal_nan=True)  # NaN: padding
    assert loaded.check(x).p_value == posterior.check(x).p_value


def test_false_alarms_stay_near_alpha_and_a_clear_shift_is_flagged(posterior):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        calm = [posterior.check(x).misspecified(0.1) for x in _sets(200, 4, seed=1)]
        shifted = [posterior.check(x) for x in _sets(20, 4, offset=6.0, seed=2)]
    assert sum(calm) / len(calm) <= 0.15  # at most α = 0.1 in expectation (conformal), 200 draws
    assert all(result.misspecified(0.05) for result in shifted)
    assert set(shifted[0].p_values) == {"observations", "moments", "summary"}
    observations = (~torch.isnan(posterior.task_.check_reference).any(-1)).sum(1)
    assert shifted[0].to_dict()["num_reference"] == int((observations >= 4).sum())  # the reference sets with n ≥ 4


def test_one_observation_and_the_score_estimator_are_checked_too():
    post = AmortizedPosterior("score", max_epochs=1, progress_bar=False, sampling_steps=5)
    post.fit(PROBLEM.prior, PROBLEM.simulate, num_simulations=500)
    result = post.check(torch.zeros(2))
    assert set(result.p_values) == {"observations", "moments"}  # no set encoder: no summary statistic
    assert 0 < result.p_value <= 1


def test_more_observations_than_any_reference_set_is_a_named_error(posterior):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        with pytest.raises(PriorfitValidationError, match="at least 9 observations"):
            posterior.check(_sets(1, 9)[0])


def test_a_posterior_saved_without_reference_sets_says_to_retrain(posterior, tmp_path):
    path = posterior.save(tmp_path / "post.safetensors")
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    metadata = __import__("safetensors").safe_open(path, "pt").metadata()
    del state["check_pool"], state["check_reference"]  # what priorfit 0.1.0 wrote
    save_file(state, path, metadata=metadata)
    with pytest.raises(PriorfitValidationError, match="retrain"):
        priorfit.load(path).check(torch.zeros(2))


def test_the_cached_reference_statistics_follow_the_posterior_to_another_device(posterior):
    x = _sets(1, 3)[0]
    first = posterior.check(x)
    cached = posterior.task_.observation_check
    assert posterior.check(x).p_value == first.p_value and posterior.task_.observation_check is cached  # reused
    posterior.task_.check_pool = posterior.task_.check_pool.clone()  # what .to(device) does to the buffers
    assert posterior.check(x).p_value == first.p_value and posterior.task_.observation_check is not cached
