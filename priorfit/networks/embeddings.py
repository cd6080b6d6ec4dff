"""What each observation becomes before the set encoder's observations meet: its per-observation embedding.

``mlp`` (the default) suits a vector of summary features. ``cnn`` suits a time series stored flat in x: ``steps``
time points of ``channels`` series, time-major (x = [s0(t0), s1(t0), ..., s0(t1), s1(t1), ...]), the layout of
``trajectory.reshape(-1)`` for a (steps, channels) trajectory. It runs 1-D convolutions over time (each halving
the series by max-pooling) and then a linear map of the whole pooled series, so the embedding sees local shapes
and where in time they happen.

Chosen by the set encoder's config: ``AmortizedPosterior("flow", network={"encoder": {"embedding": {"kind": "cnn",
"channels": 2}}})`` or ``network.encoder.embedding={kind:cnn,channels:2}`` on the command line. The config is
plain data (a kind from ``EMBEDDINGS`` and its sizes), so a checkpoint that stores it names no code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from priorfit.errors import InvalidHyperparameterError

__all__ = ["MLPEmbedding", "TimeSeriesCNN", "EMBEDDINGS", "build_embedding"]


class MLPEmbedding(nn.Sequential):
    """x (..., x_dim) -> (..., width) through GELU layers of the ``hidden`` widths (default: one of ``width``).

    With the default it is the set encoder's original embedding, parameter for parameter (same state-dict keys),
    so checkpoints written before embeddings were selectable load unchanged."""

    def __init__(self, x_dim: int, width: int, *, hidden: tuple[int, ...] | list[int] | None = None) -> None:
        sizes = [x_dim, *(hidden if hidden is not None else (width,))]
        if any(not isinstance(size, int) or size < 1 for size in sizes):
            raise InvalidHyperparameterError(f"embedding hidden widths must be positive integers, got {hidden!r}")
        layers: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(size_in, size_out), nn.GELU()]
        super().__init__(*layers, nn.Linear(sizes[-1], width))


class TimeSeriesCNN(nn.Module):
    """x (..., steps · channels), time-major -> (..., width): convolutions over time, then a linear map.

    Args:
        x_dim: steps · channels.
        width: output size (the set encoder's width).
        channels: series per observation.
        filters: output channels of each convolution; each is followed by GELU and max-pooling by 2 in time.
        kernel: convolution width in time steps (odd: the series keeps its length before pooling).
    """

    def __init__(
        self,
        x_dim: int,
        width: int,
        *,
        channels: int = 1,
        filters: tuple[int, ...] | list[int] = (16, 32),
        kernel: int = 5,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1 or x_dim % channels:
            raise InvalidHyperparameterError(
                f"a cnn embedding needs x_dim = steps * channels; x has {x_dim} values per observation, which "
                f"channels={channels!r} does not divide. Set channels to the number of series in each observation."
            )
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise InvalidHyperparameterError(f"kernel must be a positive odd integer, got {kernel!r}")
        if not filters or any(not isinstance(f, int) or f < 1 for f in filters):
            raise InvalidHyperparameterError(f"filters must be a non-empty list of positive integers, got {filters!r}")
        self.channels, self.steps = channels, x_dim // channels
        pooled_steps = self.steps // 2 ** len(filters)
        if pooled_steps < 1:
            raise InvalidHyperparameterError(
                f"a series of {self.steps} time steps is too short for {len(filters)} convolutions that each halve "
                f"it; use at most {max(0, self.steps.bit_length() - 1)} filters"
            )
        layers: list[nn.Module] = []
        size_in = channels
        for size_out in filters:
            layers += [nn.Conv1d(size_in, size_out, kernel, padding=kernel // 2), nn.GELU(), nn.MaxPool1d(2)]
            size_in = size_out
        self.convolutions = nn.Sequential(*layers)
        self.out = nn.Sequential(
            nn.Flatten(), nn.Linear(size_in * pooled_steps, width), nn.GELU(), nn.Linear(width, width)
        )

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        series = x.reshape(-1, self.steps, self.channels).transpose(1, 2)  # (N, channels, steps)
        return self.out(self.convolutions(series)).view(*lead, -1)


EMBEDDINGS: dict[str, type[nn.Module]] = {"mlp": MLPEmbedding, "cnn": TimeSeriesCNN}


def build_embedding(x_dim: int, width: int, config: Mapping[str, Any] | None) -> nn.Module:
    """The embedding a config names (``{"kind": "cnn", "channels": 2, ...}``; None: the default MLP)."""
    if config is None:
        return MLPEmbedding(x_dim, width)
    if not isinstance(config, Mapping):
        raise InvalidHyperparameterError(f"embedding must be a dict with a 'kind', got {type(config).__name__}")
    options = dict(config)
    kind = options.pop("kind", "mlp")
    if kind not in EMBEDDINGS:
        raise InvalidHyperparameterError(f"embedding kind must be one of {sorted(EMBEDDINGS)}, got {kind!r}")
    try:
        return EMBEDDINGS[kind](x_dim, width, **options)
    except TypeError as error:
        raise InvalidHyperparameterError(f"embedding {kind!r}: {error}") from None
