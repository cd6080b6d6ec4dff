"""A pair plot of posterior samples (sbi's ``pairplot``, a corner plot): marginals on the diagonal, pairwise
densities below it, with the true θ and reference samples drawn in where given."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from priorfit.diagnostics._inputs import as_tensor
from priorfit.errors import PriorfitValidationError

__all__ = ["pairplot"]


def _as_samples(values, name: str, dims: int | None = None) -> torch.Tensor:
    tensor = as_tensor(values, name)
    tensor = tensor.unsqueeze(-1) if tensor.dim() == 1 else tensor
    if tensor.dim() != 2 or (dims is not None and tensor.shape[1] != dims):
        wanted = "(num_samples, D)" if dims is None else f"(num_samples, {dims})"
        raise PriorfitValidationError(f"{name} must have shape {wanted}, got {tuple(tensor.shape)}")
    return tensor.double()


def pairplot(
    samples,
    *,
    truth=None,
    reference=None,
    labels: Sequence[str] | None = None,
    bins: int = 40,
    limits: Sequence[tuple[float, float]] | None = None,
):
    """Marginal histograms of ``samples`` (S, D) on the diagonal and 2-D histograms of each pair below it.

    ``truth`` (D,): the true parameter, drawn as lines and a cross. ``reference`` (R, D): samples of a reference
    posterior, drawn as outlines over ours (step histograms and contour lines). ``labels``: one name
    per dimension. ``limits``: (low, high) per dimension (default: the samples' 0.5 to 99.5 % range, widened to
    the truth). Returns the matplotlib Figure.

    Example:
        >>> fig = pairplot(torch.randn(500, 3), truth=torch.zeros(3), labels=["a", "b", "c"])
        >>> len(fig.axes)
        9
    """
    import matplotlib.pyplot as plt
    import numpy as np

    samples = _as_samples(samples, "samples")
    dims = samples.shape[1]
    truth_values = None if truth is None else _as_samples(torch.as_tensor(truth).reshape(1, -1), "truth", dims)[0]
    reference = None if reference is None else _as_samples(reference, "reference", dims)
    labels = list(labels) if labels is not None else [f"θ[{d}]" for d in range(dims)]
    if len(labels) != dims:
        raise PriorfitValidationError(f"labels must name each of the {dims} dimensions, got {len(labels)}")
    if limits is None:
        quantiles = torch.quantile(samples, torch.tensor([0.005, 0.995], dtype=torch.float64), dim=0)
        low, high = quantiles[0], quantiles[1]
        if truth_values is not None:
            low, high = torch.minimum(low, truth_values), torch.maximum(high, truth_values)
        pad = 0.05 * (high - low).clamp_min(1e-12)
        limits = list(zip((low - pad).tolist(), (high + pad).tolist()))
    elif len(limits) != dims:
        raise PriorfitValidationError(f"limits must give (low, high) for each of the {dims} dimensions")

    fig, axes = plt.subplots(dims, dims, figsize=(2.2 * dims + 0.6, 2.2 * dims + 0.6), squeeze=False)
    ours, theirs = samples.numpy(), None if reference is None else reference.numpy()
    marked = None if truth_values is None else truth_values.tolist()
    for row in range(dims):
        for col in range(dims):
            ax = axes[row][col]
            if col > row:
                ax.axis("off")
                continue
            if row == col:
                _marginal(ax, ours, theirs, marked, col, np.linspace(*limits[col], bins + 1))
            else:
                _pair(ax, ours, theirs, marked, (col, row), [limits[col], limits[row]], bins)
            ax.set_xlim(*limits[col])
            if row == dims - 1:
                ax.set_xlabel(labels[col])
            else:
                ax.set_xticklabels([])
            if col == 0 and row > 0:
                ax.set_ylabel(labels[row])
    handles, names = axes[0][0].get_legend_handles_labels()
    if len(handles) > 1:
        fig.legend(handles, names, loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def _marginal(ax, ours, theirs, truth, dim: int, edges) -> None:
    ax.hist(ours[:, dim], bins=edges, density=True, color="C0", alpha=0.6, label="samples")
    if theirs is not None:
        ax.hist(theirs[:, dim], bins=edges, density=True, histtype="step", color="C1", label="reference")
    if truth is not None:
        ax.axvline(truth[dim], color="C3", linewidth=1.2, label="true θ")
    ax.set_yticks([])


def _pair(ax, ours, theirs, truth, dims: tuple[int, int], ranges, bins: int) -> None:
    import numpy as np

    first, second = dims
    ax.hist2d(ours[:, first], ours[:, second], bins=bins, range=ranges, cmap="Blues")
    if theirs is not None:
        counts, x_edges, y_edges = np.histogram2d(theirs[:, first], theirs[:, second], bins=bins // 2, range=ranges)
        centers = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
        ax.contour(*centers, counts.T, levels=3, colors="C1", linewidths=0.8)
    if truth is not None:
        ax.plot(truth[first], truth[second], "x", color="C3", markersize=8)
