"""The PFN set transformer: context points attend to the context, query points attend only to the context."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorfit.errors import PriorfitValidationError

__all__ = ["PFNTransformer", "ContextAttentionLayer"]


class ContextAttentionLayer(nn.Module):
    """Pre-norm transformer layer whose keys and values come from the first ``num_context`` tokens.

    Every token (context and query) attends to the context tokens only, so no mask is
    needed, query tokens never see each other, and attention costs O((n + m) · n)
    instead of O((n + m)²).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model)
        self.to_kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, tokens: Tensor, num_context: int) -> Tensor:
        batch, length, width = tokens.shape
        heads = self.n_heads
        normed = self.norm_attn(tokens)
        q = self.to_q(normed).view(batch, length, heads, -1).transpose(1, 2)
        k, v = self.to_kv(normed[:, :num_context]).view(batch, num_context, 2, heads, -1).unbind(2)
        attended = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))
        tokens = tokens + self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return tokens + self.ff(self.norm_ff(tokens))


class PFNTransformer(nn.Module):
    """Set-input transformer mapping (context x, context y, query x) to per-query outputs.

    Inputs with Dx < ``max_features`` are zero-padded and rescaled by sqrt(max_features / Dx)
    so their squared norm does not shrink with padding. There is no positional encoding: the
    output is invariant to permutations of the context and equivariant in the queries.

    Args:
        max_features: largest Dx the encoder accepts.
        num_outputs: size of each query's output (buckets of a bar distribution, or classes).
        d_model, n_heads, n_layers, d_ff: transformer width, heads, depth and MLP width.
        y_dim: number of target columns of the context.
        decoder_hidden: width of the output MLP (defaults to d_ff).

    Example:
        >>> net = PFNTransformer(max_features=2, num_outputs=10, d_model=32, n_heads=2, n_layers=1, d_ff=64)
        >>> net(torch.rand(3, 5, 2), torch.rand(3, 5), torch.rand(3, 4, 2)).shape
        torch.Size([3, 4, 10])
    """

    def __init__(
        self,
        *,
        max_features: int = 1,
        num_outputs: int = 1000,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int = 256,
        y_dim: int = 1,
        decoder_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if max_features < 1 or num_outputs < 1 or n_layers < 1:
            raise ValueError("max_features, num_outputs and n_layers must be positive")
        self.max_features = max_features
        self.num_outputs = num_outputs
        self.y_dim = y_dim
        self.x_encoder = nn.Linear(max_features, d_model)
        self.y_encoder = nn.Linear(y_dim, d_model)
        self.layers = nn.ModuleList(ContextAttentionLayer(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        hidden = decoder_hidden or d_ff
        self.decoder = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, num_outputs))

    def forward(
        self, x_context: Tensor, y_context: Tensor, x_query: Tensor, num_features: Tensor | None = None
    ) -> Tensor:
        """x_context (B, n, Dx), y_context (B, n) or (B, n, Dy), x_query (B, m, Dx) -> (B, m, num_outputs).

        ``num_features`` (B,) says how many leading columns of each dataset are real when a batch mixes
        feature counts (the rest zero padding), so each dataset is rescaled by its own count.
        """
        x_context, y_context, x_query = self.check_inputs(x_context, y_context, x_query)
        num_context = x_context.shape[1]
        context = self.x_encoder(self._pad(x_context, num_features)) + self.y_encoder(y_context)
        query = self.x_encoder(self._pad(x_query, num_features))
        tokens = torch.cat([context, query], dim=1)
        for layer in self.layers:
            tokens = layer(tokens, num_context)
        return self.decoder(self.final_norm(tokens[:, num_context:]))

    def check_inputs(self, x_context: Tensor, y_context: Tensor, x_query: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Shapes, feature count and finiteness, with errors that name the problem."""
        for name, value in (("x_context", x_context), ("x_query", x_query)):
            if not isinstance(value, Tensor) or value.dim() != 3:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise PriorfitValidationError(f"{name} must be a (B, N, Dx) tensor, got {shape}")
        if y_context.dim() == 2:
            y_context = y_context.unsqueeze(-1)
        shape_ok = y_context.dim() == 3 and y_context.shape[:2] == x_context.shape[:2]
        if not shape_ok or y_context.shape[-1] != self.y_dim:
            raise PriorfitValidationError(
                f"y_context must be (B, n) or (B, n, {self.y_dim}) matching x_context {tuple(x_context.shape)}, "
                f"got {tuple(y_context.shape)}"
            )
        if x_query.shape[0] != x_context.shape[0] or x_query.shape[-1] != x_context.shape[-1]:
            raise PriorfitValidationError(
                f"x_query {tuple(x_query.shape)} must share batch size and Dx with x_context {tuple(x_context.shape)}"
            )
        num_features = x_context.shape[-1]
        if not 1 <= num_features <= self.max_features:
            raise PriorfitValidationError(
                f"too many features: got Dx={num_features}, this network takes 1..{self.max_features}"
            )
        if x_context.shape[1] == 0:
            raise PriorfitValidationError("the context is empty: give at least one context point")
        for name, value in (("x_context", x_context), ("y_context", y_context), ("x_query", x_query)):
            if not bool(torch.isfinite(value).all()):
                raise PriorfitValidationError(f"{name} contains NaN or infinite values")
        return x_context, y_context.to(x_context.dtype), x_query

    def _pad(self, x: Tensor, num_features: Tensor | None = None) -> Tensor:
        width = x.shape[-1]
        padded = x if width == self.max_features else F.pad(x, (0, self.max_features - width))
        if num_features is None:
            return padded if width == self.max_features else padded * (self.max_features / width) ** 0.5
        used = num_features.to(x.dtype).clamp(1, width).view(-1, 1, 1)
        return padded * (self.max_features / used).sqrt()
