"""``GMM``: the Gaussian-mixture distribution users build priors from and Distribution Transformers return.

A leaf module (torch only), so priors and networks can both use it without knowing each other.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from priorfit.errors import PriorfitValidationError

__all__ = ["GMM", "sample_gmm", "lower_triangular"]


class GMM(MixtureSameFamily):
    """A (batch of) Gaussian mixture(s): weights (..., K), means (..., K, D), covariances (..., K, D, D).

    A ``torch.distributions`` mixture, so ``sample``, ``log_prob``, ``mean`` and ``variance`` work as
    usual. Components with weight 0 are allowed (padding); every covariance must be positive definite.

    Example:
        >>> prior = GMM(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.eye(2).expand(2, 2, 2))
        >>> prior.sample((5,)).shape, prior.num_components, prior.dim
        (torch.Size([5, 2]), 2, 2)
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor | None = None, *, scale_tril: Tensor | None = None):
        weights, means = _as_real_tensor(weights, "weights"), _as_real_tensor(means, "means")
        if means.dim() < 2:
            raise PriorfitValidationError(f"means must have shape (..., K, D), got {tuple(means.shape)}")
        if weights.shape != means.shape[:-1]:
            raise PriorfitValidationError(
                f"weights have shape {tuple(weights.shape)} but means {tuple(means.shape)}: expected weights "
                f"{tuple(means.shape[:-1])} (one per component)"
            )
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise PriorfitValidationError("GMM weights must be finite and non-negative")
        if not torch.allclose(weights.sum(-1), torch.ones((), dtype=weights.dtype), atol=1e-4):
            raise PriorfitValidationError(
                f"GMM weights must sum to 1, got sums {weights.sum(-1).flatten()[:4].tolist()}"
            )
        if not torch.isfinite(means).all():
            raise PriorfitValidationError("GMM means contain NaN or infinite values")
        dim = means.shape[-1]
        if (covs is None) == (scale_tril is None):
            raise PriorfitValidationError("give exactly one of covs and scale_tril")
        if scale_tril is None:
            covs = _as_real_tensor(covs, "covs").to(means.dtype)
            if covs.shape != (*means.shape, dim):
                raise PriorfitValidationError(
                    f"covs have shape {tuple(covs.shape)}; expected {(*means.shape, dim)} (D × D per component)"
                )
            if not torch.isfinite(covs).all() or not torch.allclose(covs, covs.mT, atol=1e-5, rtol=1e-4):
                raise PriorfitValidationError("GMM covariances must be finite and symmetric")
            scale_tril, info = torch.linalg.cholesky_ex(covs)
            if (info > 0).any():
                bad = torch.nonzero(info > 0)[0].tolist()
                raise PriorfitValidationError(f"GMM covariance at index {bad} is not positive definite")
        else:
            scale_tril = _as_real_tensor(scale_tril, "scale_tril").to(means.dtype)
            if scale_tril.shape != (*means.shape, dim):
                raise PriorfitValidationError(
                    f"scale_tril has shape {tuple(scale_tril.shape)}; expected {(*means.shape, dim)} "
                    "(one D × D factor per component)"
                )
            diagonal = torch.diagonal(scale_tril, dim1=-2, dim2=-1)
            lower = torch.equal(scale_tril, scale_tril.tril())
            if not (torch.isfinite(scale_tril).all() and lower and (diagonal > 0).all()):
                raise PriorfitValidationError(
                    "scale_tril must be finite Cholesky factors: lower triangular with a positive diagonal"
                )
        super().__init__(
            Categorical(probs=weights), MultivariateNormal(means, scale_tril=scale_tril), validate_args=False
        )

    @classmethod
    def from_logits(cls, logits: Tensor, means: Tensor, scale_tril: Tensor) -> GMM:
        """A GMM from unnormalised log-weights (−inf marks an unused component) and Cholesky factors; no checks."""
        gmm = cls.__new__(cls)
        MixtureSameFamily.__init__(
            gmm,
            Categorical(logits=logits, validate_args=False),
            MultivariateNormal(means, scale_tril=scale_tril, validate_args=False),
            validate_args=False,
        )
        return gmm

    @property
    def weights(self) -> Tensor:
        return self.mixture_distribution.probs

    @property
    def means(self) -> Tensor:
        return self.component_distribution.loc

    @property
    def scale_tril(self) -> Tensor:
        return self.component_distribution.scale_tril

    @property
    def covs(self) -> Tensor:
        return self.component_distribution.covariance_matrix

    @property
    def covariance(self) -> Tensor:
        """The mixture's full covariance matrix (..., D, D) (``variance`` is its diagonal)."""
        weights = self.weights.unsqueeze(-1).unsqueeze(-1)
        outer = self.means.unsqueeze(-1) * self.means.unsqueeze(-2)
        mean = self.mean
        return (weights * (self.covs + outer)).sum(-3) - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    @property
    def num_components(self) -> int:
        return self.means.shape[-2]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def __getitem__(self, index) -> GMM:
        """The mixture(s) at a batch index."""
        return GMM.from_logits(self.mixture_distribution.logits[index], self.means[index], self.scale_tril[index])


def _as_real_tensor(values, name: str) -> Tensor:
    """``values`` as a real floating tensor (float64 kept); strings, None and the like are a named error."""
    try:
        tensor = values if isinstance(values, Tensor) else torch.as_tensor(values, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError):
        raise PriorfitValidationError(f"GMM {name} must be a tensor of numbers, got {type(values).__name__}") from None
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise PriorfitValidationError(f"GMM {name} must be a tensor of real numbers, got {tensor.dtype}")
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def sample_gmm(gmm: GMM, generator: torch.Generator | None = None, num_samples: int | None = None) -> Tensor:
    """Seeded draws from a (batch of) GMM(s): (*batch, D), or (S, *batch, D) with ``num_samples``.

    (``Distribution.sample`` takes no generator, and priors must be reproducible from one.)
    """
    count = 1 if num_samples is None else num_samples
    probs = gmm.weights.reshape(-1, gmm.num_components)
    index = torch.multinomial(probs, count, replacement=True, generator=generator).T  # (S, B)
    batch = torch.arange(probs.shape[0])
    means, tril = (
        gmm.means.reshape(-1, gmm.num_components, gmm.dim),
        gmm.scale_tril.reshape(-1, gmm.num_components, gmm.dim, gmm.dim),
    )
    z = torch.randn(count, probs.shape[0], gmm.dim, generator=generator, dtype=means.dtype)
    draws = means[batch, index] + (tril[batch, index] @ z.unsqueeze(-1)).squeeze(-1)
    draws = draws.reshape(count, *gmm.batch_shape, gmm.dim)
    return draws[0] if num_samples is None else draws


def lower_triangular(values: Tensor, tril_index: Tensor, dim: int, diagonal_map) -> Tensor:
    """(…, D(D+1)/2) entries -> (…, D, D) lower-triangular matrices (Cholesky factors of a network's Gaussians),
    ``diagonal_map`` applied to the diagonal (e.g. softplus, to make it positive); ``tril_index`` is
    ``torch.tril_indices(D, D)``."""
    matrix = values.new_zeros(*values.shape[:-1], dim, dim)
    matrix[..., tril_index[0], tril_index[1]] = values
    diagonal = torch.diagonal(matrix, dim1=-2, dim2=-1)
    return matrix - torch.diag_embed(diagonal) + torch.diag_embed(diagonal_map(diagonal))
