"""The coupling spline flow: invertible, a normalised density, and one network pass per transform to sample."""

from __future__ import annotations

import pytest
import torch

from priorfit.networks.coupling import coupling_spline_flow


def _perturbed_flow(features: int, context: int = 3):
    torch.manual_seed(0)
    flow = coupling_spline_flow(features, context, transforms=3, hidden=(16, 16), bins=6)
    with torch.no_grad():  # away from the identity the LU maps and splines start at
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return flow


@pytest.mark.parametrize("features", [1, 2, 5])
def test_sampling_inverts_the_density_transform(features):
    flow = _perturbed_flow(features)
    with torch.no_grad():
        conditional = flow(torch.randn(3))
        z = torch.randn(400, features)
        theta = conditional.transform.inv(z)
        assert torch.allclose(conditional.transform(theta), z, atol=1e-4)
        samples = conditional.sample((50,))
        assert samples.shape == (50, features) and torch.isfinite(conditional.log_prob(samples)).all()


@pytest.mark.parametrize("features", [1, 2])
def test_the_density_integrates_to_one(features):
    flow = _perturbed_flow(features)
    grid = torch.linspace(-12, 12, 601 if features == 2 else 20001)
    points = torch.cartesian_prod(grid, grid) if features == 2 else grid[:, None]
    with torch.no_grad():
        density = flow(torch.randn(3)).log_prob(points).exp()
    mass = density.sum() * (grid[1] - grid[0]) ** features
    assert abs(float(mass) - 1) < 2e-3


def test_one_hyper_network_pass_per_transform_when_sampling():
    flow = _perturbed_flow(6)
    calls = []
    hypers = [module.hyper for module in flow.transform.transforms if hasattr(module, "hyper")]
    handles = [hyper.register_forward_hook(lambda *_: calls.append(1)) for hyper in hypers]
    with torch.no_grad():
        flow(torch.randn(3)).sample((10,))
    for handle in handles:
        handle.remove()
    assert len(hypers) == 3 and len(calls) == 3
