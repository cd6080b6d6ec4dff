"""ExactRelationPrior: targets that are exact functions of the used columns, up to the drawn noise."""

import numpy as np
import pytest
import torch

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors import ExactRelationPrior, PriorMixture
from priorfit.priors.relations import RELATIONS


def _residual_std(features: np.ndarray, y: np.ndarray) -> float:
    """Residual standard deviation of a least-squares fit of y on [1, features] (unbiased)."""
    design = np.column_stack([np.ones(len(y)), features])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(np.sqrt(residual @ residual / (len(y) - design.shape[1])))


def _basis(x: np.ndarray, used: np.ndarray, relation: str) -> np.ndarray:
    """Columns spanning the relation exactly: the used columns, plus their pairwise products if quadratic or a
    product (x_a · x_b of two standardised log-normal columns is bilinear in them)."""
    columns = x[:, used]
    if relation in ("quadratic", "ratio"):
        pairs = [columns[:, i] * columns[:, j] for i in range(columns.shape[1]) for j in range(i, columns.shape[1])]
        columns = np.column_stack([columns, *pairs])
    return columns


@pytest.mark.parametrize("relation", ["linear", "sum", "quadratic", "ratio"])
def test_targets_are_the_relation_up_to_the_drawn_noise(relation):
    prior = ExactRelationPrior(num_features=6, max_used=4, relations=[relation])
    batch = prior.sample(64, 400, generator=torch.Generator().manual_seed(0))
    x, y = batch.x.double().numpy(), batch.y[..., 0].double().numpy()
    used, noise = batch.meta["used"].numpy(), batch.meta["noise_std"].double().numpy()
    checked = 0
    for index in range(len(x)):
        if relation == "ratio" and (batch.meta["power"][index] != 1 or used[index].sum() != 2):
            continue  # a / b and a / b² are not polynomial in the standardised columns
        ratio = _residual_std(_basis(x[index], used[index], relation), y[index]) / noise[index]
        # float32 rounding of a unit-spread y is ~6e-8; below noise 1e-5 that dominates the residual
        if noise[index] > 1e-5:
            assert 0.7 < ratio < 1.3, (index, ratio, noise[index])
        checked += 1
        unused = ~used[index] & (np.ptp(x[index], axis=0) > 0)
        if unused.any() and relation != "ratio":  # the other columns explain nothing
            with_unused = _residual_std(
                np.column_stack([_basis(x[index], used[index], relation), x[index][:, unused]]), y[index]
            )
            assert with_unused / noise[index] > 0.6
    assert checked >= 8


def test_sums_have_unit_coefficients_and_noise_spans_orders_of_magnitude():
    prior = ExactRelationPrior(num_features=8, relations=["sum"])
    batch = prior.sample(200, 300, generator=torch.Generator().manual_seed(1))
    quiet = torch.nonzero(batch.meta["noise_std"] < 0.01).squeeze(-1)[:20].tolist()
    for index in quiet:
        used = batch.meta["used"][index].numpy()
        x, y = batch.x[index].double().numpy()[:, used], batch.y[index, :, 0].double().numpy()
        coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(y)), x]), y, rcond=None)
        magnitudes = np.abs(coef[1:])
        assert np.allclose(magnitudes, magnitudes.mean(), rtol=0.02)  # ±1 before y was standardised
    noise = batch.meta["noise_std"]
    assert noise.min() < 3e-4 and noise.max() > 3e-2
    assert torch.allclose(batch.y.std(1), torch.ones(200, 1), rtol=0.02)


def test_feature_counts_vary_padding_is_zero_and_all_relations_appear():
    batch = ExactRelationPrior(num_features=16).sample(256, 50, generator=torch.Generator().manual_seed(2))
    counts = batch.meta["num_features"]
    assert counts.min() == 1 and counts.max() == 16
    padding = torch.arange(16) >= counts.unsqueeze(1)
    assert bool((batch.x.abs().sum(1)[padding] == 0).all())
    assert not bool((batch.meta["used"] & padding).any())
    assert set(batch.meta["relation"].tolist()) == set(range(len(RELATIONS)))
    assert torch.isfinite(batch.y).all()


def test_mixes_with_the_tabular_priors_and_rejects_bad_settings():
    from priorfit.priors import BNNPrior

    mix = PriorMixture({"relations": ExactRelationPrior(num_features=4), "bnn": BNNPrior(num_features=2)})
    assert mix.sample(8, 20, generator=torch.Generator().manual_seed(0)).x.shape == (8, 20, 4)
    one_column = ExactRelationPrior(num_features=1).sample(16, 20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(one_column.y).all()
    with pytest.raises(InvalidHyperparameterError, match="unknown relations"):
        ExactRelationPrior(relations=["cubic"])
    with pytest.raises(InvalidHyperparameterError, match="num_features"):
        ExactRelationPrior(num_features=0)
