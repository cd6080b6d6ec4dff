"""What every task does when it starts: plain configs, optimizer checks, a probe of the prior's shapes, and the
network built through the registry with the sizes the probe found; and the shared AdamW schedule."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from priorfit._validation import check_float, check_int
from priorfit.errors import InvalidHyperparameterError, PriorfitError
from priorfit.priors.base import Batch
from priorfit.registry import build

__all__ = [
    "plain_config",
    "check_optimizer_settings",
    "probe",
    "build_network",
    "warmup_cosine",
    "adamw_warmup_cosine",
    "logs_this_step",
]


def plain_config(config: Any) -> Any:
    """A Hydra DictConfig as plain dicts and lists (other values unchanged)."""
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


def check_optimizer_settings(lr: float, weight_decay: float, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> None:
    """Named errors for impossible AdamW / schedule settings, before any prior data is drawn."""
    check_float(lr, "lr", minimum=0, open_minimum=True)
    check_float(weight_decay, "weight_decay", minimum=0)
    check_int(warmup_steps, "warmup_steps", minimum=0)
    check_float(min_lr_ratio, "min_lr_ratio", minimum=0, maximum=1)


def probe(prior: Any, num_datasets: int = 2, num_points: int = 2) -> Batch:
    """A tiny seeded batch of the prior: the one place a network learns its input and output sizes from."""
    batch = prior.sample(num_datasets, num_points, generator=torch.Generator().manual_seed(0))
    if not isinstance(batch, Batch):
        raise InvalidHyperparameterError(
            f"{type(prior).__name__}.sample must return a priorfit.priors.Batch, got {type(batch).__name__}"
        )
    return batch


def build_network(config: Mapping[str, Any], *, trusted_targets: Collection[str] = (), **sizes: Any) -> Any:
    """``registry.build`` of a network config with derived ``sizes``; a constructor's own ``ValueError`` /
    ``TypeError`` becomes an ``InvalidHyperparameterError`` that says it came from the network settings."""
    try:
        return build(config, trusted_targets=trusted_targets, **sizes)
    except (ValueError, TypeError) as error:
        if isinstance(error, PriorfitError):
            raise
        raise InvalidHyperparameterError(f"network {config.get('_target_')}: {error}") from None


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_warmup_cosine(
    module: pl.LightningModule,
    *,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    min_lr_ratio: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> dict:
    """``configure_optimizers``' answer: AdamW, stepped per batch through ``warmup_cosine`` over the run's steps."""
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=_fused_adamw_applies(module)
    )
    total = max(1, int(module.trainer.estimated_stepping_batches))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total, min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _fused_adamw_applies(module: pl.LightningModule) -> bool:
    """Whether AdamW can take its fused step (one kernel over all parameters; on CPU torch's default is a Python loop
    over tensors, twice the time): torch has it on CPU and CUDA, and Lightning's mixed-precision plugin refuses to clip
    the gradients of a fused optimizer (it would unscale them itself), so not under ``*-mixed`` precision."""
    on_fused_devices = {parameter.device.type for parameter in module.parameters()} <= {"cpu", "cuda"}
    trainer = module._trainer
    mixed = trainer is not None and str(trainer.precision).endswith("-mixed")
    return on_fused_devices and not mixed


def logs_this_step(module: pl.LightningModule) -> bool:
    """Whether a training step's ``self.log`` reaches the logger: Lightning writes every ``log_every_n_steps``-th
    step's values and drops the rest, and a ``self.log`` call copies the metric's metadata, milliseconds that a
    small PFN's step of ~0.1 s on CPU notices. The progress bar shows the last written value."""
    trainer = module._trainer
    if trainer is None:  # a step run by hand, outside Trainer.fit
        return True
    return bool(trainer.fast_dev_run) or trainer._logger_connector.should_update_logs
