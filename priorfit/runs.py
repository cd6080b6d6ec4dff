"""Training runs that never lose work: atomic checkpoint files, a checkpoint at SIGTERM, run folders never reused."""

from __future__ import annotations

import copy
import logging
import os
import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from priorfit._files import atomic_write
from priorfit.errors import CheckpointError, InvalidHyperparameterError

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointOnSigterm",
    "KeepBestWeights",
    "RUN_SUFFIX",
    "SIGTERM_EXIT_CODE",
    "check_resume_path",
    "check_run_folder",
    "drop_lightning_tips",
    "make_logger",
    "quiet_lightning",
]

SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM: what schedulers read as "terminated"
# one per process: run folders started in the same second by two processes get different names
RUN_SUFFIX = secrets.token_hex(3)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint files, written to a temp file in the target folder and renamed into place.

    Lightning's own writer moves a finished file through fsspec, which becomes a copy when the temp folder is on
    another file system; a kill during that copy leaves a checkpoint that cannot be resumed. Reading always uses
    ``weights_only=True``: a checkpoint never unpickles code.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(Path(path), lambda temp: torch.save(checkpoint, temp))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if weights_only is False:
            raise CheckpointError(f"{path}: priorfit reads checkpoints with weights_only=True only")
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class CheckpointOnSigterm(pl.Callback):
    """Saves ``last.ckpt`` when Lightning stops a run on SIGTERM, so the run can resume from the kill point.

    Lightning turns SIGTERM into an exception at the next step boundary; ``priorfit-train`` then exits with
    status 143 instead of 0 (see ``train``).
    """

    def __init__(self, fallback_dir: str | os.PathLike) -> None:
        self.fallback_dir = Path(fallback_dir)
        self.saved_to: Path | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        callback = trainer.checkpoint_callback
        directory = Path(callback.dirpath) if callback is not None and callback.dirpath else self.fallback_dir
        path = directory / "last.ckpt"
        trainer.save_checkpoint(path)
        self.saved_to = path


def check_resume_path(ckpt_path: Any) -> None:
    """Refuse to resume from a URL: Lightning would fetch and unpickle it (only local files are resumed)."""
    if ckpt_path is None or ckpt_path in ("last", "best", "hpc", "registry"):
        return
    scheme = urllib.parse.urlparse(str(ckpt_path)).scheme
    if len(scheme) > 1:  # one letter is a Windows drive
        raise CheckpointError(
            f"ckpt_path={ckpt_path} is a URL: priorfit resumes only from local files. Download it first (for a "
            "registered model, priorfit-download NAME) and pass the path; to start from its weights with a fresh "
            "schedule use init_from=NAME_OR_PATH instead."
        )
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path} does not exist (or is not a file): nothing to resume from")
    try:  # read here with weights_only=True: a file that needs unpickling is refused with a named error
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a plain checkpoint
        raise CheckpointError(
            f"ckpt_path={ckpt_path} cannot be resumed: it is not a Lightning checkpoint of plain tensors and values "
            f"({type(error).__name__}: {str(error)[:200]})"
        ) from None


def check_run_folder(output_dir: Path, *, overwrite: bool) -> None:
    """A finished run's model, or checkpoints of another run, are never overwritten without ``overwrite=true``."""
    if overwrite:
        return
    finished = output_dir / "model.safetensors"
    checkpoints = output_dir / "checkpoints"
    if finished.exists() or (checkpoints.is_dir() and any(checkpoints.iterdir())):
        what = (
            f"a finished run's model ({finished})"
            if finished.exists()
            else f"another run's checkpoints ({checkpoints})"
        )
        raise InvalidHyperparameterError(
            f"the run folder {output_dir} already holds {what}; training there would overwrite it. Pick a new "
            "folder (leave hydra.run.dir at its default), resume with ckpt_path=.../last.ckpt (which starts a "
            "new folder), or pass overwrite=true to replace it."
        )


# where Lightning writes its start-up lines (devices, "💡 Tip: try installing ...", "fit stopped: ...")
LIGHTNING_INFO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def drop_lightning_tips() -> None:
    """Hide Lightning's advertisements for its cloud services (printed before every progress bar)."""
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropTips) for existing in logger.filters):
            logger.addFilter(_DropTips())


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's informational lines hidden for one estimator's training (its warnings still show)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class KeepBestWeights(pl.Callback):
    """Keeps the weights of the best validation epoch in memory (sbi restores them too)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.best_state: dict | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # epoch end, not validation end: a weight-averaging callback listed after this one still has its
        # averaged weights in the module here
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and float(value) < self.best and not trainer.sanity_checking:
            self.best = float(value)
            self.best_state = copy.deepcopy(pl_module.state_dict())


def make_logger(kind: str | None, name: str):
    """A Lightning logger writing under ``$PRIORFIT_RUNS_DIR/<name>`` (default ``runs/<name>``): "wandb" (offline:
    no account, no network), "csv", or None for none (``False``, Lightning's "no logger")."""
    if kind is None:
        return False
    if kind not in ("wandb", "csv"):
        raise InvalidHyperparameterError(f"logger must be 'wandb', 'csv' or None, got {kind!r}")
    folder = Path(os.environ.get("PRIORFIT_RUNS_DIR", "runs")) / name
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(folder)
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(save_dir=str(folder), offline=True, project="priorfit")
