"""Tabular prior: datasets from random structural causal models (in the spirit of TabPFN's prior).

Each dataset is a random MLP-shaped DAG: root causes feed ``depth`` layers of nodes, each node a
sparse weighted sum of the previous layer's nodes, an activation and Gaussian noise. Features and the
target are read off random nodes, so features can be causes, effects or siblings of the target. A
random number of features is kept (the rest zero-padded), some turned categorical, and for
classification the target is cut into 2..max_classes classes at random data quantiles. Every choice
is drawn per dataset; the whole batch runs as one padded, masked computation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, check_sample_arguments
from priorfit.priors.hyperpriors import HyperparameterSpec, LogUniform, Uniform, as_hyperprior

__all__ = ["SCMPrior"]

_ACTIVATIONS = (torch.tanh, torch.relu, torch.sin, lambda h: h.abs(), lambda h: h)


class SCMPrior:
    """Random structural causal models producing tabular datasets.

    Args:
        num_features: maximum number of features (datasets use 1..num_features, zero-padded).
        task: "regression" (standardised real target) or "classification" (integer labels as floats).
        max_classes: classification datasets have 2..max_classes classes.
        max_depth, min_width, max_width: DAG layers and nodes per layer (drawn per dataset).
        edge_prob: hyperprior of the probability that an edge between consecutive layers exists.
        noise_std: hyperprior of the per-node Gaussian noise.
        categorical_prob: hyperprior of the fraction of features turned categorical (2..8 levels).
        argmax_class_prob: probability that a classification dataset's class is the argmax over one random
            node per class (plus random offsets), which gives cluster-like class regions, rather than
            bands of the target node cut at thresholds.
        shuffle_classes: relabel each dataset's classes by a random permutation, so class indices carry
            no order (real labels rarely follow the target's order); False keeps them ordinal.

    Example:
        >>> prior = SCMPrior(num_features=5, task="classification")
        >>> batch = prior.sample(4, 50, generator=torch.Generator().manual_seed(0))
        >>> batch.x.shape, int(batch.meta["num_classes"].min()) >= 2
        (torch.Size([4, 50, 5]), True)
    """

    has_exact_predictive = False

    def __init__(
        self,
        *,
        num_features: int = 10,
        task: Literal["regression", "classification"] = "classification",
        max_classes: int = 10,
        max_depth: int = 4,
        min_width: int = 4,
        max_width: int = 16,
        edge_prob: HyperparameterSpec = Uniform(0.3, 0.9),
        noise_std: HyperparameterSpec = LogUniform(0.01, 0.5),
        categorical_prob: HyperparameterSpec = Uniform(0.0, 0.3),
        shuffle_classes: bool = True,
        argmax_class_prob: float = 0.5,
    ) -> None:
        if not isinstance(num_features, int) or num_features < 1:
            raise InvalidHyperparameterError(f"num_features must be a positive integer, got {num_features!r}")
        if task not in ("regression", "classification"):
            raise InvalidHyperparameterError(f"task must be 'regression' or 'classification', got {task!r}")
        if not 2 <= max_classes:
            raise InvalidHyperparameterError(f"max_classes must be at least 2, got {max_classes}")
        if max_depth < 1 or not 1 <= min_width <= max_width:
            raise InvalidHyperparameterError(
                f"need max_depth >= 1 and 1 <= min_width <= max_width, got {max_depth}, {min_width}, {max_width}"
            )
        if max_depth * max_width < num_features + 1:
            raise InvalidHyperparameterError(
                f"the DAG has at most {max_depth * max_width} nodes but needs num_features + 1 = {num_features + 1}"
            )
        self.num_features = num_features
        self.task = task
        self.max_classes = max_classes
        self.max_depth = max_depth
        self.min_width = min_width
        self.max_width = max_width
        self.edge_prob = as_hyperprior(edge_prob, "edge_prob")
        self.noise_std = as_hyperprior(noise_std, "noise_std")
        self.categorical_prob = as_hyperprior(categorical_prob, "categorical_prob", positive=False)
        self.shuffle_classes = shuffle_classes
        if not 0.0 <= argmax_class_prob <= 1.0:
            raise InvalidHyperparameterError(f"argmax_class_prob must lie in [0, 1], got {argmax_class_prob}")
        self.argmax_class_prob = argmax_class_prob

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        check_sample_arguments(batch_size, num_points, generator)
        dev = generator.device if generator is not None else None
        b, n, w = batch_size, num_points, self.max_width

        def uniform(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=dev)

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, device=dev)

        def randint(low: int, high: Tensor | int, shape: tuple[int, ...]) -> Tensor:
            """Uniform integers in [low, high] (inclusive), high per dataset allowed."""
            high = torch.as_tensor(high, device=dev)
            return (low + uniform(*shape) * (high - low + 1)).floor().long()

        # per-dataset structure
        min_depth = max(1, -(-(self.num_features + 1) // w))  # enough nodes for features + target
        depth = randint(min_depth, self.max_depth, (b,))
        width = randint(self.min_width, self.max_width, (b,))
        edge_prob = self.edge_prob.sample(b, generator=generator, device=dev).clamp(0.05, 1.0)
        noise_std = self.noise_std.sample(b, generator=generator, device=dev)
        activation = randint(0, len(_ACTIVATIONS) - 1, (b,))
        unit_mask = (torch.arange(w, device=dev) < width.unsqueeze(1)).float().unsqueeze(1)  # (B, 1, W)

        # propagate through the layers; every layer's nodes are kept as candidate features/targets
        hidden = normal(b, n, w) * unit_mask
        layers = [hidden]
        for _ in range(self.max_depth - 1):
            edges = (uniform(b, w, w) < edge_prob.view(-1, 1, 1)).float()
            weights = normal(b, w, w) * edges / (edges.sum(1, keepdim=True).clamp_min(1)).sqrt()
            pre = hidden @ weights + normal(b, 1, w) * 0.5
            out = torch.zeros_like(pre)
            for index, act in enumerate(_ACTIVATIONS):
                out = torch.where((activation == index).view(-1, 1, 1), act(pre), out)
            out = (out - out.mean(1, keepdim=True)) / out.std(1, keepdim=True, correction=0).clamp_min(1e-6)
            hidden = (out + noise_std.view(-1, 1, 1) * normal(b, n, w)) * unit_mask
            layers.append(hidden)
        nodes = torch.cat(layers, dim=-1)  # (B, N, max_depth * W)
        layer_of_node = torch.arange(self.max_depth, device=dev).repeat_interleave(w)
        unit_of_node = torch.arange(w, device=dev).repeat(self.max_depth)
        valid = (layer_of_node < depth.unsqueeze(1)) & (unit_of_node < width.unsqueeze(1))  # (B, nodes)

        # target: a random valid node of the dataset's last layer; features: other random valid nodes
        last_layer = valid & (layer_of_node == (depth - 1).unsqueeze(1))
        target_node = torch.where(
            last_layer, uniform(*valid.shape), torch.full_like(valid, -1.0, dtype=torch.float)
        ).argmax(1)
        keys = torch.where(valid, uniform(*valid.shape), torch.full_like(valid, 2.0, dtype=torch.float))
        keys.scatter_(1, target_node.unsqueeze(1), 3.0)
        feature_nodes = keys.argsort(1)[:, : self.num_features]  # (B, F), valid nodes first
        num_valid = valid.sum(1) - 1
        num_features = torch.minimum(randint(1, self.num_features, (b,)), num_valid)
        feature_mask = torch.arange(self.num_features, device=dev) < num_features.unsqueeze(1)  # (B, F)

        x = nodes.gather(2, feature_nodes.unsqueeze(1).expand(b, n, -1))
        x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True, correction=0).clamp_min(1e-6)
        categorical = (
            uniform(b, self.num_features) < self.categorical_prob.sample(b, generator=generator, device=dev).view(-1, 1)
        ) & feature_mask
        x = torch.where(
            categorical.unsqueeze(1), self._categorize(x, randint(2, 8, (b, self.num_features)), uniform), x
        )
        x = x * feature_mask.unsqueeze(1)

        y = nodes.gather(2, target_node.view(b, 1, 1).expand(b, n, 1))
        y = (y - y.mean(1, keepdim=True)) / y.std(1, keepdim=True, correction=0).clamp_min(1e-6)
        meta = {"num_features": num_features, "categorical": categorical, "depth": depth}
        if self.task == "classification":
            num_classes = randint(2, self.max_classes, (b,))
            y = self._classes(y, num_classes, uniform)
            by_argmax = uniform(b) < self.argmax_class_prob
            if by_argmax.any():
                y = torch.where(by_argmax.view(-1, 1, 1), self._argmax_classes(nodes, valid, num_classes, uniform), y)
            if self.shuffle_classes:
                y = self._permute_classes(y, num_classes, uniform)
            meta["num_classes"] = num_classes
        return Batch(x=x, y=y, meta=meta)

    @staticmethod
    def _categorize(x: Tensor, levels: Tensor, uniform) -> Tensor:
        """Cut each column at (levels - 1) thresholds taken at random data points: codes 0..levels-1."""
        b, n, f = x.shape
        max_levels = int(levels.max())
        picks = (uniform(b, max_levels - 1, f) * n).long().clamp(max=n - 1)  # (B, L-1, F) row indices
        thresholds = x.gather(1, picks)
        active = torch.arange(max_levels - 1, device=x.device).view(1, -1, 1) < (levels - 1).unsqueeze(1)
        thresholds = torch.where(active, thresholds, torch.full_like(thresholds, float("inf")))
        return (x.unsqueeze(2) > thresholds.unsqueeze(1)).sum(2).float()

    @staticmethod
    def _classes(y: Tensor, num_classes: Tensor, uniform) -> Tensor:
        """Class = number of thresholds below y; thresholds at random quantiles in (0.05, 0.95) of y."""
        b = y.shape[0]
        k = int(num_classes.max())
        probs = torch.sort(0.05 + 0.9 * uniform(b, k - 1), dim=1).values
        thresholds = _row_quantiles(y.squeeze(-1), probs)
        active = torch.arange(k - 1, device=y.device) < (num_classes - 1).unsqueeze(1)
        thresholds = torch.where(active, thresholds, torch.full_like(thresholds, float("inf")))
        return (y > thresholds.unsqueeze(1)).sum(-1, keepdim=True).float()

    def _argmax_classes(self, nodes: Tensor, valid: Tensor, num_classes: Tensor, uniform) -> Tensor:
        """Class = argmax over num_classes random valid nodes, each standardised and shifted by a random offset."""
        b, k = nodes.shape[0], self.max_classes
        keys = torch.where(valid, uniform(*valid.shape), torch.full_like(valid, 2.0, dtype=torch.float))
        class_nodes = keys.argsort(1)[:, :k]  # (B, k) random valid nodes first
        scores = nodes.gather(2, class_nodes.unsqueeze(1).expand(-1, nodes.shape[1], -1))
        scores = (scores - scores.mean(1, keepdim=True)) / scores.std(1, keepdim=True, correction=0).clamp_min(1e-6)
        offsets = (uniform(b, 1, k) - 0.5) * 2.0  # unequal class sizes
        active = torch.arange(k, device=nodes.device) < num_classes.view(-1, 1, 1)
        scores = torch.where(active, scores + offsets, torch.full_like(scores, float("-inf")))
        return scores.argmax(-1, keepdim=True).float()

    @staticmethod
    def _permute_classes(y: Tensor, num_classes: Tensor, uniform) -> Tensor:
        """Map each dataset's labels 0..k-1 through its own random permutation of 0..k-1."""
        b, k = y.shape[0], int(num_classes.max())
        keys = torch.where(
            torch.arange(k, device=y.device) < num_classes.unsqueeze(1),
            uniform(b, k),
            torch.full((b, k), 2.0, device=y.device),
        )
        permutation = keys.argsort(1)  # (B, k): active classes first, in random order
        return permutation.gather(1, y.squeeze(-1).long()).unsqueeze(-1).float()


def _row_quantiles(values: Tensor, probs: Tensor) -> Tensor:
    """Per-row quantiles: values (B, N), probs (B, K) -> (B, K), by sorting each row."""
    ordered = values.sort(dim=1).values
    index = (probs * (values.shape[1] - 1)).round().long()
    return ordered.gather(1, index)
