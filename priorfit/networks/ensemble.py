"""An ensemble of posterior networks: k members of one family, trained side by side from different initial
weights; q(θ | x) is their equal-weight mixture (deep ensembles, Lakshminarayanan et al. 2017; sbi's
``EnsemblePosterior``). A mixture is wider where members disagree, which guards against one member's
overconfidence."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from priorfit.errors import InvalidHyperparameterError

__all__ = ["EnsemblePosterior", "EqualMixture"]


class EqualMixture(Distribution):
    """The equal-weight mixture of distributions with the same batch shape (B,) and event shape (Dθ,)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, members: list[Distribution]) -> None:
        self.members = members
        super().__init__(members[0].batch_shape, members[0].event_shape, validate_args=False)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        """Each draw from a uniformly chosen member: one member draw per sample, not k."""
        shape = torch.Size(sample_shape)
        count = shape.numel()
        chosen = torch.randint(len(self.members), (count,))
        out = None
        for index, member in enumerate(self.members):
            rows = (chosen == index).nonzero().squeeze(-1)
            if len(rows) == 0:
                continue
            draws = member.sample((len(rows),))
            if out is None:
                out = draws.new_empty((count, *draws.shape[1:]))
            out[rows.to(draws.device)] = draws
        return out.reshape(shape + self.batch_shape + self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        members = torch.stack([member.log_prob(value) for member in self.members])
        return torch.logsumexp(members, dim=0) - math.log(len(self.members))


class EnsemblePosterior(nn.Module):
    """Posterior networks ``members`` (built members of one density family: "flow", "gmm", "fmpe") answered
    together: ``distribution(x)`` is their :class:`EqualMixture`.

    In a configuration, ``members`` is a list of member configurations (each with its ``_target_`` and sizes), so
    the registry's allow list decides every network a checkpoint builds. The training loss is the members' mean
    loss, so each member trains on its own likelihood exactly as it would alone (with the shared batches and
    early stopping); it is not the mixture's NLL, hence ``loss_is_nll`` False.
    """

    has_density = True  # every member has one (checked), so the mixture has one
    loss_is_nll = False
    MAX_MEMBERS = 64

    def __init__(self, theta_dim: int, x_dim: int, *, members: list[nn.Module]) -> None:
        super().__init__()
        if not isinstance(members, (list, tuple)) or not 1 <= len(members) <= self.MAX_MEMBERS:
            raise InvalidHyperparameterError(f"members must be a list of 1..{self.MAX_MEMBERS} posterior networks")
        families = {type(member) for member in members}
        if len(families) != 1 or not all(isinstance(member, nn.Module) for member in members):
            raise InvalidHyperparameterError(f"ensemble members must be networks of one family, got {families}")
        first = members[0]
        if not getattr(first, "has_density", False):
            raise InvalidHyperparameterError(
                f"an ensemble mixes densities; {getattr(first, 'estimator', type(first).__name__)!r} has none: use "
                "'flow', 'gmm' or 'fmpe' members"
            )
        if any((member.theta_dim, member.x_dim) != (theta_dim, x_dim) for member in members):
            raise InvalidHyperparameterError(f"every member must map x of size {x_dim} to θ of size {theta_dim}")
        self.members = nn.ModuleList(members)
        self.estimator = first.estimator  # what AmortizedPosterior reports: the members' family
        self.theta_dim, self.x_dim = theta_dim, x_dim

    @property
    def x_scaler(self) -> nn.Module:
        return self.members[0].x_scaler

    def fit_standardization(self, theta: Tensor, x: Tensor) -> None:
        for member in self.members:
            member.fit_standardization(theta, x)

    def check_x(self, x: Tensor) -> Tensor:
        return self.members[0].check_x(x)

    def summary(self, x: Tensor) -> Tensor:
        """The first member's set embedding: a statistic of the observations (for ``AmortizedPosterior.check``)."""
        return self.members[0].summary(x)

    def training_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        return torch.stack([member.training_loss(theta, x) for member in self.members]).mean(0)

    def distribution(self, x: Tensor) -> EqualMixture:
        return EqualMixture([member.distribution(x) for member in self.members])

    def forward(self, x: Tensor) -> EqualMixture:
        return self.distribution(self.check_x(x))
