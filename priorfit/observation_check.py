"""``AmortizedPosterior.check``: is an observed set like the simulations the posterior was trained on?

A posterior trained by priorfit keeps up to 1,000 held-out simulation sets in its checkpoint (its validation
split, never trained on): half a *pool*, half *reference* sets. A query set X of n observations gets up to three
statistics: how far its observations lie from the pool's observations (mean log k-NN distance, z-scored x), and
the Mahalanobis distance of two kinds of set features from the pool sets' — the sets' moments (per-coordinate mean
and log standard deviation of the n observations) and the network's own summary (its set-encoder embedding, where
it has one). Their conformal p-values (``priorfit.diagnostics.typicality``) rank X among the reference sets cut to
the same n; Bonferroni combines them, so on data from the training simulator the false-alarm rate at level α is
at most α.
"""

from __future__ import annotations

import torch
from torch import Tensor

from priorfit.diagnostics.typicality import TypicalityResult, conformal_p_value, knn_log_distance
from priorfit.errors import PriorfitValidationError

__all__ = ["ObservationCheck"]

NEIGHBOURS = 5


class ObservationCheck:
    """The test for one trained posterior network; reference statistics are computed once per n and cached."""

    def __init__(self, network, pool: Tensor, reference: Tensor) -> None:
        if pool.numel() == 0 or reference.numel() == 0:
            raise PriorfitValidationError(
                "this posterior holds no reference simulations (it was saved by priorfit < 0.1.1, or trained on too "
                "few simulations to hold some out): retrain it to use check()"
            )
        self.network = network
        self.pool, self.reference = pool, reference
        observations = pool[~torch.isnan(pool).any(-1)]
        self.mean, self.std = observations.mean(0), observations.std(0).clamp_min(1e-6)
        self.pool_observations = (observations - self.mean) / self.std
        self._by_n: dict[int, tuple] = {}

    @torch.no_grad()
    def __call__(self, x: Tensor) -> TypicalityResult:
        """Test one checked set x of shape (1, n, Dx)."""
        n = x.shape[1]
        whiteners, reference_statistics = self._reference(n)
        statistics = self._statistics(x.to(self.pool.dtype), whiteners)
        p_values = {
            name: conformal_p_value(float(statistics[name][0]), reference_statistics[name]) for name in statistics
        }
        return TypicalityResult(
            p_value=min(1.0, len(p_values) * min(p_values.values())),
            p_values=p_values,
            statistics={name: float(value[0]) for name, value in statistics.items()},
            num_reference=len(reference_statistics["observations"]),
        )

    def _reference(self, n: int) -> tuple:
        if n not in self._by_n:
            pool_sets, reference_sets = _sets_of(self.pool, n), _sets_of(self.reference, n)
            if len(pool_sets) < 2 or len(reference_sets) < 1:
                raise PriorfitValidationError(
                    f"check() needs held-out simulation sets of at least {n} observations and this posterior has "
                    f"{len(reference_sets)}; it was trained on sets of up to {self.pool.shape[1]}"
                )
            pool_features = self._set_features(pool_sets, (pool_sets - self.mean) / self.std)
            whiteners = {name: _Whitener(features) for name, features in pool_features.items()}
            self._by_n[n] = (whiteners, self._statistics(reference_sets, whiteners))
        return self._by_n[n]

    def _statistics(self, sets: Tensor, whiteners: dict) -> dict[str, Tensor]:
        """Per set of ``sets`` (S, n, Dx): the typicality statistics (larger: less typical)."""
        scaled = (sets - self.mean) / self.std
        per_observation = knn_log_distance(scaled.reshape(-1, scaled.shape[-1]), self.pool_observations, NEIGHBOURS)
        statistics = {"observations": per_observation.view(len(sets), -1).mean(1)}
        for name, features in self._set_features(sets, scaled).items():
            statistics[name] = whiteners[name].squared_distance(features)
        return statistics

    def _set_features(self, sets: Tensor, scaled: Tensor) -> dict[str, Tensor]:
        """Features of whole sets (raw, and z-scored as ``scaled``): their moments (mean and, for n > 1, log
        standard deviation per coordinate) and the network's own summary (set-encoder embedding) where it has one."""
        moments = [scaled.mean(1)] + ([scaled.std(1).clamp_min(1e-6).log()] if sets.shape[1] > 1 else [])
        features = {"moments": torch.cat(moments, dim=-1)}
        summary = getattr(self.network, "summary", None)
        if summary is not None:
            features["summary"] = summary(sets.to(self.network.x_scaler.mean.dtype)).to(scaled.dtype)
        return features


class _Whitener:
    """Squared Mahalanobis distance to the mean of pool features, with a small ridge on their covariance."""

    def __init__(self, features: Tensor) -> None:
        features = features.double()
        self.mean = features.mean(0)
        centred = features - self.mean
        covariance = centred.T @ centred / max(1, len(features) - 1)
        ridge = 1e-3 * covariance.diagonal().mean().clamp_min(1e-12)
        self.cholesky = torch.linalg.cholesky(covariance + ridge * torch.eye(len(covariance), dtype=features.dtype))

    def squared_distance(self, features: Tensor) -> Tensor:
        solved = torch.linalg.solve_triangular(self.cholesky, (features.double() - self.mean).T, upper=False)
        return (solved**2).sum(0)


def _sets_of(sets: Tensor, n: int) -> Tensor:
    """The sets with at least n observations (NaN rows are padding), cut to their first n."""
    present = ~torch.isnan(sets).any(-1)
    ordered = torch.argsort((~present).to(torch.int8), dim=1, stable=True)  # observations first, padding last
    compact = torch.take_along_dim(sets, ordered.unsqueeze(-1), dim=1)
    return compact[present.sum(1) >= n][:, :n]
