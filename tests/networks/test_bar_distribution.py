import math

import pytest
import torch

from priorfit.networks import BarDistribution, ClassificationHead, borders_from_samples


@pytest.fixture
def head():
    return BarDistribution(torch.tensor([-2.0, -1.0, -0.2, 0.0, 0.5, 1.5, 3.0]))


@pytest.fixture
def logits():
    return torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_density_integrates_to_one(head, logits):
    """Integrate piece by piece (the density jumps at every border), tails out to ±60."""
    edges = [-60.0, *head.borders[1:-1].tolist(), 60.0]
    total = torch.zeros(logits.shape[:-1], dtype=torch.float64)
    for low, high in zip(edges[:-1], edges[1:]):
        grid = torch.linspace(low + 1e-12, high - 1e-12, 20_001, dtype=torch.float64)
        density = head.log_density(logits.unsqueeze(-2), grid.view(1, 1, -1)).exp()
        total += torch.trapezoid(density, grid, dim=-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_quantile_inverts_cdf(head, logits):
    q = torch.tensor([0.001, 0.05, 0.3, 0.5, 0.77, 0.95, 0.999], dtype=torch.float64)
    for value in q:
        y = head.quantile(logits, value)
        assert torch.allclose(head.cdf(logits, y), torch.full_like(y, value.item()), atol=1e-6)


def test_cdf_is_monotone_and_hits_cumulative_probabilities_at_borders(head, logits):
    grid = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    cdf = head.cdf(logits[:1, :1].unsqueeze(-2), grid.view(1, 1, -1))[0, 0]
    assert bool((torch.diff(cdf) >= -1e-12).all())
    inner_borders = head.borders[1:-1].double()
    at_borders = head.cdf(logits[0, 0].expand(len(inner_borders), -1), inner_borders)
    expected = torch.cumsum(torch.softmax(logits[0, 0], -1), 0)[:-1]
    assert torch.allclose(at_borders, expected, atol=1e-12)


def test_nll_matches_hand_computation(head):
    logits = torch.tensor([0.0, 1.0, 2.0, 0.5, -1.0, 0.3], dtype=torch.float64)
    probs = torch.softmax(logits, 0)
    # inner bucket 2 = [-0.2, 0.0): density p2 / 0.2
    assert math.isclose(
        head.nll(logits, torch.tensor(-0.1, dtype=torch.float64)).item(), -math.log(probs[2].item() / 0.2), rel_tol=1e-6
    )
    # right tail: half-normal starting at 1.5 with half its mass within the width 1.5
    scale = 1.5 / (math.sqrt(2) * torch.special.erfinv(torch.tensor(0.5, dtype=torch.float64)).item())
    y = 4.0
    density = probs[5].item() * math.sqrt(2 / math.pi) / scale * math.exp(-0.5 * ((y - 1.5) / scale) ** 2)
    assert math.isclose(head.nll(logits, torch.tensor(y, dtype=torch.float64)).item(), -math.log(density), rel_tol=1e-6)


def test_mean_variance_and_sample_agree(head, logits):
    draws = head.sample(logits, torch.Size([200_000]), generator=torch.Generator().manual_seed(1))
    assert draws.shape == (200_000, 3, 4)
    assert torch.allclose(draws.mean(0), head.mean(logits), atol=0.02)
    assert torch.allclose(draws.var(0), head.variance(logits), rtol=0.03, atol=0.01)


def test_bounded_mean_keeps_tail_mass_near_the_edges(head, logits):
    """The mean of a head whose right tail bucket is 12 units wide, next to a 0.5-wide inner bucket."""
    wide = BarDistribution(torch.tensor([-2.0, -1.5, -1.0, 0.0, 0.5, 1.0, 13.0], dtype=torch.float64))
    no_tails = torch.tensor([-50.0, 0.0, 1.0, 0.5, 2.0, -50.0], dtype=torch.float64)
    assert torch.allclose(wide.bounded_mean(no_tails), wide.mean(no_tails), atol=1e-12)
    right_tail = torch.tensor([-50.0, -50.0, -50.0, -50.0, -50.0, 0.0], dtype=torch.float64)
    assert wide.mean(right_tail).item() > 10  # the half-normal's mean: 1 + 12 / 0.674 * 0.798
    assert math.isclose(wide.bounded_mean(right_tail).item(), 1.0 + 0.5 * 2 / math.pi, rel_tol=1e-9)
    left_tail = right_tail.flip(0)
    assert math.isclose(wide.bounded_mean(left_tail).item(), -1.5 - 0.5 * 2 / math.pi, rel_tol=1e-9)
    # any logits: within the inner buckets widened by their outermost widths; the small tails of `head` unchanged
    anything = 30 * torch.randn(1000, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    means = wide.bounded_mean(anything)
    assert bool((means >= -2.0).all() and (means <= 1.5).all())
    narrow = BarDistribution(torch.tensor([-1.1, -1.0, 0.0, 1.0, 1.1], dtype=torch.float64))
    assert torch.allclose(narrow.bounded_mean(logits[..., :4]), narrow.mean(logits[..., :4]))


def test_distribution_interface(head, logits):
    dist = head(logits)
    y = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(dist.log_prob(y), head.log_density(logits, y))
    assert dist.batch_shape == (3, 4)
    assert dist.sample((5,)).shape == (5, 3, 4)
    assert torch.allclose(dist.icdf(0.5), head.quantile(logits, 0.5))


def test_borders_from_samples_are_equal_mass_quantiles():
    samples = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    borders = borders_from_samples(samples, 10)
    assert borders.shape == (11,) and bool((torch.diff(borders) > 0).all())
    counts = torch.histc(samples, bins=1, min=borders[4].item(), max=borders[5].item())
    assert abs(counts.item() / 100_000 - 0.1) < 0.01


def test_bad_borders_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        BarDistribution(torch.tensor([0.0, 1.0, 1.0, 2.0]))


def test_classification_head():
    head = ClassificationHead(3)
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    nll = head.nll(logits, torch.tensor([0]))
    assert math.isclose(nll.item(), -torch.log_softmax(logits, -1)[0, 0].item(), rel_tol=1e-6)
    assert torch.allclose(head(logits).probs.sum(-1), torch.ones(1))


def test_nll_and_its_gradients_match_cross_entropy(head, logits):
    """The training loss's own backward (``_BucketNLL``) against torch's cross-entropy, values and gradients, and
    gradients of gradients by finite differences."""
    y = torch.tensor([-3.0, -1.5, -0.1, 0.2, 1.0, 2.0, 5.0, 0.4, -0.5, 1.2, 2.9, -2.5]).view(3, 4).double()
    index = head.bucket_index(y)
    picked = torch.log(torch.diff(head.borders.double()))[index]
    inner = (index > 0) & (index < head.num_buckets - 1)
    ours = logits.clone().requires_grad_(True)
    reference = logits.clone().requires_grad_(True)
    weights = torch.rand(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (head.nll(ours, y) * weights).sum().backward()
    expected = torch.nn.functional.cross_entropy(reference.reshape(-1, 6), index.reshape(-1), reduction="none")
    (expected.view(3, 4) * weights).sum().backward()
    assert torch.allclose(head.nll(logits, y)[inner], (expected.view(3, 4) + picked)[inner].detach())
    assert torch.allclose(ours.grad, reference.grad, atol=1e-12)
    torch.autograd.gradgradcheck(lambda z: head.nll(z, y), (logits.clone().requires_grad_(True),))


def test_half_precision_logits_are_summed_in_float32(head):
    """bf16 logits (what a bf16-autocast decoder returns): the NLL is computed in float32 as cross-entropy is under
    autocast, and the gradient comes back in bf16."""
    logits = torch.randn(64, 6, generator=torch.Generator().manual_seed(2)).mul(4).bfloat16().requires_grad_(True)
    y = torch.linspace(-1.9, 2.9, 64)
    nll = head.nll(logits, y)
    expected = head.nll(logits.detach().float(), y)
    assert nll.dtype == torch.float32 and torch.allclose(nll, expected, atol=1e-5)
    nll.sum().backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()
