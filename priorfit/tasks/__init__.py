"""LightningModules that train networks on priors, and the data modules that feed them."""

from priorfit.tasks.common import warmup_cosine
from priorfit.tasks.data import FixedPriorSet, PriorDataModule, PriorStream, batch_seed
from priorfit.tasks.dt import DTTask
from priorfit.tasks.pfn import PFNTask
from priorfit.tasks.posterior import PosteriorTask, SimulationDataModule, simulate_budget

__all__ = [
    "PFNTask",
    "PosteriorTask",
    "DTTask",
    "PriorDataModule",
    "SimulationDataModule",
    "PriorStream",
    "FixedPriorSet",
    "batch_seed",
    "simulate_budget",
    "warmup_cosine",
]
