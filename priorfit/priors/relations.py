"""Tables whose target is an exact function of a few features, observed with noise from 1e-4 to 1e-1 of its spread.

Real tables often hold a target computed from other columns (budget shares that sum to one, a difference of two
columns, weight / height²). Priors of noisy functions never show a PFN such tables, so it stays at the noise
level they taught it. This prior draws them: per dataset a relation kind, 1-``max_used`` of its features, and a
noise level log-uniform over several orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.hyperpriors import HyperparameterSpec, LogUniform, as_hyperprior

__all__ = ["ExactRelationPrior", "RELATIONS"]

# linear: x_S @ w, w ~ N(0, 1); sum: coefficients ±1 (shares, differences); quadratic: linear plus a random
# quadratic form over the used features; ratio: x_a · x_b^p on positive columns, p in {-2, -1, 1} (a / b²,
# a / b, a · b)
RELATIONS = ("linear", "sum", "quadratic", "ratio")


class ExactRelationPrior:
    """Datasets y = f(x) + ε where f is an exact relation between a few columns and ε is tiny.

    Per dataset: 1..``num_features`` columns (zero-padded beyond, as ``SCMPrior`` does), of which 1..``max_used``
    enter f; a relation from ``relations`` (see ``RELATIONS``); the noise standard deviation relative to f's
    spread from ``noise_std``. Columns are Gaussian, or log-normal (positive) for ratios, then standardised over
    the dataset's points, as the tabular estimators' standard view does; f is standardised too, so y has unit
    spread whatever the relation.

    Example:
        >>> prior = ExactRelationPrior(num_features=4)
        >>> prior.sample(3, 10, generator=torch.Generator().manual_seed(0)).x.shape
        torch.Size([3, 10, 4])
    """

    has_exact_predictive = False

    def __init__(
        self,
        *,
        num_features: int = 16,
        max_used: int = 8,
        relations: Sequence[str] = RELATIONS,
        noise_std: HyperparameterSpec = LogUniform(1e-4, 1e-1),
    ) -> None:
        if not isinstance(num_features, int) or num_features < 1:
            raise InvalidHyperparameterError(f"num_features must be a positive integer, got {num_features!r}")
        if not isinstance(max_used, int) or max_used < 1:
            raise InvalidHyperparameterError(f"max_used must be a positive integer, got {max_used!r}")
        unknown = [r for r in relations if r not in RELATIONS]
        if unknown or not relations:
            raise InvalidHyperparameterError(f"unknown relations {unknown}; choose from {RELATIONS}")
        self.num_features = num_features
        self.max_used = min(max_used, num_features)
        self.relations = tuple(relations)
        self.noise_std = as_hyperprior(noise_std, "noise_std")

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        dev = generator.device if generator is not None else None
        b, n, width = batch_size, num_points, self.num_features

        def uniform(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=dev)

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, device=dev)

        def randint(low: int, high: Tensor | int) -> Tensor:
            """(B,) uniform integers in [low, high], high per dataset allowed."""
            high = torch.as_tensor(high, device=dev)
            return (low + uniform(b) * (high - low + 1)).floor().long()

        kind_index = torch.tensor([RELATIONS.index(r) for r in self.relations], device=dev)
        kind = kind_index[randint(0, len(self.relations) - 1)]  # (B,) index into RELATIONS
        num_features = randint(1, width)
        positive = kind == RELATIONS.index("ratio")
        num_used = torch.minimum(randint(1, self.max_used), num_features)
        num_used = torch.where(positive, num_used.clamp_max(2), num_used)  # a ratio uses two columns (or one)
        columns = torch.arange(width, device=dev)
        # the used columns: a random subset of the dataset's own columns, in random order (first two: a and b)
        keys = torch.where(
            columns < num_features.unsqueeze(1), uniform(b, width), torch.full((b, width), 2.0, device=dev)
        )
        order = keys.argsort(1)
        rank = order.argsort(1)  # each column's position in the random order
        used = (rank < num_used.unsqueeze(1)).float()  # (B, F)

        raw = normal(b, n, width)
        raw = torch.where(positive.view(-1, 1, 1), (0.35 * raw).exp(), raw)  # log-normal columns for ratios
        x = (raw - raw.mean(1, keepdim=True)) / raw.std(1, keepdim=True, correction=0).clamp_min(1e-6)

        weights = torch.where((kind == RELATIONS.index("sum")).view(-1, 1), normal(b, width).sign(), normal(b, width))
        f = (x * (weights * used).unsqueeze(1)).sum(-1)  # linear and sum
        quadratic = normal(b, width, width) * (used.unsqueeze(2) * used.unsqueeze(1))
        f_quadratic = f + torch.einsum("bni,bij,bnj->bn", x, quadratic, x)
        first, second = order[:, 0], order[:, min(1, width - 1)]
        power = torch.tensor([-2.0, -1.0, 1.0], device=dev)[randint(0, 2)]
        log_a = raw.gather(2, first.view(b, 1, 1).expand(b, n, 1)).squeeze(-1).clamp_min(1e-30).log()
        log_b = raw.gather(2, second.view(b, 1, 1).expand(b, n, 1)).squeeze(-1).clamp_min(1e-30).log()
        # with one used column (or one column), the ratio is that column's power
        single = (num_used < 2).view(-1, 1)
        f_ratio = torch.where(single, power.view(-1, 1) * log_a, log_a + power.view(-1, 1) * log_b).exp()
        f = torch.where((kind == RELATIONS.index("quadratic")).view(-1, 1), f_quadratic, f)
        f = torch.where(positive.view(-1, 1), f_ratio, f)
        f = (f - f.mean(1, keepdim=True)) / f.std(1, keepdim=True, correction=0).clamp_min(1e-12)
        noise_std = self.noise_std.sample(b, generator=generator, device=dev)
        y = (f + noise_std.view(-1, 1) * normal(b, n)).unsqueeze(-1)
        x = x * (columns < num_features.unsqueeze(1)).unsqueeze(1)
        meta = {
            "num_features": num_features,
            "used": used.bool(),
            "relation": kind,
            "power": power,
            "noise_std": noise_std,
        }
        return Batch(x=x, y=y, meta=meta)
