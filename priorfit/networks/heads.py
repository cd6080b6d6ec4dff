"""Classification head: categorical logits, zuko style (``head(logits)`` is a Distribution)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """Reads the network's per-query outputs as logits over ``num_classes`` classes."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def forward(self, logits: Tensor) -> Categorical:
        return Categorical(logits=logits)

    def nll(self, logits: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy of integer labels y (...) under logits (..., C), elementwise."""
        flat = logits.reshape(-1, self.num_classes)
        return F.cross_entropy(flat, y.reshape(-1).long(), reduction="none").view(y.shape)
