"""The PFN set transformer: context points attend to the context, query points attend only to the context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorfit.errors import PriorfitValidationError

__all__ = ["PFNTransformer", "ContextAttentionLayer", "ContextCache"]


QUERY_BLOCK = 8  # row_block of forward_cached that makes answers independent of the other queries (estimators)
ATTENTION_ROWS = 1024  # tokens attending to a cached context at once: bounds the attention's memory for any n


def _attend_in_blocks(layer: ContextAttentionLayer, tokens: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """``layer.attend`` for tokens (B, m, d) in blocks of ATTENTION_ROWS rows (each row attends independently, so
    the blocks give the same answer as one call, in memory that does not grow with m)."""
    if tokens.shape[1] <= ATTENTION_ROWS:
        return layer.attend(tokens, keys, values)
    return torch.cat([layer.attend(block, keys, values) for block in tokens.split(ATTENTION_ROWS, dim=1)], dim=1)


@dataclass
class ContextCache:
    """A context encoded by :meth:`PFNTransformer.encode_context`: per layer, the keys and values
    (B, heads, n, d_head) every query attends to; ``batch`` and ``width`` are the context's B and Dx."""

    keys_values: list[tuple[Tensor, Tensor]]
    num_features: Tensor | None
    batch: int
    width: int

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.keys_values)


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

    def forward(
        self, tokens: Tensor, num_context: int, context_mask: Tensor | None = None, *, queries_only: bool = False
    ) -> Tensor:
        """``context_mask`` (B, num_context), True for real context points: padding is never attended to.
        ``queries_only``: return only the tokens after the context (B, m, d_model), and compute only those (the
        last layer: nothing reads the context's outputs there)."""
        normed = self.norm_attn(tokens)
        keys, values = self._keys_values(normed[:, :num_context])
        mask = None if context_mask is None else context_mask[:, None, None, :]
        if queries_only:
            tokens, normed = tokens[:, num_context:], normed[:, num_context:]
        return self._attend(tokens, normed, keys, values, mask)

    def context_keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The keys and values (B, heads, n, d_head) of context tokens (B, n, d_model): what every token attends to."""
        return self._keys_values(self.norm_attn(context))

    def attend(self, tokens: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """The layer's output for ``tokens`` (B, m, d_model) attending to given context keys and values."""
        return self._attend(tokens, self.norm_attn(tokens), keys, values)

    def _keys_values(self, normed_context: Tensor) -> tuple[Tensor, Tensor]:
        batch, num_context, _ = normed_context.shape
        keys, values = self.to_kv(normed_context).view(batch, num_context, 2, self.n_heads, -1).unbind(2)
        return keys.transpose(1, 2), values.transpose(1, 2)

    def _attend(
        self, tokens: Tensor, normed: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        batch, length, width = tokens.shape
        q = self.to_q(normed).view(batch, length, self.n_heads, -1).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
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
        self,
        x_context: Tensor,
        y_context: Tensor,
        x_query: Tensor,
        num_features: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """x_context (B, n, Dx), y_context (B, n) or (B, n, Dy), x_query (B, m, Dx) -> (B, m, num_outputs).

        ``num_features`` (B,) says how many leading columns of each dataset are real when a batch mixes
        feature counts (the rest zero padding), so each dataset is rescaled by its own count.
        ``context_mask`` (B, n), True for real context points, lets data sets with different context sizes share a
        batch: padded points are never attended to (every data set needs at least one real point).
        """
        x_context, y_context, x_query = self.check_inputs(x_context, y_context, x_query)
        num_context = x_context.shape[1]
        if context_mask is not None:
            context_mask = context_mask.to(device=x_context.device, dtype=torch.bool)
            if context_mask.shape != x_context.shape[:2] or not bool(context_mask.any(1).all()):
                raise PriorfitValidationError(
                    f"context_mask must be ({x_context.shape[0]}, {num_context}) with a real point in every row"
                )
        context = self.x_encoder(self._pad(x_context, num_features)) + self.y_encoder(y_context)
        query = self.x_encoder(self._pad(x_query, num_features))
        tokens = torch.cat([context, query], dim=1)
        *inner, last = self.layers
        for layer in inner:
            tokens = layer(tokens, num_context, context_mask)
        queries = last(tokens, num_context, context_mask, queries_only=True)
        return self.decoder(self.final_norm(queries))

    @torch.no_grad()
    def encode_context(self, x_context: Tensor, y_context: Tensor, num_features: Tensor | None = None) -> ContextCache:
        """Run the context through every layer once and keep each layer's keys and values: the context of
        ``forward`` never depends on the queries, so any number of query batches can then be answered with
        :meth:`forward_cached` at O(m·n) per layer, without recomputing the context (inference only)."""
        x_context, y_context, _ = self.check_inputs(x_context, y_context, x_context[:, :0])
        tokens = self.x_encoder(self._pad(x_context, num_features)) + self.y_encoder(y_context)
        keys_values = []
        for layer in self.layers:
            keys, values = layer.context_keys_values(tokens)
            keys_values.append((keys, values))
            tokens = _attend_in_blocks(layer, tokens, keys, values)
        return ContextCache(keys_values, num_features, x_context.shape[0], x_context.shape[-1])

    @torch.no_grad()
    def forward_cached(self, cache: ContextCache, x_query: Tensor, *, row_block: int = 1) -> Tensor:
        """Per-query outputs (B, m, num_outputs) for x_query (B, m, Dx) given an encoded context; equal to
        ``forward`` with that context (up to float rounding).

        ``row_block``: run the queries in whole blocks of this many rows (``QUERY_BLOCK`` makes a query's answer
        independent, to a float32 ulp or two, of the other queries it comes with; 1: no padding)."""
        if not isinstance(x_query, Tensor) or x_query.dim() != 3 or x_query.shape[::2] != (cache.batch, cache.width):
            shape = tuple(x_query.shape) if isinstance(x_query, Tensor) else type(x_query).__name__
            raise PriorfitValidationError(
                f"x_query must be ({cache.batch}, m, {cache.width}) for this encoded context, got {shape}"
            )
        if not bool(torch.isfinite(x_query).all()):
            raise PriorfitValidationError("x_query contains NaN or infinite values")
        num_queries = x_query.shape[1]
        # matrix kernels round a row differently depending on how many rows share the call (the tails of their
        # blocks); whole blocks of rows remove most of that (scikit-learn checks predictions on subsets at 1e-7)
        padding = -num_queries % row_block
        if padding and num_queries:
            x_query = torch.cat([x_query, x_query[:, -1:].expand(-1, padding, -1)], dim=1)
        tokens = self.x_encoder(self._pad(x_query, cache.num_features))
        for layer, (keys, values) in zip(self.layers, cache.keys_values):
            tokens = _attend_in_blocks(layer, tokens, keys, values)
        return self.decoder(self.final_norm(tokens[:, :num_queries]))

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
