"""``evaluating(module)``: eval mode for one block, the module's own mode restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["evaluating"]


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Run the block in eval mode and restore training mode after, if the module was training. A module already in
    eval mode is not switched: switching walks every submodule, a noticeable share of a batch-of-1 forward pass."""
    was_training = module.training
    if was_training:
        module.eval()
    try:
        yield module
    finally:
        if was_training:
            module.train()
