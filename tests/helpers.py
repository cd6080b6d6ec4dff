"""Config helpers shared by the training, config and checkpoint tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# shrink any experiment to a few seconds of CPU
FAST = ["logger=none", "trainer.enable_progress_bar=false"]
FAST_PFN = [
    "data.batch_size=8",
    "data.val_batches=2",
    "data.val_batch_size=8",
    "task.border_datasets=200",
    "task.warmup_steps=2",
]
FAST_POSTERIOR = ["data.num_simulations=100", "data.batch_size=20"]
FAST_DT = ["data.batch_size=8", "data.val_batches=2", "data.val_batch_size=8", "task.warmup_steps=2"]

TINY_POSTERIOR = ["network.encoder.width=16", "network.encoder.heads=2", "network.encoder.layers=1"]

TINY_NETWORK = ["network.d_model=32", "network.n_heads=2", "network.n_layers=1", "network.d_ff=64"]


def compose_config(output_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """The training config with ``overrides``, shrunk to seconds (posterior experiments: ``sbi_*``, DT: ``dt_*``)."""
    overrides = overrides or []
    posterior = any(o.startswith("experiment=sbi_") for o in overrides)
    distribution_transformer = any(o.startswith("experiment=dt_") for o in overrides)
    with initialize_config_module(config_module="priorfit.conf", version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={output_dir}",
                *FAST,
                *(FAST_POSTERIOR if posterior else FAST_DT if distribution_transformer else FAST_PFN),
                *overrides,
            ],
        )


def train_briefly(output_dir: Path, overrides: list[str]) -> dict:
    """``priorfit-train`` with ``overrides`` (shrunk by :func:`compose_config`); the run's objects (task, paths)."""
    from priorfit.train import train

    _, objects = train(compose_config(output_dir, overrides))
    return objects
