"""LightningModules that train networks on priors, and the data module that streams prior batches."""

from priorfit.tasks.data import FixedPriorSet, PriorDataModule, PriorStream, batch_seed
from priorfit.tasks.pfn import PFNTask, warmup_cosine

__all__ = ["PFNTask", "PriorDataModule", "PriorStream", "FixedPriorSet", "batch_seed", "warmup_cosine"]
