"""Amortized posterior networks q(θ | x_1..n): a permutation-invariant set encoder and a density head.

``SetEncoder`` embeds each observation, lets the observations attend to each other (one SDPA call per
layer) and mean-pools, so the embedding is invariant to their order and works for any n.
``FlowPosterior`` feeds it to zuko's neural spline flow; ``GMMPosterior`` to a Gaussian-mixture head.
Both are zuko-style: ``net(x)`` returns a torch Distribution over θ with batch shape (B,).
Inputs and parameters are z-scored with statistics of the training simulations (buffers), and the
returned distribution is mapped back to θ's units (its log_prob includes the Jacobian).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import zuko
from torch import Tensor, nn
from torch.distributions import (
    AffineTransform,
    Categorical,
    Distribution,
    MixtureSameFamily,
    MultivariateNormal,
    TransformedDistribution,
)

from priorfit._validation import check_observation_sets
from priorfit.errors import InvalidHyperparameterError
from priorfit.gmm import lower_triangular
from priorfit.networks.coupling import coupling_spline_flow
from priorfit.networks.embeddings import build_embedding

__all__ = ["SetEncoder", "PosteriorNetwork", "FlowPosterior", "GMMPosterior", "Standardizer"]


class Standardizer(nn.Module):
    """Per-dimension z-scoring with statistics fitted once on training data (kept as buffers)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, values: Tensor) -> Standardizer:
        flat = values.reshape(-1, values.shape[-1]).double()
        flat = flat[~torch.isnan(flat).any(-1)]  # padding rows of variable-size sets
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-6) if len(flat) > 1 else torch.ones_like(self.std))
        return self

    def forward(self, values: Tensor) -> Tensor:
        return (values - self.mean) / self.std


class _SetLayer(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm_ff = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, length, width = tokens.shape
        q, k, v = self.qkv(self.norm_attn(tokens)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(batch, length, width)
        tokens = tokens + self.out(attended)
        return tokens + self.ff(self.norm_ff(tokens))


class SetEncoder(nn.Module):
    """x (B, n, Dx) -> embedding (B, embed_dim), invariant to the order of the n observations.

    Args:
        x_dim: features per observation.
        width, heads, layers: the per-observation transformer (``layers=0`` gives plain DeepSets).
        embed_dim: size of the pooled embedding.
        embedding: what each observation becomes first (``priorfit.networks.embeddings``): None or ``{"kind":
            "mlp", "hidden": [...]}`` for feature vectors, ``{"kind": "cnn", "channels": C, ...}`` for time series.
    """

    def __init__(
        self,
        x_dim: int,
        *,
        width: int = 64,
        heads: int = 4,
        layers: int = 2,
        embed_dim: int = 64,
        embedding: dict | None = None,
    ) -> None:
        super().__init__()
        self.x_dim = x_dim
        self.embed = build_embedding(x_dim, width, embedding)
        self.layers = nn.ModuleList(_SetLayer(width, heads) for _ in range(layers))
        # mean pooling forgets how many observations there were, and the posterior's width depends on it:
        # log n is appended to the pooled vector
        self.pool = nn.Sequential(nn.Linear(width + 1, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        """Rows of x that contain NaN are padding (sets of different sizes in one batch) and are skipped."""
        present = ~torch.isnan(x).any(-1)  # (B, n)
        tokens = self.embed(torch.nan_to_num(x, nan=0.0))
        mask = None if bool(present.all()) else present[:, None, None, :]  # keys a token may attend to
        for layer in self.layers:
            tokens = layer(tokens, mask)
        weights = present.unsqueeze(-1).to(tokens.dtype)
        count = weights.sum(1).clamp_min(1.0)
        return self.pool(torch.cat([(tokens * weights).sum(1) / count, count.log()], dim=-1))


class PosteriorNetwork(nn.Module):
    """The base of the set-encoder posterior families: input checks, z-scoring, the set encoder, the loss.

    A new family subclasses it, names itself (``estimator = "my-kind"``, what ``AmortizedPosterior`` takes) and
    implements ``head(context) -> Distribution`` over standardized θ (batch shape (B,)); one line in
    ``priorfit.registry.FAMILIES`` makes it trainable, savable and loadable.
    """

    has_density = True  # a posterior network's declared capability: ``distribution(x)`` with sample and log_prob
    loss_is_nll = True  # its training loss is −log q(θ | x) (validation logs it as val/nll)

    def __init__(self, theta_dim: int, x_dim: int, encoder: dict | None) -> None:
        super().__init__()
        self.theta_dim, self.x_dim = theta_dim, x_dim
        self.encoder = SetEncoder(x_dim, **(encoder or {}))
        self.embed_dim = self.encoder.pool[-1].out_features
        self.x_scaler = Standardizer(x_dim)
        self.theta_scaler = Standardizer(theta_dim)

    def fit_standardization(self, theta: Tensor, x: Tensor) -> None:
        """Fit the z-scoring of θ and x on the training simulations (call once before training)."""
        self.theta_scaler.fit(theta)
        self.x_scaler.fit(x)

    def check_x(self, x: Tensor) -> Tensor:
        return check_observation_sets(x, self.x_dim).to(self.x_scaler.mean.dtype)

    def _to_theta_units(self, standardized: Distribution) -> Distribution:
        transform = AffineTransform(self.theta_scaler.mean, self.theta_scaler.std, event_dim=1)
        return TransformedDistribution(standardized, [transform])

    def forward(self, x: Tensor) -> Distribution:
        """q(θ | x) for checked user input x (n, Dx) or (B, n, Dx): batch shape (B,), event shape (Dθ,)."""
        return self.distribution(self.check_x(x))

    def summary(self, x: Tensor) -> Tensor:
        """The set encoder's embedding (B, embed_dim) of observation sets (B, n, Dx): what the head conditions on."""
        return self.encoder(self.x_scaler(x))

    def training_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """−log q(θ | x) per row: the task's loss."""
        return -self.distribution(x).log_prob(theta)

    def distribution(self, x: Tensor) -> Distribution:
        """q(θ | x) without input checks; NaN rows of x are padding (the training path)."""
        return self._to_theta_units(self.head(self.summary(x)))

    def head(self, context: Tensor) -> Distribution:
        raise NotImplementedError


class FlowPosterior(PosteriorNetwork):
    """Set encoder + neural spline flow (``transforms`` spline transforms, ``hidden`` MLP widths, ``bins`` bins).

    ``coupling=True``: each transform splits θ in halves and one network pass gives the spline of one half from the
    other (as sbi's ``nsf``), with a learned linear mixing between transforms (``priorfit.networks.coupling``):
    sampling costs one pass per transform whatever θ's dimension. ``coupling=False`` (the class default, kept so
    checkpoints written before coupling flows existed rebuild unchanged): zuko's masked autoregressive NSF;
    ``passes`` is then its number of passes to invert a transform (None: one per θ dimension, the slowest to sample
    in many dimensions; 2: zuko's own coupling variant). ``log_prob`` is one pass per transform either way.
    """

    estimator = "flow"  # the AmortizedPosterior estimator name of this family

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        *,
        encoder: dict | None = None,
        transforms: int = 8,
        hidden: tuple[int, ...] = (128, 128),
        bins: int = 10,
        passes: int | None = None,
        coupling: bool = False,
    ) -> None:
        super().__init__(theta_dim, x_dim, encoder)
        if passes is not None and (isinstance(passes, bool) or not isinstance(passes, int) or passes < 1):
            raise InvalidHyperparameterError(f"passes must be None (autoregressive) or an integer >= 1, got {passes!r}")
        if not isinstance(coupling, bool):
            raise InvalidHyperparameterError(f"coupling must be True or False, got {coupling!r}")
        if coupling and passes is not None:
            raise InvalidHyperparameterError(
                "passes applies to the autoregressive flow (coupling=False); a coupling flow inverts each transform "
                "in one pass. Drop passes, or set coupling=False."
            )
        self.coupling = coupling
        if coupling:
            self.flow = coupling_spline_flow(
                theta_dim, self.embed_dim, transforms=transforms, hidden=tuple(hidden), bins=bins
            )
        else:
            self.flow = zuko.flows.NSF(
                theta_dim,
                context=self.embed_dim,
                bins=bins,
                transforms=transforms,
                hidden_features=tuple(hidden),
                **({} if passes is None else {"passes": passes}),
            )

    def head(self, context: Tensor) -> Distribution:
        return self.flow(context)


class GMMPosterior(PosteriorNetwork):
    """Set encoder + mixture of ``components`` full-covariance Gaussians (Cholesky factors, positive diagonal)."""

    estimator = "gmm"  # the AmortizedPosterior estimator name of this family

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        *,
        encoder: dict | None = None,
        components: int = 5,
        hidden: int = 128,
    ) -> None:
        super().__init__(theta_dim, x_dim, encoder)
        self.components = components
        tril = theta_dim * (theta_dim + 1) // 2
        self.net = nn.Sequential(
            nn.Linear(self.embed_dim, hidden), nn.GELU(), nn.Linear(hidden, components * (1 + theta_dim + tril))
        )
        self.register_buffer("tril_index", torch.tril_indices(theta_dim, theta_dim), persistent=False)

    def head(self, context: Tensor) -> Distribution:
        batch, k, d = context.shape[0], self.components, self.theta_dim
        out = self.net(context).view(batch, k, -1)
        logits, means, raw = out[..., 0], out[..., 1 : 1 + d], out[..., 1 + d :]
        scale_tril = lower_triangular(raw, self.tril_index, d, lambda diagonal: F.softplus(diagonal) + 1e-3)
        return MixtureSameFamily(Categorical(logits=logits), MultivariateNormal(means, scale_tril=scale_tril))
