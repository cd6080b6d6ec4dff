"""Does an observed set look like the simulations a model was trained on? The pieces of a conformal test.

A statistic of a query set (larger: less typical) gets a conformal p-value: its rank among the same statistic of
*reference* sets, held-out simulations the statistic was not fitted on. Under a well-specified model the query is
exchangeable with the reference sets, so ``p_value <= alpha`` happens with probability at most alpha: a
false-alarm rate of at most alpha, without assumptions on the simulator. Several statistics are combined by
Bonferroni (``priorfit.observation_check``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TypicalityResult", "knn_log_distance", "conformal_p_value"]


@dataclass
class TypicalityResult:
    """p-values of "this observation set is a draw from the training simulations" (small: it is not)."""

    p_value: float  # the combined test: min(1, number of statistics · the smallest p-value)
    p_values: dict[str, float]  # per statistic: "observations", "moments", "summary"
    statistics: dict[str, float]  # the query's values of them
    num_reference: int  # reference sets the p-values rank against (resolution 1 / (num_reference + 1))

    def misspecified(self, alpha: float = 0.05) -> bool:
        """Whether the test rejects at level ``alpha`` (its false-alarm rate on well-specified data is ≤ alpha)."""
        return self.p_value <= alpha

    def to_dict(self) -> dict:
        return {
            "p_value": self.p_value,
            "p_values": dict(self.p_values),
            "statistics": dict(self.statistics),
            "num_reference": self.num_reference,
        }


def knn_log_distance(queries: Tensor, pool: Tensor, k: int, *, exclude_self: bool = False) -> Tensor:
    """log of the distance from each query row (Q, D) to its k-th nearest row of ``pool`` (P, D)."""
    distances = torch.cdist(queries.double(), pool.double())
    if exclude_self:
        distances.fill_diagonal_(float("inf"))
    k = min(k, pool.shape[0] - int(exclude_self))
    return distances.kthvalue(k, dim=-1).values.clamp_min(1e-12).log()


def conformal_p_value(statistic: float, reference: Tensor) -> float:
    """(1 + #{reference ≥ statistic}) / (len(reference) + 1): large statistics are atypical."""
    return float((1 + (reference >= statistic).sum()) / (len(reference) + 1))
