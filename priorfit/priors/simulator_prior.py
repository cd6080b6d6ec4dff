"""Simulation-based-inference priors: sbi's (prior, simulator) pair as a sampler of (θ, x_1..n) batches."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError, SimulatorError
from priorfit.priors.base import Batch, check_sample_arguments

__all__ = ["SimulatorPrior", "SimulatorError"]


class SimulatorPrior:
    """Datasets of ``n`` iid simulations per parameter draw: ``Batch(x=(B, n, Dx), theta=(B, Dθ))``.

    Args:
        prior: a distribution over θ with ``sample(sample_shape)`` and ``log_prob`` (a torch
            distribution such as ``sbi.utils.BoxUniform``), samples of shape (..., Dθ).
        simulator: batched callable, θ (M, Dθ) -> x (M, Dx) (one simulation per row).
        num_iid: observations per θ: an int, a ``(low, high)`` range drawn per batch, or None
            to use ``num_points`` of each ``sample`` call.
        max_resample_rounds: simulations returning NaN/inf are dropped (and counted in
            ``num_dropped``) and replaced by fresh draws, at most this many rounds.

    torch distributions cannot take a ``torch.Generator``; sampling runs inside ``torch.random.fork_rng``
    seeded from the given generator, so a batch is still a pure function of it and the global RNG is
    left untouched.

    Example:
        >>> prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), 1.0), 1)
        >>> sim = SimulatorPrior(prior, lambda theta: theta + 0.1 * torch.randn_like(theta), num_iid=5)
        >>> batch = sim.sample(8, 0, generator=torch.Generator().manual_seed(0))
        >>> batch.x.shape, batch.theta.shape
        (torch.Size([8, 5, 2]), torch.Size([8, 2]))
    """

    has_exact_predictive = False

    def __init__(
        self,
        prior: torch.distributions.Distribution,
        simulator: Callable[[Tensor], Tensor],
        *,
        num_iid: int | tuple[int, int] | None = 1,
        max_resample_rounds: int = 10,
    ) -> None:
        if not (hasattr(prior, "sample") and hasattr(prior, "log_prob")):
            raise InvalidHyperparameterError(
                f"the parameter prior needs sample() and log_prob() (a torch Distribution), got {type(prior).__name__}"
            )
        if not callable(simulator):
            raise InvalidHyperparameterError(f"simulator must be callable, got {type(simulator).__name__}")
        if num_iid is not None:
            low, high = (num_iid, num_iid) if isinstance(num_iid, int) else tuple(num_iid)
            if not 1 <= low <= high:
                raise InvalidHyperparameterError(f"num_iid must be >= 1 (or a range low <= high), got {num_iid!r}")
        self.prior = prior
        self.simulator = simulator
        self.num_iid = num_iid
        self.max_resample_rounds = max_resample_rounds
        self.num_dropped = 0  # simulations with NaN/inf output, over the prior's lifetime
        self.num_simulated = 0
        theta = prior.sample((1,))
        if theta.dim() != 2:
            raise SimulatorError(f"the parameter prior must give samples of shape (..., Dθ), got {tuple(theta.shape)}")
        self.theta_dim = theta.shape[-1]
        self.num_features = self._simulate(theta).shape[-1]

    def _simulate(self, theta: Tensor) -> Tensor:
        x = self.simulator(theta)
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] != theta.shape[0]:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise SimulatorError(
                f"the simulator must map θ of shape (M, Dθ) to x of shape (M, Dx); got {shape} for M={theta.shape[0]}"
            )
        return x.to(torch.float32)

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` parameter draws with n iid simulations each.

        With a fixed n (``num_iid`` an int, or None and ``num_points``) x is (B, n, Dx). With a range, each
        dataset draws its own n and x is (B, high, Dx) with the rows past a dataset's n set to NaN
        (padding that set encoders skip); ``meta["num_iid"]`` holds each dataset's n.
        """
        check_sample_arguments(batch_size, num_points, generator)
        low, high = self._iid_range(num_points)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sizes = torch.randint(low, high + 1, (batch_size,))
            thetas, xs, have = [], [], 0
            for _ in range(self.max_resample_rounds):
                theta = self.prior.sample((batch_size - have,)).to(torch.float32)
                x = self._simulate(theta.repeat_interleave(high, dim=0)).view(len(theta), high, -1)
                finite = torch.isfinite(x).all(dim=(1, 2))
                self.num_simulated += len(theta)
                self.num_dropped += int((~finite).sum())
                thetas.append(theta[finite])
                xs.append(x[finite])
                have += int(finite.sum())
                if have == batch_size:
                    break
            else:
                raise SimulatorError(
                    f"the simulator returned NaN/inf for {self.num_dropped} of {self.num_simulated} parameter draws; "
                    f"after {self.max_resample_rounds} rounds only {have} of {batch_size} datasets are finite"
                )
        x = torch.cat(xs)
        if low < high:
            x = x.masked_fill((torch.arange(high) >= sizes.unsqueeze(1)).unsqueeze(-1), float("nan"))
        return Batch(x=x, theta=torch.cat(thetas), meta={"num_iid": sizes if low < high else high})

    def _iid_range(self, num_points: int) -> tuple[int, int]:
        if self.num_iid is None:
            return max(1, num_points), max(1, num_points)
        if isinstance(self.num_iid, int):
            return self.num_iid, self.num_iid
        return tuple(self.num_iid)

    @property
    def dropped_fraction(self) -> float:
        """Fraction of parameter draws whose simulations contained NaN/inf (and were not trained on)."""
        return self.num_dropped / max(1, self.num_simulated)
