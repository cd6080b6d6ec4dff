"""The Distribution Transformer: a Gaussian-mixture prior and a data set in, a Gaussian-mixture posterior out.

After Whittle, Ziomek, Rawling & Osborne, "Distribution Transformers: Fast Approximate Bayesian Inference
With On-The-Fly Prior Adaptation" (2025). Each prior component is a token (log-weight, mean, Cholesky
factor); component tokens attend to each other and to the data tokens, which attend among themselves
(no positional encoding: the data set is a set). The output tokens are read as the posterior mixture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import MixtureSameFamily

from priorfit.domain import TrainingDomain
from priorfit.errors import PriorfitValidationError
from priorfit.gmm import GMM, lower_triangular
from priorfit.networks.modes import evaluating

__all__ = ["DistributionTransformer", "MessageHead", "MixtureHead"]


class _Attention(nn.Module):
    """Pre-norm multi-head attention from ``tokens`` to ``memory`` (``mask``: (B, M) True where memory is real)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(d_model)
        self.norm_memory = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model)
        self.to_kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, tokens: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        batch, length, width = tokens.shape
        q = self.to_q(self.norm(tokens)).view(batch, length, self.n_heads, -1).transpose(1, 2)
        k, v = self.to_kv(self.norm_memory(memory)).view(batch, memory.shape[1], 2, self.n_heads, -1).unbind(2)
        attn_mask = None if mask is None else mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
        return tokens + self.out(attended.transpose(1, 2).reshape(batch, length, width))


class _FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, tokens: Tensor) -> Tensor:
        return tokens + self.net(tokens)


class _Layer(nn.Module):
    """Data self-attention; component self-attention, then component → data cross-attention."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.data_self = _Attention(d_model, n_heads)
        self.data_ff = _FeedForward(d_model, d_ff)
        self.component_self = _Attention(d_model, n_heads)
        self.component_cross = _Attention(d_model, n_heads)
        self.component_ff = _FeedForward(d_model, d_ff)

    def forward(self, components: Tensor, data: Tensor, component_mask: Tensor) -> tuple[Tensor, Tensor]:
        data = self.data_ff(self.data_self(data, data))
        components = self.component_self(components, components, component_mask)
        components = self.component_ff(self.component_cross(components, data))
        return components, data


def _tril_size(dim: int) -> int:
    return dim * (dim + 1) // 2


class MixtureHead(nn.Module):
    """Output tokens -> a Gaussian mixture (a ``torch.distributions`` object).

    With ``relative=True`` each output token refines one prior component: logit_k + Δ, mean μ_k + L_k Δμ,
    Cholesky factor L_k · L_Δ (L_Δ lower triangular with a positive diagonal), so the untrained head
    returns the prior itself. Otherwise it predicts absolute log-weights, means and Cholesky factors.
    """

    def __init__(self, d_model: int, dim: int, *, relative: bool) -> None:
        super().__init__()
        self.dim = dim
        self.relative = relative
        self.proj = nn.Linear(d_model, 1 + dim + _tril_size(dim))
        if relative:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.register_buffer("tril_index", torch.tril_indices(dim, dim), persistent=False)

    def _lower(self, values: Tensor) -> Tensor:
        # exp keeps the diagonal positive; the floor keeps the covariance well conditioned
        return lower_triangular(values, self.tril_index, self.dim, lambda d: d.clamp(-7, 7).exp() + 1e-4)

    def mixture_parameters(
        self, tokens: Tensor, prior_logits: Tensor | None = None, prior_means=None, prior_tril=None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, means, Cholesky factors) of the posterior mixture."""
        out = self.proj(tokens)
        logit, mean, tril = out[..., 0], out[..., 1 : 1 + self.dim], self._lower(out[..., 1 + self.dim :])
        if self.relative:
            logit = prior_logits + logit
            mean = prior_means + (prior_tril @ mean.unsqueeze(-1)).squeeze(-1)
            tril = prior_tril @ tril
        return logit, mean, tril

    def forward(self, tokens: Tensor, prior_logits=None, prior_means=None, prior_tril=None) -> MixtureSameFamily:
        return GMM.from_logits(*self.mixture_parameters(tokens, prior_logits, prior_means, prior_tril))


class MessageHead(nn.Module):
    """Output tokens -> a Gaussian mixture by a learned Gaussian likelihood message per prior component.

    Each token k gives a message N(θ; y_k, H_k⁻¹) (H_k = B_k B_kᵀ, B_k lower triangular with a softplus
    diagonal, so H_k may be near singular) that multiplies prior component N(μ_k, L_k L_kᵀ) in closed form:
    in the component's whitened coordinates z = L_k⁻¹(θ − μ_k) the posterior has precision Q = I + L_kᵀ H_k L_k
    and mean Q⁻¹ L_kᵀ H_k (y_k − μ_k). Its weight is the prior weight times the Gaussian evidence
    N(y_k; μ_k, Σ_k + H_k⁻¹) (without the det H_k factor) times a learned correction.

    Why: the network predicts a likelihood, not a posterior, so an error in the message moves the posterior in
    proportion to the information it adds. A narrow prior (late in a filter) gets a small, equally small-error
    update, and errors no longer accumulate step after step; for a linear-Gaussian likelihood the exact message
    does not depend on the prior at all.
    """

    def __init__(self, d_model: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(d_model, 1 + dim + _tril_size(dim))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("tril_index", torch.tril_indices(dim, dim), persistent=False)

    def mixture_parameters(
        self, tokens: Tensor, prior_logits: Tensor, prior_means: Tensor, prior_tril: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, means, Cholesky factors) of the posterior mixture."""
        out = self.proj(tokens)
        correction, target = out[..., 0], out[..., 1 : 1 + self.dim]
        factor = lower_triangular(out[..., 1 + self.dim :], self.tril_index, self.dim, F.softplus)
        residual = (target - prior_means).unsqueeze(-1)  # y_k − μ_k
        weighted = factor @ factor.transpose(-1, -2)  # H_k
        projected = prior_tril.transpose(-1, -2) @ weighted  # L_kᵀ H_k
        precision = projected @ prior_tril + torch.eye(self.dim, dtype=tokens.dtype, device=tokens.device)  # Q ⪰ I
        chol = torch.linalg.cholesky(precision)
        information = projected @ residual  # g = L_kᵀ H_k (y_k − μ_k)
        mean_z = torch.cholesky_solve(information, chol)
        mean = prior_means + (prior_tril @ mean_z).squeeze(-1)
        tril = prior_tril @ torch.linalg.cholesky(torch.cholesky_inverse(chol))
        # log N(y; μ, Σ + H⁻¹) + ½ log det H = −½ [rᵀHr − gᵀQ⁻¹g] − ½ log det Q, finite for singular H
        quadratic = (residual * (weighted @ residual)).sum((-2, -1)) - (information * mean_z).sum((-2, -1))
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        logit = prior_logits + correction - 0.5 * (quadratic + log_det)
        return logit, mean, tril

    def forward(
        self, tokens: Tensor, prior_logits: Tensor, prior_means: Tensor, prior_tril: Tensor
    ) -> MixtureSameFamily:
        return GMM.from_logits(*self.mixture_parameters(tokens, prior_logits, prior_means, prior_tril))


class DistributionTransformer(nn.Module):
    """Gaussian-mixture prior + data set -> Gaussian-mixture posterior, for any prior in the trained family.

    Args:
        theta_dim: D, the parameter dimension.
        x_dim: size of one observation's features (what ``likelihood.features`` returns, if bound).
        max_components: most prior components the network was trained with (more raise an error).
        output_components: None (one posterior component per prior component, refined from it) or a number
            M of posterior components read from M learned output tokens.
        posterior_head: with one posterior component per prior component, how a token becomes its posterior
            component: "relative" (a learned refinement of the prior component, ``MixtureHead``) or "message"
            (a learned Gaussian likelihood message multiplied in closed form, ``MessageHead``).
        d_model, n_heads, n_layers, d_ff: transformer sizes.

    A training task binds the likelihood (``bind_likelihood``): ``features(x)`` embeds raw observations and,
    when the model is shift-equivariant (linear-Gaussian), ``center(x, shift)`` lets the network work in
    coordinates centred on the prior mean, so priors far from the training means are no harder.
    """

    def __init__(
        self,
        *,
        theta_dim: int,
        x_dim: int,
        max_components: int = 3,
        output_components: int | None = None,
        posterior_head: str = "relative",
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int = 256,
    ) -> None:
        super().__init__()
        self.theta_dim = theta_dim
        self.x_dim = x_dim
        self.max_components = max_components
        self.output_components = output_components
        self.component_embed = nn.Linear(1 + theta_dim + _tril_size(theta_dim), d_model)
        self.data_embed = nn.Linear(x_dim, d_model)
        self.null_data = nn.Parameter(torch.zeros(1, 1, d_model))  # so a data set of size 0 still has a key
        self.layers = nn.ModuleList(_Layer(d_model, n_heads, d_ff) for _ in range(n_layers))
        if posterior_head not in ("relative", "message"):
            raise PriorfitValidationError(f"posterior_head must be 'relative' or 'message', got {posterior_head!r}")
        if output_components is None:
            self.head = (
                MessageHead(d_model, theta_dim)
                if posterior_head == "message"
                else MixtureHead(d_model, theta_dim, relative=True)
            )
        else:
            self.output_queries = nn.Parameter(torch.randn(1, output_components, d_model) / math.sqrt(d_model))
            self.output_attention = _Attention(d_model, n_heads)
            self.output_ff = _FeedForward(d_model, d_ff)
            self.head = MixtureHead(d_model, theta_dim, relative=False)
        self.register_buffer("tril_index", torch.tril_indices(theta_dim, theta_dim), persistent=False)
        self.likelihood = None
        self.domain = TrainingDomain()  # filled by the task from its prior (and the training data's sizes)
        self.card = None  # the calibration card of the checkpoint it was loaded from (priorfit.card)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, map_location: str = "cpu") -> DistributionTransformer:
        """Deprecated: use ``priorfit.load(name_or_path)``, which returns this network for a ``DTTask`` checkpoint."""
        import warnings

        # kept one release for existing callers; the only upward import of the networks (ARCHITECTURE.md)
        from priorfit.checkpoint import load_task

        warnings.warn(
            "DistributionTransformer.from_pretrained is deprecated and will be removed in priorfit 0.2; use "
            "priorfit.load(name_or_path)",
            DeprecationWarning,
            2,
        )
        task = load_task(name_or_path, map_location=map_location)
        network = getattr(task, "network", None)
        if not isinstance(network, cls):
            raise PriorfitValidationError(f"{name_or_path} is a {type(task).__name__}, not a Distribution Transformer")
        return network.eval()

    def bind_likelihood(self, likelihood) -> DistributionTransformer:
        """Attach the observation model (``features(x)``, optionally ``center(x, shift)``)."""
        self.likelihood = likelihood
        return self

    def _component_tokens(self, logits: Tensor, means: Tensor, tril: Tensor) -> Tensor:
        diagonal = torch.diagonal(tril, dim1=-2, dim2=-1)
        entries = tril[..., self.tril_index[0], self.tril_index[1]]
        is_diagonal = self.tril_index[0] == self.tril_index[1]
        entries = torch.where(is_diagonal, torch.log(entries.abs().clamp_min(1e-8)), entries / diagonal.mean(-1, True))
        log_weight = torch.log_softmax(logits, -1).clamp_min(-30).unsqueeze(-1)
        return self.component_embed(torch.cat([log_weight, means, entries], dim=-1))

    def forward(self, prior_logits: Tensor, prior_means: Tensor, prior_tril: Tensor, x: Tensor) -> MixtureSameFamily:
        """Posterior mixture with batch shape (B,): prior (B, K) / (B, K, D) / (B, K, D, D), x (B, n, Dx_raw)."""
        return GMM.from_logits(*self.posterior_parameters(prior_logits, prior_means, prior_tril, x))

    def posterior_parameters(
        self, prior_logits: Tensor, prior_means: Tensor, prior_tril: Tensor, x: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``forward``'s posterior as (logits, means, Cholesky factors), without building a distribution."""
        mask = torch.isfinite(prior_logits)
        shift = None
        if self.likelihood is not None and hasattr(self.likelihood, "center"):
            weights = torch.softmax(prior_logits, -1).unsqueeze(-1)
            shift = (weights * prior_means).sum(-2).detach()
            x = self.likelihood.center(x, shift)
            prior_means = prior_means - shift.unsqueeze(-2)
        features = self.likelihood.features(x) if self.likelihood is not None else x
        components = self._component_tokens(prior_logits, prior_means, prior_tril)
        data = torch.cat([self.null_data.expand(x.shape[0], 1, -1), self.data_embed(features)], dim=1)
        for layer in self.layers:
            components, data = layer(components, data, mask)
        if self.output_components is None:
            logits, means, tril = self.head.mixture_parameters(components, prior_logits, prior_means, prior_tril)
        else:
            memory = torch.cat([components, data], dim=1)
            memory_mask = torch.cat([mask, mask.new_ones(data.shape[:2])], dim=1)
            queries = self.output_queries.expand(x.shape[0], -1, -1)
            logits, means, tril = self.head.mixture_parameters(
                self.output_ff(self.output_attention(queries, memory, memory_mask))
            )
        if shift is not None:
            means = means + shift.unsqueeze(-2)
        return logits, means, tril

    # ------------------------------------------------------------------------------------ user API
    def _check(self, prior, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
        for name in ("mixture_distribution", "component_distribution"):
            if not hasattr(prior, name):
                raise PriorfitValidationError(f"prior must be a GMM (priorfit.GMM), got {type(prior).__name__}")
        means = prior.component_distribution.loc
        if means.shape[-1] != self.theta_dim:
            raise PriorfitValidationError(
                f"prior has dimension {means.shape[-1]} but this network was trained for dimension {self.theta_dim}"
            )
        if means.shape[-2] > self.max_components:
            raise PriorfitValidationError(
                f"prior has {means.shape[-2]} components but this network was trained with at most "
                f"{self.max_components}; merge or prune components first"
            )
        try:
            x = torch.as_tensor(x, dtype=means.dtype) if not isinstance(x, (str, bytes, dict)) else None
        except (TypeError, ValueError, RuntimeError):
            x = None
        if x is None:
            raise PriorfitValidationError("x must be a tensor or array of observations (n, Dx)")
        one_prior, one_data_set = means.dim() == 2, x.dim() < 3
        raw_dim = getattr(self.likelihood, "x_dim", self.x_dim)
        if one_prior and one_data_set:  # (n, Dx), or a single observation (Dx,)
            x = x.reshape(1, *x.shape) if x.dim() == 2 else x.reshape(1, 1, -1)
        if x.dim() != 3 or x.shape[-1] != raw_dim:
            raise PriorfitValidationError(
                f"x must have shape (n, {raw_dim}) for one prior or (B, n, {raw_dim}) for a batch, got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise PriorfitValidationError("x contains NaN or infinite values")
        logits = prior.mixture_distribution.logits
        tril = prior.component_distribution.scale_tril
        if one_prior:  # one prior for every data set in x (e.g. one GP hyperprior, many query points)
            logits, means, tril = (
                value.unsqueeze(0).expand(x.shape[0], *value.shape) for value in (logits, means, tril)
            )
        if x.shape[0] != means.shape[0]:
            raise PriorfitValidationError(f"{means.shape[0]} priors but {x.shape[0]} data sets")
        return logits, means, tril, x, one_prior and one_data_set

    def _check_domain(self, logits: Tensor, means: Tensor, tril: Tensor, x: Tensor) -> None:
        """Warn when a prior's component means or scales or the number of observations leave what training saw."""
        real = torch.isfinite(logits)
        component_sd = tril.norm(dim=-1)[real]  # rows of L: per-coordinate sd of a component
        advice = "Rescale θ (and the likelihood with it) so the prior's components fall inside, or retrain wider."
        self.domain.check("prior_sd", component_sd, advice=advice)
        self.domain.check("prior_mean", means[real], advice=advice)
        if x.shape[1]:
            advice = "Split the observations into batches and filter (dt.filter), each batch a trained size."
            self.domain.check("num_observations", x.shape[1], advice=advice)

    @torch.no_grad()
    def update(self, prior, x):
        """The posterior GMM after observing ``x``: (n, Dx) for one prior, (B, n, Dx) for a batch of B priors or
        for one prior and B data sets (a posterior per data set)."""
        logits, means, tril, x, single = self._check(prior, x)
        self._check_domain(logits, means, tril, x)
        if x.shape[1] == 0:  # no observations: the posterior is the prior, exactly
            one_prior_for_many = prior.component_distribution.loc.dim() == 2 and not single
            return GMM.from_logits(logits, means, tril) if one_prior_for_many else prior
        with evaluating(self):
            parameters = self.posterior_parameters(logits.float(), means.float(), tril.float(), x.float())
        if single:
            parameters = tuple(value[0] for value in parameters)
        return GMM.from_logits(*parameters)

    def filter(self, prior, stream: Iterable) -> list:
        """Sequential updates: each batch of observations turns the current posterior into the next prior."""
        if isinstance(stream, (str, bytes)) or not hasattr(stream, "__iter__"):
            raise PriorfitValidationError(
                f"stream must be an iterable of observation batches (e.g. x.split(1)), got {type(stream).__name__}"
            )
        posteriors = []
        current = prior
        for x in stream:
            current = self.update(current, x)
            posteriors.append(current)
        return posteriors
