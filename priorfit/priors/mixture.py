"""A mixture of priors: each dataset of a batch comes from one component, chosen by weight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, Prior, check_sample_arguments

__all__ = ["PriorMixture"]


class PriorMixture:
    """Draws per-dataset component counts from the weights, samples each component as one batch,
    zero-pads inputs to the widest component and shuffles the datasets together.

    Args:
        priors: components, as a list or a name -> prior mapping (names end up in ``meta``).
        weights: non-negative mixture weights (same order / keys); equal if omitted.

    Example:
        >>> from priorfit.priors import BNNPrior, GPPrior
        >>> mix = PriorMixture({"gp": GPPrior(num_features=2), "bnn": BNNPrior(num_features=3)}, {"gp": 3, "bnn": 1})
        >>> mix.sample(8, 10, generator=torch.Generator().manual_seed(0)).x.shape
        torch.Size([8, 10, 3])
    """

    has_exact_predictive = False

    def __init__(
        self,
        priors: Sequence[Prior] | Mapping[str, Prior],
        weights: Sequence[float] | Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(priors, Mapping):
            self.names = list(priors)
            self.priors = [priors[name] for name in self.names]
            if isinstance(weights, Mapping):
                missing = set(self.names) ^ set(weights)
                if missing:
                    raise InvalidHyperparameterError(f"mixture weights and priors name different components: {missing}")
                weights = [weights[name] for name in self.names]
        else:
            self.priors = list(priors)
            self.names = [type(p).__name__ for p in self.priors]
        if not self.priors:
            raise InvalidHyperparameterError("a PriorMixture needs at least one prior")
        for name, prior in zip(self.names, self.priors):
            if not callable(getattr(prior, "sample", None)):
                raise InvalidHyperparameterError(f"mixture component {name!r} is not a prior (it has no sample method)")
        weights = [1.0] * len(self.priors) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.priors) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidHyperparameterError(
                f"need one non-negative weight per prior with a positive sum, "
                f"got {weights} for {len(self.priors)} priors"
            )
        self.weights = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        self.num_features = max(int(getattr(p, "num_features", 1)) for p in self.priors)

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        device = generator.device if generator is not None else None
        choice = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        counts = torch.bincount(choice, minlength=len(self.priors)).tolist()
        xs, ys, components, feature_counts = [], [], [], []
        for index, (prior, count) in enumerate(zip(self.priors, counts)):
            if count == 0:
                continue
            part = prior.sample(count, num_points, generator=generator)
            xs.append(F.pad(part.x, (0, self.num_features - part.x.shape[-1])))
            ys.append(part.y)
            components.append(torch.full((count,), index, dtype=torch.long, device=part.x.device))
            own = part.meta.get("num_features")
            feature_counts.append(own if own is not None else torch.full_like(components[-1], part.x.shape[-1]))
        order = torch.randperm(batch_size, generator=generator, device=device)
        x = torch.cat(xs)[order]
        y = torch.cat(ys)[order] if all(y is not None for y in ys) else None
        component = torch.cat(components)[order]
        meta = {
            "component": component,
            "component_names": self.names,
            "num_features": torch.cat(feature_counts)[order],  # real (unpadded) columns per dataset
        }
        return Batch(x=x, y=y, meta=meta)
