"""Config helpers shared by the training, config and checkpoint tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

# shrink any experiment to a few seconds of CPU
FAST = [
    "logger=none",
    "data.batch_size=8",
    "data.val_batches=2",
    "data.val_batch_size=8",
    "task.border_datasets=200",
    "task.warmup_steps=2",
    "trainer.enable_progress_bar=false",
]

TINY_NETWORK = ["network.d_model=32", "network.n_heads=2", "network.n_layers=1", "network.d_ff=64"]


def compose_config(output_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_module(config_module="priorfit.conf", version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"paths.output_dir={output_dir}", *FAST, *(overrides or [])],
        )
