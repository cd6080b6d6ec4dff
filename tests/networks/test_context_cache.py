"""Fit once, predict many: a context encoded once answers every query batch exactly as a full forward pass does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import priorfit
from priorfit.errors import PriorfitValidationError
from priorfit.networks.transformer import QUERY_BLOCK, PFNTransformer


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return PFNTransformer(max_features=3, num_outputs=20, d_model=32, n_heads=4, n_layers=3, d_ff=64).eval()


def test_cached_answers_equal_the_full_forward_for_any_chunking_and_order(network):
    generator = torch.Generator().manual_seed(1)
    x_context, y_context = torch.randn(2, 50, 3, generator=generator), torch.randn(2, 50, generator=generator)
    x_query = torch.randn(2, 301, 3, generator=generator)
    with torch.no_grad():
        full = network(x_context, y_context, x_query)
    cache = network.encode_context(x_context, y_context)
    assert (network.forward_cached(cache, x_query) - full).abs().max() <= 1e-5
    for sizes in ([1, 300], [64, 64, 173], [7, 100, 33, 161]):  # any chunking
        chunked = torch.cat([network.forward_cached(cache, part) for part in x_query.split(sizes, dim=1)], dim=1)
        assert (chunked - full).abs().max() <= 1e-5
    order = torch.randperm(301, generator=generator)  # any query order
    shuffled = network.forward_cached(cache, x_query[:, order])
    assert (shuffled[:, order.argsort()] - full).abs().max() <= 1e-5
    # and a query's answer hardly depends on which other queries came with it (float32 rounding only)
    alone = network.forward_cached(cache, x_query[:, :5], row_block=QUERY_BLOCK)
    assert (alone - network.forward_cached(cache, x_query, row_block=QUERY_BLOCK)[:, :5]).abs().max() <= 1e-6


def test_a_query_batch_that_does_not_fit_the_encoded_context_is_refused(network):
    cache = network.encode_context(torch.randn(2, 10, 3), torch.randn(2, 10))
    with pytest.raises(PriorfitValidationError, match=r"x_query must be \(2, m, 3\)"):
        network.forward_cached(cache, torch.randn(1, 4, 3))
    with pytest.raises(PriorfitValidationError, match=r"x_query must be \(2, m, 3\)"):
        network.forward_cached(cache, torch.randn(2, 4, 2))
    with pytest.raises(PriorfitValidationError, match="NaN"):
        network.forward_cached(cache, torch.full((2, 4, 3), float("nan")))
    assert cache.nbytes == 3 * 2 * (2 * 10 * 32 * 4)  # layers x (keys, values) x float32 bytes


@pytest.mark.parametrize("estimator", ["regressor", "classifier"])
def test_the_estimators_predict_the_same_with_and_without_the_cache(estimator):
    rng = np.random.default_rng(0)
    X, queries = rng.normal(size=(120, 4)), rng.uniform(-1.5, 1.5, size=(700, 4))
    if estimator == "regressor":
        y = X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.normal(size=120)
        cached = priorfit.PFNRegressor(max_memory_mb=24).fit(X, y)  # a small budget: several query chunks
        direct = priorfit.PFNRegressor(max_memory_mb=24, cache_context=False).fit(X, y)
        assert cached.context_cache_ is not None and direct.context_cache_ is None
        a, b = cached.predict(queries, output_type="full"), direct.predict(queries, output_type="full")
        assert np.abs(a["probabilities"] - b["probabilities"]).max() <= 1e-5
        assert np.abs(a["mean"] - b["mean"]).max() <= 1e-5 * max(1.0, np.abs(b["mean"]).max())
        log_density = cached.predict_log_density(queries[:50], queries[:50, 0])
        assert np.abs(log_density - direct.predict_log_density(queries[:50], queries[:50, 0])).max() <= 1e-4
    else:
        y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
        cached = priorfit.PFNClassifier().fit(X, y)
        direct = priorfit.PFNClassifier(cache_context=False).fit(X, y)
        assert np.abs(cached.predict_proba(queries) - direct.predict_proba(queries)).max() <= 1e-5


def test_a_loaded_pfn_conditions_once_and_answers_many_query_batches():
    model = priorfit.load("pfn-gp-1d")
    data = model.prior.sample(3, 60, generator=torch.Generator().manual_seed(0))
    x_context, y_context, x_query = data.x[:, :40], data.y[:, :40], data.x[:, 40:]
    conditioned = model.condition(x_context, y_context)
    direct = model.predictive(x_context, y_context, x_query)
    for part in (slice(0, 20), slice(5, 9)):
        answer = conditioned.predictive(x_query[:, part])
        assert (answer.mean - direct.mean[:, part]).abs().max() <= 1e-5
        y = data.y[:, 40:][:, part, 0]
        assert (answer.log_prob(y) - direct.log_prob(data.y[:, 40:, 0])[:, part]).abs().max() <= 1e-4


def test_the_learning_curve_extrapolator_encodes_its_curves_once():
    from priorfit.checkpoint import cached_pfn

    curves = np.array([[0.40, 0.52, 0.58, 0.62, 0.64], [0.20, 0.35, 0.45, 0.50, 0.55]])
    lc = priorfit.LearningCurveExtrapolator().fit([1, 2, 3, 4, 5], curves)
    model = cached_pfn("lc-pfn-small")
    x_context = (lc.t_ / lc.num_epochs_).unsqueeze(-1)
    x_query = torch.tensor([20.0, 50.0, 100.0]).div(lc.num_epochs_).expand(2, -1).unsqueeze(-1)
    with torch.no_grad():
        direct = model.head(model(x_context, lc.y_, x_query)).mean
    assert np.abs(lc.predict_mean([20, 50, 100]) - direct.double().numpy()).max() <= 1e-5


def test_padded_contexts_are_masked_out(network):
    """Data sets of different sizes in one batch: a masked forward answers each as it would alone, whatever the
    padding holds."""
    generator = torch.Generator().manual_seed(2)
    x_context, y_context = torch.randn(2, 12, 3, generator=generator), torch.randn(2, 12, generator=generator)
    x_query = torch.randn(2, 7, 3, generator=generator)
    mask = torch.arange(12) < torch.tensor([[5], [12]])
    with torch.no_grad():
        masked = network(x_context, y_context, x_query, context_mask=mask)
        alone = network(x_context[:1, :5], y_context[:1, :5], x_query[:1])
        scrambled = network(x_context.where(mask[..., None], 99.0), y_context, x_query, context_mask=mask)
    assert (masked[:1] - alone).abs().max() <= 1e-5
    assert (scrambled - masked).abs().max() <= 1e-5
    with pytest.raises(PriorfitValidationError, match="a real point in every row"):
        network(x_context, y_context, x_query, context_mask=torch.zeros(2, 12, dtype=torch.bool))


def test_many_small_data_sets_in_one_forward_equal_one_at_a_time():
    task = priorfit.load("pfn-gp-1d")
    generator = torch.Generator().manual_seed(3)
    sets = [
        (
            torch.rand(n, 1, generator=generator),
            torch.randn(n, generator=generator),
            torch.rand(m, 1, generator=generator),
        )
        for n, m in ((3, 10), (25, 1), (50, 40))
    ]
    together = task.predictive_many(sets)
    for (x_context, y_context, x_query), answer in zip(sets, together):
        alone = task.predictive(x_context[None], y_context[None], x_query[None])
        assert answer.batch_shape == (len(x_query),)
        assert (answer.logits - alone.logits[0]).abs().max() <= 1e-4
    with pytest.raises(PriorfitValidationError, match="same number of features"):
        task.predictive_many([(torch.rand(3, 1), torch.rand(3), torch.rand(2, 2))])
