"""The learning-curve prior and the LearningCurveExtrapolator (bundled lc-pfn-small)."""

import math

import numpy as np
import pytest
import torch

from priorfit import LearningCurveExtrapolator
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.priors import LearningCurvePrior, LogNormal, LogUniform, Normal, Uniform
from priorfit.priors.learning_curves import FAMILIES, combined_curves, valid_curves


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_batch_shapes_inputs_and_rejection_rule():
    prior = LearningCurvePrior()
    batch = prior.sample(256, 100, generator=gen())
    assert batch.x.shape == (256, 100, 1) and batch.y.shape == (256, 100, 1)
    assert torch.allclose(batch.x[0, :, 0], torch.arange(1, 101) / 100)
    curve = batch.meta["curve"]
    assert valid_curves(curve).all()
    assert (curve >= 0).all() and (curve <= 1).all() and (curve[:, -1] > curve[:, 0]).all()
    weights = batch.meta["weights"]
    assert weights.shape == (256, 3) and torch.allclose(weights.sum(-1), torch.ones(256)) and (weights >= 0).all()
    # the noise is Gaussian with the recorded per-curve standard deviation
    standardised = (batch.y[..., 0] - curve) / batch.meta["noise_std"].unsqueeze(-1)
    assert abs(float(standardised.mean())) < 0.02 and abs(float(standardised.std()) - 1) < 0.02
    # log noise sd ~ N(-4, 1)
    log_sd = batch.meta["noise_std"].log()
    assert abs(float(log_sd.mean()) + 4) < 0.2 and abs(float(log_sd.std()) - 1) < 0.15


def test_shorter_batches_are_the_first_epochs_of_full_curves():
    prior = LearningCurvePrior(num_epochs=100)
    full = prior.sample(8, 100, generator=gen(3))
    short = prior.sample(8, 30, generator=gen(3))
    assert torch.equal(short.meta["curve"], full.meta["curve"][:, :30])
    assert torch.allclose(short.x, full.x[:, :30])


def test_seeded_and_different_seeds_differ():
    prior = LearningCurvePrior()
    a, b, c = (prior.sample(16, 100, generator=gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)


def test_combined_curves_match_the_closed_forms():
    t = torch.tensor([1.0, 2.0, 10.0])
    one = torch.ones(1)
    parameters = {
        "pow3": {"c": 0.8 * one, "a": 0.5 * one, "alpha": one},
        "ilog2": {"c": 0.9 * one, "a": 0.2 * one},
        "janoschek": {"a": 0.7 * one, "beta": 0.1 * one, "k": 0.3 * one, "delta": 1.5 * one},
    }
    weights = torch.tensor([[0.5, 0.3, 0.2]])
    got = combined_curves(t, ("pow3", "ilog2", "janoschek"), weights, parameters)[0]
    for index, epoch in enumerate([1.0, 2.0, 10.0]):
        pow3 = 0.8 - 0.5 * epoch**-1
        ilog2 = 0.9 - 0.2 / math.log(epoch + 1)
        janoschek = 0.7 - 0.6 * math.exp(-0.3 * epoch**1.5)
        assert got[index].item() == pytest.approx(0.5 * pow3 + 0.3 * ilog2 + 0.2 * janoschek, rel=1e-6)


def test_whole_catalogue_samples_valid_curves():
    prior = LearningCurvePrior(families=list(FAMILIES), num_epochs=50)
    batch = prior.sample(64, 50, generator=gen())
    assert valid_curves(batch.meta["curve"]).all() and batch.meta["weights"].shape == (64, len(FAMILIES))
    assert set(batch.meta["parameters"]) == set(FAMILIES)


def test_bad_configuration_is_named():
    with pytest.raises(InvalidHyperparameterError, match="unknown curve families"):
        LearningCurvePrior(families=["pow3", "sigmoid"])
    with pytest.raises(InvalidHyperparameterError, match="num_points"):
        LearningCurvePrior(num_epochs=20).sample(2, 21)


@pytest.mark.parametrize(
    "ours, reference",
    [
        (Uniform(-0.6, 0.6), torch.distributions.Uniform(-0.6, 0.6)),
        (Normal(0.8, 0.1), torch.distributions.Normal(0.8, 0.1)),
        (LogNormal(-2.0, 1.0), torch.distributions.LogNormal(-2.0, 1.0)),
        (
            LogUniform(1.0, math.e),
            torch.distributions.TransformedDistribution(
                torch.distributions.Uniform(0.0, 1.0), [torch.distributions.ExpTransform()]
            ),
        ),
    ],
)
def test_hyperprior_log_prob_matches_torch(ours, reference):
    values = ours.sample(1000, generator=gen())
    assert torch.allclose(ours.log_prob(values), reference.log_prob(values), atol=1e-5)
    outside = torch.tensor([-10.0]) if not isinstance(ours, Normal) else None
    if outside is not None:
        assert ours.log_prob(outside).item() == -math.inf


# ------------------------------------------------------------------------------ the estimator
@pytest.fixture(scope="module")
def held_out_curves():
    batch = LearningCurvePrior().sample(200, 100, generator=gen(12345))
    return batch.y[..., 0].double().numpy(), batch.meta["curve"].double().numpy()


def test_extrapolator_bands_cover_held_out_prior_curves(held_out_curves):
    noisy, _ = held_out_curves
    cut = 20
    epochs = np.arange(1, 101)
    lc = LearningCurveExtrapolator().fit(epochs[:cut], np.clip(noisy[:, :cut], 0, 1))
    future = epochs[cut:]
    bands = lc.predict_quantiles(future, [0.05, 0.5, 0.95])
    assert bands.shape == (200, 80, 3) and (np.diff(bands, axis=-1) >= 0).all()
    inside = (noisy[:, cut:] >= bands[..., 0]) & (noisy[:, cut:] <= bands[..., 2])
    assert 0.83 <= inside.mean() <= 0.97
    # informative: the median's error is well below the spread of the future values across curves
    median_error = np.abs(bands[..., 1] - noisy[:, cut:]).mean()
    assert median_error < 0.5 * np.abs(noisy[:, cut:] - noisy[:, cut:].mean()).mean()
    log_density = lc.predict_log_density(future, noisy[:, cut:])
    assert log_density.shape == (200, 80) and np.isfinite(log_density).all()


def test_prob_exceeds_is_a_monotone_survival_function():
    lc = LearningCurveExtrapolator().fit([1, 2, 3, 4, 5, 6], [0.30, 0.42, 0.50, 0.55, 0.58, 0.60])
    probabilities = [lc.prob_exceeds(level) for level in (0.3, 0.6, 0.8, 0.99)]
    assert all(0 <= p <= 1 for p in probabilities)
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.9
    median = float(lc.predict_quantiles([100], [0.5])[0, 0])
    assert lc.prob_exceeds(median, t_future=100) == pytest.approx(0.5, abs=0.01)
    assert lc.prob_exceeds(0.6, t_future=[50, 100]).shape == (2,)


def test_one_curve_and_a_batch_agree():
    t = np.arange(1, 9)
    curves = np.array([[0.2, 0.3, 0.36, 0.4, 0.43, 0.45, 0.46, 0.47], [0.5, 0.6, 0.64, 0.66, 0.67, 0.68, 0.68, 0.69]])
    batch = LearningCurveExtrapolator().fit(t, curves).predict_mean([20, 100])
    single = LearningCurveExtrapolator().fit(t, curves[1]).predict_mean([20, 100])
    assert batch.shape == (2, 2) and np.allclose(batch[1], single, atol=1e-5)


@pytest.mark.parametrize(
    "t, y, message",
    [
        ([1, 2, 3], [0.1, float("nan"), 0.3], "NaN"),
        ([1, 3, 2], [0.1, 0.2, 0.3], "strictly increasing"),
        ([1, 2, 3], [0.1, 0.2, 1.3], r"\[0, 1\]"),
        ([1, 2, 300], [0.1, 0.2, 0.3], r"\[1, 100\]"),
        ([1, 2], [0.1, 0.2, 0.3], "3 values per curve"),
        ([1, 2, 3], "abc", "numeric"),
    ],
)
def test_bad_curves_get_named_errors(t, y, message):
    with pytest.raises(PriorfitValidationError, match=message):
        LearningCurveExtrapolator().fit(t, y)


def test_bad_queries_get_named_errors():
    lc = LearningCurveExtrapolator()
    with pytest.raises(PriorfitValidationError, match="not fitted"):
        lc.predict_mean([10])
    lc.fit([1, 2, 3], [0.1, 0.2, 0.3])
    with pytest.raises(PriorfitValidationError, match="t_future"):
        lc.predict_mean([0, 101])
    with pytest.raises(PriorfitValidationError, match="quantile levels"):
        lc.predict_quantiles([10], [0.5, 1.0])
    with pytest.raises(PriorfitValidationError, match="y_future"):
        lc.predict_log_density([10, 20], [0.5, 0.6, 0.7])
    with pytest.raises(PriorfitValidationError, match="classification"):
        LearningCurveExtrapolator(checkpoint="tabular-clf-small").fit([1, 2], [0.1, 0.2])


def test_quantiles_keyword_and_the_deprecated_q():
    lc = LearningCurveExtrapolator().fit([1, 2, 3], [0.3, 0.4, 0.5])
    expected = lc.predict_quantiles([50], quantiles=[0.1, 0.9])
    with pytest.warns(DeprecationWarning, match="renamed quantiles"):
        assert np.array_equal(lc.predict_quantiles([50], q=[0.1, 0.9]), expected)
