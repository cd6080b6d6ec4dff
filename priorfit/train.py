"""``priorfit-train``: compose the Hydra config, train with Lightning, report the checkpoint and its gap."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from priorfit._validation import check_float, check_int
from priorfit.checkpoint import export_checkpoint, load_weights
from priorfit.errors import InvalidHyperparameterError, PriorfitError
from priorfit.registry import targets_in
from priorfit.runs import (
    RUN_SUFFIX,
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    CheckpointOnSigterm,
    check_resume_path,
    check_run_folder,
    drop_lightning_tips,
)

__all__ = ["train", "main"]

log = logging.getLogger(__name__)  # the run folder's train.log (Hydra's job logging, conf/train.yaml)

# run folders end in a per-process suffix (priorfit/conf/train.yaml): runs started in the same second never share one
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
    data_settings = OmegaConf.to_container(cfg.data, resolve=True)
    data_class = get_class(data_settings.pop("_target_"))
    if hasattr(data_class, "check_settings"):  # before the task draws bucket borders or the data module simulates
        data_class.check_settings(**data_settings)
    task = _instantiate(cfg.task, prior=prior, network=network, trusted_targets=trusted, _recursive_=False)
    datamodule = _instantiate(cfg.data, prior=task.prior)
    return task, datamodule


def _instantiate(config: DictConfig, **kwargs: Any) -> Any:
    """Hydra's ``instantiate`` with a bad setting reported as the named error it is, not wrapped by Hydra."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, PriorfitError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError, MisconfigurationException)):
            raise InvalidHyperparameterError(f"{config.get('_target_')}: {cause}") from None
        raise


def _check_trainer_settings(trainer: DictConfig) -> None:
    """The trainer settings users override most, checked before anything is built."""
    if trainer.get("max_steps") is not None:
        check_int(trainer.max_steps, "trainer.max_steps", minimum=-1)
    if trainer.get("max_epochs") is not None:
        check_int(trainer.max_epochs, "trainer.max_epochs", minimum=-1)
    interval = trainer.get("val_check_interval")
    if interval is not None and not (isinstance(interval, int) and interval >= 1):
        check_float(interval, "trainer.val_check_interval", minimum=0, maximum=1, open_minimum=True)


def train(cfg: DictConfig, *, callbacks: Sequence[pl.Callback] = ()) -> tuple[dict[str, float], dict[str, Any]]:
    """Train one experiment. Returns (final metrics, {"task", "datamodule", "trainer", ...}).

    ``callbacks``: Lightning callbacks to add to the ones the config names (e.g. a throughput meter)."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    drop_lightning_tips()
    log.info("configuration:\n%s", OmegaConf.to_yaml(cfg, resolve=False))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    _check_trainer_settings(cfg.trainer)
    check_resume_path(cfg.get("ckpt_path"))
    check_run_folder(output_dir, overwrite=bool(cfg.get("overwrite", False)))
    output_dir.mkdir(parents=True, exist_ok=True)
    task, datamodule = build(cfg)
    if cfg.get("init_from"):
        if cfg.get("ckpt_path"):
            raise ValueError("set either init_from (weights only, fresh schedule) or ckpt_path (resume), not both")
        load_weights(task, cfg.init_from)

    logger = instantiate(cfg.logger) if _enabled(cfg.get("logger")) else False
    configured = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if _enabled(c)]
    on_sigterm = CheckpointOnSigterm(output_dir / "checkpoints")
    trainer: pl.Trainer = _instantiate(
        cfg.trainer, logger=logger, callbacks=[*configured, *callbacks, on_sigterm], plugins=[AtomicCheckpointIO()]
    )
    if logger:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    started = time.perf_counter()
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SystemExit as stop:  # Lightning stops on SIGTERM by raising SystemExit(None), i.e. status 0
        if trainer.received_sigterm:
            where = on_sigterm.saved_to or "nowhere (no step had finished)"
            print(f"\nstopped by SIGTERM; checkpoint of the last finished step: {where}")
            raise SystemExit(SIGTERM_EXIT_CODE) from None
        raise stop
    wall_seconds = time.perf_counter() - started
    final = trainer.validate(task, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in (final[0] if final else {}).items()}
    task.card = _card(task, trainer, datamodule, wall_seconds, cfg)

    objects: dict[str, Any] = {"task": task, "datamodule": datamodule, "trainer": trainer}
    if trainer.is_global_zero:
        checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        model_file = export_checkpoint(task, output_dir / "model.safetensors")
        objects.update(checkpoint=checkpoint, model_file=str(model_file))
        _report(metrics, checkpoint, model_file, task, datamodule)
    return metrics, objects


def _card(task, trainer, datamodule, wall_seconds: float, cfg: DictConfig):
    """The calibration card the exported model carries; a model whose card cannot be computed is still exported
    (with a warning saying why), never lost."""
    from priorfit.card import make_card
    from priorfit.evaluate import held_out_pairs
    from priorfit.tasks.posterior import PosteriorTask

    steps = int(trainer.global_step)
    training = {"steps": steps, "batch_size": int(datamodule.batch_size), "wall_seconds": round(wall_seconds, 1)}
    if cfg.get("ckpt_path") or cfg.get("init_from"):
        training["note"] = "wall_seconds of this run only: it resumed or started from another checkpoint"
    try:
        if isinstance(task, PosteriorTask):
            training["num_simulations"] = int(len(datamodule.theta))
            return make_card(task, held_out=held_out_pairs(task, trainer, 200, int(cfg.seed)), training=training)
        training["datasets_seen"] = steps * int(datamodule.batch_size)
        return make_card(task, training=training, num_points=getattr(datamodule, "num_points", None))
    except PriorfitError as error:
        warnings.warn(f"the model is exported without a calibration card: {error}", UserWarning, stacklevel=2)
        return None


def _report(metrics, checkpoint, model_file, task, datamodule) -> None:
    """The run's results, printed and written to the run's train.log."""
    lines = []
    if task.card is not None:
        lines.append(f"calibration card: {task.card.summary()}")
    shown = _shown(checkpoint) if checkpoint else "none (no checkpoint callback)"
    lines.append(f"checkpoint (resume with ckpt_path=...): {shown}")
    lines.append(f"model (load with priorfit.load): {_shown(model_file)}")
    if not hasattr(task, "predictive"):  # posterior tasks and DTTask: NLL of θ (or the score-matching loss)
        if "val/nll" in metrics:
            lines.append(f"validation NLL: {metrics['val/nll']:.4f} nats per parameter draw")
        else:
            lines.append(f"validation loss: {metrics.get('val/loss', float('nan')):.4f}")
        if "val/nll_gap" in metrics:
            lines.append(f"NLL gap to the exact posterior: {metrics['val/nll_gap']:.4f} nats per parameter draw")
    else:
        num_datasets = datamodule.val_batches * datamodule.val_batch_size
        lines.append(f"validation NLL: {metrics.get('val/nll', float('nan')):.4f} nats per query point")
        if "val/nll_gap" in metrics:
            lines.append(
                f"NLL gap to the exact posterior predictive: {metrics['val/nll_gap']:.4f} nats per query point "
                f"({num_datasets} held-out prior datasets, context sizes "
                f"{datamodule.min_context}..{datamodule.max_context})"
            )
        else:
            lines.append(f"(no exact posterior predictive for {type(task.prior).__name__}: no gap to report)")
    print()
    for line in lines:
        print(line)
        log.info(line)


def _shown(path) -> str:
    """A path as the user can type it: relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@hydra.main(version_base="1.3", config_path="pkg://priorfit.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point of ``priorfit-train``."""
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        metrics, _ = train(cfg)
    except PriorfitError as error:  # a user mistake: the message, not a stack trace
        print(f"priorfit-train: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
