"""Riemann ("bar") distribution head: a histogram over fixed buckets with half-normal tails."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

__all__ = ["BarDistribution", "RiemannDistribution", "borders_from_samples"]

# a half-normal with scale s has half its mass within s * _HALF_MASS_FACTOR of its start
_HALF_MASS_FACTOR = math.sqrt(2.0) * torch.special.erfinv(torch.tensor(0.5)).item()
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def borders_from_samples(samples: Tensor, num_buckets: int) -> Tensor:
    """Bucket borders at equally spaced quantiles of prior y samples (so buckets are equally likely)."""
    samples = samples.detach().flatten().double()
    samples = samples[torch.isfinite(samples)]
    if samples.numel() < num_buckets:
        raise ValueError(f"need at least {num_buckets} finite samples, got {samples.numel()}")
    probs = torch.linspace(0.0, 1.0, num_buckets + 1, dtype=torch.float64)
    borders = torch.quantile(samples[:16_000_000], probs)
    # quantiles of discrete-looking samples can tie; spread ties so every bucket has a width
    min_width = (borders[-1] - borders[0]) * 1e-6
    widths = torch.diff(borders).clamp_min(min_width)
    borders = torch.cat([borders[:1], borders[0] + torch.cumsum(widths, 0)])
    return borders.float()


class _BucketNLL(torch.autograd.Function):
    """-log softmax(logits)[index] per row, as ``torch.nn.functional.cross_entropy(..., reduction="none")``, with
    a backward that reuses the forward's log-softmax (one exponential and a scale in place) where cross-entropy's
    zero-fills, scatters and re-reads it (the largest non-matmul cost of a PFN training step with 1,000 buckets).
    When a graph of the gradient is built (``create_graph``), the backward recomputes the softmax from the logits
    with differentiable ops, so gradients of gradients still work. Half-precision logits (bf16 autocast) are summed
    in float32, as autocast runs cross-entropy; the gradient comes back in their dtype."""

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor) -> Tensor:
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
        # log_softmax is one fused pass; logsumexp takes twice its time on CPU
        log_probs = torch.log_softmax(wide, -1)
        ctx.save_for_backward(logits, index, log_probs)
        return -log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        logits, index, log_probs = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: softmax of the logits, so the graph reaches them
            wide = logits.to(torch.promote_types(logits.dtype, grad.dtype))
            grad_logits = torch.softmax(wide, -1) * grad.unsqueeze(-1)
        else:  # the saved log-softmax is not part of any graph; its exponential is a fresh tensor to scale in place
            wide = log_probs.to(torch.promote_types(log_probs.dtype, grad.dtype))
            grad_logits = torch.exp(wide).mul_(grad.unsqueeze(-1))
        grad_logits = grad_logits.scatter_add_(-1, index.unsqueeze(-1), -grad.unsqueeze(-1))
        return grad_logits.to(logits.dtype), None


class BarDistribution(nn.Module):
    """Maps logits over ``len(borders) - 1`` buckets to a density over the real line.

    Inner buckets are uniform; the two outer buckets are half-normal tails starting at the
    inner border, scaled so half of their mass lies inside the bucket. ``forward(logits)``
    returns a :class:`RiemannDistribution` (zuko style); the methods below take logits directly.

    Example:
        >>> head = BarDistribution(torch.linspace(-3, 3, 101))
        >>> logits = torch.zeros(2, 5, 100)
        >>> head.nll(logits, torch.zeros(2, 5)).shape
        torch.Size([2, 5])
    """

    def __init__(self, borders: Tensor) -> None:
        super().__init__()
        borders = torch.as_tensor(borders, dtype=torch.float32)
        if borders.dim() != 1 or borders.numel() < 4:
            raise ValueError(f"borders must be 1-D with at least 4 entries, got shape {tuple(borders.shape)}")
        if not bool((torch.diff(borders) > 0).all()):
            raise ValueError("borders must be strictly increasing")
        self.register_buffer("borders", borders)

    @classmethod
    def from_samples(cls, samples: Tensor, num_buckets: int) -> BarDistribution:
        return cls(borders_from_samples(samples, num_buckets))

    @property
    def num_buckets(self) -> int:
        return self.borders.numel() - 1

    @property
    def num_outputs(self) -> int:
        """Logits the network must produce per query (one per bucket)."""
        return self.num_buckets

    @property
    def widths(self) -> Tensor:
        return torch.diff(self.borders)

    def _tail_scales(self) -> tuple[Tensor, Tensor]:
        widths = self.widths
        return widths[0] / _HALF_MASS_FACTOR, widths[-1] / _HALF_MASS_FACTOR

    def forward(self, logits: Tensor) -> RiemannDistribution:
        return RiemannDistribution(self, logits)

    # density

    def bucket_index(self, y: Tensor) -> Tensor:
        index = torch.searchsorted(self.borders, y.contiguous(), right=True) - 1
        return index.clamp(0, self.num_buckets - 1)

    def log_density(self, logits: Tensor, y: Tensor) -> Tensor:
        """log p(y) for logits (..., K) and y (...); in float32 at least (bf16 would move y across bucket borders)."""
        dtype = torch.promote_types(logits.dtype, torch.float32)
        y = y.to(dtype)
        shape = _broadcast_shape(logits.shape[:-1], y.shape)
        y = y.expand(shape)
        index = self.bucket_index(y)
        if logits.shape[:-1] == shape:
            flat = _BucketNLL.apply(logits.reshape(-1, self.num_buckets), index.reshape(-1))
            log_bucket_prob = -flat.view(shape)
        else:
            log_probs = torch.log_softmax(logits.to(dtype), dim=-1).expand(*shape, self.num_buckets)
            log_bucket_prob = log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        borders = self.borders.to(dtype)
        log_widths = torch.log(torch.diff(borders))
        inner = log_bucket_prob - log_widths[index]
        left_scale, right_scale = (s.to(dtype) for s in self._tail_scales())
        left = log_bucket_prob + _half_normal_log_pdf(borders[1] - y, left_scale)
        right = log_bucket_prob + _half_normal_log_pdf(y - borders[-2], right_scale)
        last = self.num_buckets - 1
        return torch.where(index == 0, left, torch.where(index == last, right, inner))

    def nll(self, logits: Tensor, y: Tensor) -> Tensor:
        """Negative log density of y, elementwise."""
        return -self.log_density(logits, y)

    def cdf(self, logits: Tensor, y: Tensor) -> Tensor:
        y = y.to(logits.dtype)
        shape = _broadcast_shape(logits.shape[:-1], y.shape)
        y = y.expand(shape)
        probs = torch.softmax(logits, dim=-1).expand(*shape, self.num_buckets)
        index = self.bucket_index(y)
        cum_before = (torch.cumsum(probs, -1) - probs).gather(-1, index.unsqueeze(-1)).squeeze(-1)
        bucket_prob = probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        borders = self.borders.to(logits.dtype)
        left_scale, right_scale = (s.to(logits.dtype) for s in self._tail_scales())
        inner_frac = ((y - borders[index]) / torch.diff(borders)[index]).clamp(0, 1)
        left_frac = 1.0 - _half_normal_cdf((borders[1] - y).clamp_min(0), left_scale)
        right_frac = _half_normal_cdf((y - borders[-2]).clamp_min(0), right_scale)
        last = self.num_buckets - 1
        frac = torch.where(index == 0, left_frac, torch.where(index == last, right_frac, inner_frac))
        return (cum_before + bucket_prob * frac).clamp(0, 1)

    def quantile(self, logits: Tensor, q: Tensor | float) -> Tensor:
        """Inverse CDF; q broadcasts against logits[..., 0]."""
        probs = torch.softmax(logits, dim=-1)
        q = torch.as_tensor(q, dtype=logits.dtype, device=logits.device).expand(probs.shape[:-1])
        cumulative = torch.cumsum(probs, -1)
        index = torch.searchsorted(cumulative.contiguous(), q.unsqueeze(-1).contiguous()).squeeze(-1)
        index = index.clamp(0, self.num_buckets - 1)
        cum_before = (cumulative - probs).gather(-1, index.unsqueeze(-1)).squeeze(-1)
        bucket_prob = probs.gather(-1, index.unsqueeze(-1)).squeeze(-1).clamp_min(1e-30)
        frac = ((q - cum_before) / bucket_prob).clamp(1e-7, 1 - 1e-7)
        borders = self.borders.to(logits.dtype)
        left_scale, right_scale = (s.to(logits.dtype) for s in self._tail_scales())
        inner = borders[index] + frac * torch.diff(borders)[index]
        left = borders[1] - _half_normal_icdf(1.0 - frac, left_scale)
        right = borders[-2] + _half_normal_icdf(frac, right_scale)
        last = self.num_buckets - 1
        return torch.where(index == 0, left, torch.where(index == last, right, inner))

    def mean(self, logits: Tensor) -> Tensor:
        probs = torch.softmax(logits, dim=-1)
        return (probs * self._bucket_means(logits.dtype)).sum(-1)

    def bounded_mean(self, logits: Tensor) -> Tensor:
        """The mean with each tail bucket standing for a tail that continues its inner neighbour's density.

        The half-normal tails are as wide as the outermost buckets, and those are set by the few most extreme
        prior draws (``tabular-reg-small``'s right tail bucket is 11.7 standardised units wide, so its mean lies
        13.9 units past its edge): a query given 40 % tail probability gets a mean far beyond its median. Buckets
        hold equal prior mass, so the prior's density just inside an edge is about mass / width of the last inner
        bucket; a half-normal tail of that mass starting at that density has mean excess (2 / pi) · width. That
        value (or the half-normal's own, if smaller) stands for each tail here, so the result lies within the
        inner buckets' range widened by a bucket, whatever the logits. Densities, quantiles and samples keep the
        wide tails, which make the log density forgiving of outliers.
        """
        probs = torch.softmax(logits, dim=-1)
        return (probs * self._bucket_means(logits.dtype, bounded_tails=True)).sum(-1)

    def variance(self, logits: Tensor) -> Tensor:
        probs = torch.softmax(logits, dim=-1)
        mean = (probs * self._bucket_means(logits.dtype)).sum(-1)
        second = (probs * self._bucket_second_moments(logits.dtype)).sum(-1)
        return (second - mean.square()).clamp_min(0)

    def sample(self, logits: Tensor, sample_shape: torch.Size = torch.Size(), generator=None) -> Tensor:
        """Draw a bucket per sample, then a point inside it (uniform, or half-normal in the tails)."""
        num = int(torch.Size(sample_shape).numel())
        probs = torch.softmax(logits.detach(), dim=-1).reshape(-1, self.num_buckets)
        index = torch.multinomial(probs.float(), num, replacement=True, generator=generator)  # (F, num)
        u = torch.rand(index.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        borders = self.borders.to(logits.dtype)
        left_scale, right_scale = (s.to(logits.dtype) for s in self._tail_scales())
        inner = borders[index] + u * torch.diff(borders)[index]
        left = borders[1] - _half_normal_icdf(u, left_scale)
        right = borders[-2] + _half_normal_icdf(u, right_scale)
        last = self.num_buckets - 1
        values = torch.where(index == 0, left, torch.where(index == last, right, inner))
        return values.T.reshape(*sample_shape, *logits.shape[:-1])

    def _bucket_means(self, dtype: torch.dtype, *, bounded_tails: bool = False) -> Tensor:
        borders = self.borders.to(dtype)
        means = (borders[:-1] + borders[1:]) / 2
        left_excess, right_excess = (scale.to(dtype) * _SQRT_2_OVER_PI for scale in self._tail_scales())
        if bounded_tails:  # see bounded_mean
            widths = torch.diff(borders)
            left_excess = torch.minimum(left_excess, widths[1] * 2 / math.pi)
            right_excess = torch.minimum(right_excess, widths[-2] * 2 / math.pi)
        means = means.clone()
        means[0] = borders[1] - left_excess
        means[-1] = borders[-2] + right_excess
        return means

    def _bucket_second_moments(self, dtype: torch.dtype) -> Tensor:
        borders = self.borders.to(dtype)
        a, b = borders[:-1], borders[1:]
        moments = (a.square() + a * b + b.square()) / 3
        left_scale, right_scale = (s.to(dtype) for s in self._tail_scales())
        moments = moments.clone()
        edge = borders[1]
        moments[0] = edge.square() - 2 * edge * left_scale * _SQRT_2_OVER_PI + left_scale.square()
        edge = borders[-2]
        moments[-1] = edge.square() + 2 * edge * right_scale * _SQRT_2_OVER_PI + right_scale.square()
        return moments


class RiemannDistribution(Distribution):
    """A batch of bar distributions: ``head(logits)`` with the usual Distribution methods."""

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, head: BarDistribution, logits: Tensor) -> None:
        self.head = head
        self.logits = logits
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.head.log_density(self.logits, value)

    def cdf(self, value: Tensor) -> Tensor:
        return self.head.cdf(self.logits, value)

    def icdf(self, value: Tensor | float) -> Tensor:
        return self.head.quantile(self.logits, value)

    @property
    def mean(self) -> Tensor:
        return self.head.mean(self.logits)

    @property
    def variance(self) -> Tensor:
        return self.head.variance(self.logits)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.head.sample(self.logits, sample_shape)


def _half_normal_log_pdf(distance: Tensor, scale: Tensor) -> Tensor:
    distance = distance.clamp_min(0)
    return 0.5 * math.log(2 / math.pi) - torch.log(scale) - 0.5 * (distance / scale).square()


def _half_normal_cdf(distance: Tensor, scale: Tensor) -> Tensor:
    return torch.erf(distance / (scale * math.sqrt(2.0)))


def _half_normal_icdf(prob: Tensor, scale: Tensor) -> Tensor:
    return scale * math.sqrt(2.0) * torch.erfinv(prob.clamp(0, 1 - 1e-7))


def _broadcast_shape(*shapes: torch.Size) -> torch.Size:
    """torch.broadcast_shapes without its first-call import of sympy (~0.7 s): broadcast empty tensors."""
    return torch.broadcast_tensors(*(torch.empty(shape, device="meta") for shape in shapes))[0].shape
