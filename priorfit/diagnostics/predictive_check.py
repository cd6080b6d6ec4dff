"""Posterior predictive checks: simulate from posterior draws and ask whether the observation looks like the
simulations (Gelman et al., Bayesian Data Analysis ch. 6).

For posterior draws θ_1..θ_M given an observed set x_obs (n observations), each θ_m simulates a replicate set of
n observations; summary statistics T of the replicates give the posterior predictive distribution of T, and
the observation's T is placed in it: a two-sided predictive p-value per statistic. A small p-value says the
fitted model cannot reproduce that feature of the data (a misspecified simulator, or a wrong posterior).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from priorfit._validation import check_int
from priorfit.diagnostics._inputs import as_tensor
from priorfit.errors import PriorfitValidationError

__all__ = ["PredictiveCheckResult", "posterior_predictive_check", "default_statistics"]


def default_statistics(x: Tensor) -> tuple[Tensor, list[str]]:
    """Per feature of sets x (M, n, Dx): the mean, and the standard deviation when n > 1."""
    dims = x.shape[-1]
    values, names = [x.mean(1)], [f"mean x[{d}]" for d in range(dims)]
    if x.shape[1] > 1:
        values.append(x.std(1))
        names += [f"sd x[{d}]" for d in range(dims)]
    return torch.cat(values, dim=-1), names


@dataclass
class PredictiveCheckResult:
    """Statistics of the observation and of the posterior predictive replicates.

    Attributes:
        names: one per statistic.
        observed: (K,) the observation's statistics.
        replicated: (M, K) the statistics of the M replicate sets.
        p_values: (K,) two-sided predictive p-values, 2 · min(P(T_rep ≤ T_obs), P(T_rep ≥ T_obs)), capped at 1.
    """

    names: list[str]
    observed: Tensor
    replicated: Tensor
    p_values: Tensor

    def consistent(self, level: float = 0.05) -> bool:
        """True unless a statistic's p-value is below ``level`` (Bonferroni over the statistics)."""
        return bool((self.p_values >= level / len(self.p_values)).all())

    def to_dict(self) -> dict:
        return {
            "statistics": self.names,
            "observed": self.observed.tolist(),
            "replicate_mean": self.replicated.mean(0).tolist(),
            "replicate_sd": self.replicated.std(0).tolist(),
            "p_values": self.p_values.tolist(),
            "consistent_at_0.05": self.consistent(0.05),
        }

    def plot(self, axes=None):
        """One histogram of replicated statistics per statistic, the observed value as a line. Returns the axes."""
        import matplotlib.pyplot as plt

        count = len(self.names)
        if axes is None:
            axes = plt.subplots(1, count, figsize=(2.8 * count, 2.6), squeeze=False)[1][0]
        for index, ax in enumerate(axes[:count]):
            ax.hist(self.replicated[:, index].numpy(), bins=30, color="C0", alpha=0.7, label="replicates")
            ax.axvline(float(self.observed[index]), color="C3", linewidth=1.5, label="observed")
            ax.set(title=f"{self.names[index]} (p {float(self.p_values[index]):.2g})", yticks=[])
            ax.title.set_fontsize("small")
        axes[0].legend(fontsize="x-small")
        return axes


def posterior_predictive_check(
    theta_samples,
    simulator: Callable[[Tensor], Tensor],
    x_obs,
    *,
    statistics: Callable[[Tensor], tuple[Tensor, Sequence[str]]] = default_statistics,
    num_replicates: int | None = None,
) -> PredictiveCheckResult:
    """Place the observed set x_obs (n, Dx) among sets simulated from posterior draws ``theta_samples`` (M, Dθ).

    ``simulator`` maps θ (N, Dθ) to one observation each (N, Dx), like the simulators ``AmortizedPosterior.fit``
    takes; each draw simulates n observations. ``statistics`` maps sets (M, n, Dx) to (statistics (M, K), names)
    (default: each feature's mean and standard deviation). ``num_replicates`` uses that many of the draws.
    """
    theta = as_tensor(theta_samples, "theta_samples")
    x_obs = as_tensor(x_obs, "x_obs")
    theta = theta.unsqueeze(-1) if theta.dim() == 1 else theta
    x_obs = x_obs.unsqueeze(0) if x_obs.dim() == 1 else x_obs
    if theta.dim() != 2 or x_obs.dim() != 2:
        raise PriorfitValidationError(
            f"need posterior draws (M, Dθ) and one observed set (n, Dx), got {tuple(theta.shape)} and "
            f"{tuple(x_obs.shape)}"
        )
    if not callable(simulator):
        raise PriorfitValidationError(f"simulator must be a function θ -> x, got {type(simulator).__name__}")
    if num_replicates is not None:
        check_int(num_replicates, "num_replicates", minimum=2, maximum=len(theta))
        theta = theta[:num_replicates]
    if len(theta) < 2:
        raise PriorfitValidationError("need at least 2 posterior draws")
    count, size = len(theta), len(x_obs)
    with torch.no_grad():
        simulated = as_tensor(simulator(theta.repeat_interleave(size, dim=0).float()), "simulated x")
    if simulated.shape != (count * size, x_obs.shape[1]):
        raise PriorfitValidationError(
            f"the simulator returned {tuple(simulated.shape)} for {count * size} parameter draws; expected one "
            f"observation of {x_obs.shape[1]} features per draw"
        )
    replicates = simulated.reshape(count, size, -1).double()
    replicated, names = statistics(replicates)
    observed, _ = statistics(x_obs.double().unsqueeze(0))
    observed = observed[0]
    below = (replicated <= observed).double().mean(0)
    above = (replicated >= observed).double().mean(0)
    p_values = (2 * torch.minimum(below, above)).clamp(max=1.0)
    return PredictiveCheckResult(names=list(names), observed=observed, replicated=replicated, p_values=p_values)
