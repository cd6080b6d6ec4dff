"""``priorfit-train``: compose the Hydra config, train with Lightning, report the checkpoint and its gap."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from priorfit.checkpoint import export_checkpoint, load_weights
from priorfit.registry import targets_in
from priorfit.runs import (
    RUN_SUFFIX,
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    CheckpointOnSigterm,
    check_resume_path,
    check_run_folder,
)

__all__ = ["train", "main"]

# run folders end in a per-process suffix (conf/train.yaml): two runs started in the same second never share one
OmegaConf.register_new_resolver("run_suffix", lambda: RUN_SUFFIX, replace=True)


def _enabled(node: Any) -> bool:
    return isinstance(node, DictConfig) and "_target_" in node


def build(cfg: DictConfig) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """Instantiate the task (with its prior and network) and the data module from a config.

    The command-line config is the user's own, so the classes it names are trusted; a checkpoint's stored copy
    of it is not (see ``priorfit.registry``).
    """
    prior = OmegaConf.to_container(cfg.prior, resolve=True)
    network = OmegaConf.to_container(cfg.network, resolve=True)
    trusted = sorted(targets_in(prior) | targets_in(network))
    task = instantiate(cfg.task, prior=prior, network=network, trusted_targets=trusted, _recursive_=False)
    datamodule = instantiate(cfg.data, prior=task.prior)
    return task, datamodule


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train one experiment. Returns (final metrics, {"task", "datamodule", "trainer", ...})."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    check_resume_path(cfg.get("ckpt_path"))
    check_run_folder(output_dir, overwrite=bool(cfg.get("overwrite", False)))
    output_dir.mkdir(parents=True, exist_ok=True)
    task, datamodule = build(cfg)
    if cfg.get("init_from"):
        if cfg.get("ckpt_path"):
            raise ValueError("set either init_from (weights only, fresh schedule) or ckpt_path (resume), not both")
        load_weights(task, cfg.init_from)

    logger = instantiate(cfg.logger) if _enabled(cfg.get("logger")) else False
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if _enabled(c)]
    on_sigterm = CheckpointOnSigterm(output_dir / "checkpoints")
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=logger, callbacks=[*callbacks, on_sigterm], plugins=[AtomicCheckpointIO()]
    )
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SystemExit as stop:  # Lightning stops on SIGTERM by raising SystemExit(None), i.e. status 0
        if trainer.received_sigterm:
            where = on_sigterm.saved_to or "nowhere (no step had finished)"
            print(f"\nstopped by SIGTERM; checkpoint of the last finished step: {where}")
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        raise stop
    final = trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in (final[0] if final else {}).items()}

    objects: dict[str, Any] = {"task": task, "datamodule": datamodule, "trainer": trainer}
    if trainer.is_global_zero:
        checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        model_file = export_checkpoint(task, output_dir / "model.safetensors")
        objects.update(checkpoint=checkpoint, model_file=str(model_file))
        _report(metrics, checkpoint, model_file, task, datamodule)
    return metrics, objects


def _report(metrics, checkpoint, model_file, task, datamodule) -> None:
    print()
    print(f"checkpoint (resume with ckpt_path=...): {checkpoint or 'none (no checkpoint callback)'}")
    print(f"model (load with priorfit.load_checkpoint): {model_file}")
    if not hasattr(task, "predictive"):  # posterior tasks and DTTask: NLL of θ (or the score-matching loss)
        if "val/nll" in metrics:
            print(f"validation NLL: {metrics['val/nll']:.4f} nats per parameter draw")
        else:
            print(f"validation loss: {metrics.get('val/loss', float('nan')):.4f}")
        if "val/nll_gap" in metrics:
            print(f"NLL gap to the exact posterior: {metrics['val/nll_gap']:.4f} nats per parameter draw")
        return
    num_datasets = datamodule.val_batches * datamodule.val_batch_size
    print(f"validation NLL: {metrics.get('val/nll', float('nan')):.4f} nats per query point")
    if "val/nll_gap" in metrics:
        print(
            f"NLL gap to the exact posterior predictive: {metrics['val/nll_gap']:.4f} nats per query point "
            f"({num_datasets} held-out prior datasets, context sizes "
            f"{datamodule.min_context}..{datamodule.max_context})"
        )
    else:
        print(f"(no exact posterior predictive for {type(task.prior).__name__}: no gap to report)")


@hydra.main(version_base="1.3", config_path="pkg://priorfit.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``priorfit-train``."""
    os.environ.setdefault("WANDB_SILENT", "true")
    metrics, _ = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
