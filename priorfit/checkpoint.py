"""Load trained models from Lightning checkpoints or priorfit's safetensors exports.

A checkpoint is data, never code: Lightning files are read with ``torch.load(weights_only=True)``, safetensors
files are copied into memory (never left memory-mapped), and the stored configuration is rebuilt through the
allow list of ``priorfit.registry``, never by ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Collection, Iterable
from pathlib import Path

import torch

from priorfit._files import atomic_write
from priorfit._validation import check_device
from priorfit.card import CARD_KEY, CalibrationCard, card_from_metadata
from priorfit.errors import CheckpointError, PriorfitValidationError

__all__ = [
    "load_task",
    "load_pfn_model",
    "load_checkpoint",
    "load_pfn",
    "cached_pfn",
    "load_weights",
    "export_checkpoint",
    "is_priorfit_checkpoint",
    "read_config",
    "read_card",
    "PFNModel",
    "FORMAT_VERSION",
]

FORMAT_VERSION = "1"
_TASKS = {"PFNTask": "priorfit.tasks.pfn", "PosteriorTask": "priorfit.tasks.posterior", "DTTask": "priorfit.tasks.dt"}


def export_checkpoint(task: torch.nn.Module, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write weights + configs (and the task's calibration card, ``task.card``, when it has one) as one safetensors
    file (atomically: temp file, then rename).

    An existing priorfit checkpoint at ``path`` is replaced; any other existing file (or folder) is refused
    unless ``overwrite=True``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir() or (path.exists() and not overwrite and not is_priorfit_checkpoint(path)):
        raise CheckpointError(
            f"{path} exists and is not a priorfit checkpoint; refusing to replace it. Choose another path, or pass "
            "overwrite=True to replace the file."
        )
    metadata = {
        "priorfit_format": FORMAT_VERSION,
        "task": type(task).__name__,
        "hyper_parameters": json.dumps(dict(task.hparams)),
    }
    card = getattr(task, "card", None)
    if card is not None:
        metadata[CARD_KEY] = json.dumps(card.to_dict())
    tensors = {name: value.detach().cpu().contiguous() for name, value in task.state_dict().items()}
    try:
        atomic_write(path, lambda temp: save_file(tensors, temp, metadata=metadata))
    except OSError as error:
        raise CheckpointError(f"cannot write the checkpoint {path}: {error}") from None
    return path


def is_priorfit_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a priorfit safetensors export (read from its header only) or a readable Lightning file."""
    path = Path(path)
    metadata = _header_metadata(path)
    if metadata is not None:
        return "priorfit_format" in metadata
    try:
        _read_lightning(path)
    except CheckpointError:
        return False
    return True


def load_checkpoint(
    name_or_path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    trusted_targets: Collection[str] = (),
):
    """Deprecated: use :func:`priorfit.load` (the object you query) or :func:`load_task` (the training task)."""
    _deprecated("priorfit.load_checkpoint", "priorfit.load(name_or_path)")
    return load_task(name_or_path, map_location=map_location, trusted_targets=trusted_targets)


def load_pfn(name_or_path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> PFNModel:
    """Deprecated: use :func:`priorfit.load`, or :func:`load_pfn_model` for the bare network and head."""
    _deprecated("priorfit.load_pfn", "priorfit.load(name_or_path)")
    return load_pfn_model(name_or_path, map_location=map_location)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in priorfit 0.2; use {new}", DeprecationWarning, 3)


def load_task(
    name_or_path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    trusted_targets: Collection[str] = (),
):
    """Rebuild a trained task (network, head and prior) from a checkpoint: what training, fine-tuning and
    ``priorfit-eval`` start from (users call :func:`priorfit.load`).

    Accepts a path to a Lightning ``.ckpt`` written by ``priorfit-train`` or a
    ``.safetensors`` export, or a registered name (``"pfn-gp-1d"``; see ``priorfit.hub``), which
    is looked up in the bundled files, then the cache, then downloaded, and hash-checked each time.
    The returned module is in eval mode.

    The stored configuration may name only priorfit's own prior and network classes
    (``priorfit.registry.FAMILIES``); a model trained on your own prior class loads only when you name that
    class in ``trusted_targets`` (e.g. ``{"my_priors.SineWaves"}``) and its module is importable.
    """
    from priorfit.hub import resolve_checkpoint
    from priorfit.registry import check_config

    trusted_targets = _trusted(trusted_targets)
    check_device(map_location, "map_location")
    path = resolve_checkpoint(name_or_path)
    task_name, hparams, state = _read(path)
    task_cls = _task_class(task_name, path)
    card = read_card(path)
    try:
        check_config(hparams, trusted_targets=trusted_targets, where="hyper_parameters")
        if "head.borders" in state:  # the stored borders: no need to redraw them from the prior
            hparams = {**hparams, "borders": state["head.borders"]}
        task = task_cls(**hparams, trusted_targets=trusted_targets)
    except CheckpointError as error:
        raise type(error)(f"{path}: {error}") from None
    except (PriorfitValidationError, TypeError) as error:  # a stored setting the classes reject
        raise CheckpointError(f"{path}: its stored configuration cannot be rebuilt: {error}") from None
    _load_state(task, state, f"{path}: weights do not match the stored configuration")
    task.card = card
    return task.to(map_location).eval()


def read_card(path: Path) -> CalibrationCard | None:
    """The calibration card stored in a resolved checkpoint file's header (None: the file carries none, e.g. a
    Lightning checkpoint or an export older than the cards)."""
    metadata = _header_metadata(path) if _looks_like_safetensors(_head(path)) else None
    try:
        return card_from_metadata(metadata)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None


def read_config(path: Path) -> tuple[str, dict]:
    """(task class name, stored hyperparameters) of a resolved checkpoint file; a safetensors export is read from its
    header only. Nothing is built or checked against the allow list."""
    metadata = _header_metadata(path) if _looks_like_safetensors(_head(path)) else None
    try:
        hparams = json.loads(metadata["hyper_parameters"])
        if isinstance(hparams, dict):
            return metadata.get("task", "PFNTask"), hparams
    except (KeyError, TypeError, ValueError):
        pass  # not a priorfit safetensors header: _read below reads the whole file and names the problem
    task_name, hparams, _ = _read(path)
    return task_name, hparams


def load_weights(task: torch.nn.Module, name_or_path: str | os.PathLike) -> Path:
    """Copy a checkpoint's weights into an already built ``task`` of the same architecture (fine-tuning start).

    Only the weights move: the task keeps its own prior, optimizer settings and schedule. Returns the resolved path.
    """
    from priorfit.hub import resolve_checkpoint

    path = resolve_checkpoint(name_or_path)
    task_name, _, state = _read(path)
    if task_name != type(task).__name__:
        raise CheckpointError(f"{path} holds a {task_name}; cannot start a {type(task).__name__} from it")
    sizes = "network sizes and num_buckets must match the checkpoint's"
    _load_state(task, state, f"{path}: its weights do not fit this configuration ({sizes})")
    return path


class PFNModel(torch.nn.Module):
    """A trained PFN for inference only: the network and its head, without Lightning or the prior.

    ``model(x_context, y_context, x_query)`` gives per-query logits; ``model.head(logits)`` the
    predictive distribution. ``objective`` is "regression" or "classification"; ``card`` the file's calibration card.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        head: torch.nn.Module,
        hyper_parameters: dict,
        card: CalibrationCard | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.head = head
        self.hyper_parameters = hyper_parameters
        self.card = card
        self.objective: str = hyper_parameters.get("objective", "regression")

    def forward(self, x_context: torch.Tensor, y_context: torch.Tensor, x_query: torch.Tensor) -> torch.Tensor:
        return self.network(x_context, y_context, x_query)


def load_pfn_model(name_or_path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> PFNModel:
    """Load a PFN checkpoint's network and head for inference (what the estimators use).

    Resolves names and paths like :func:`load_task` but builds only the network and its head
    from the stored configuration, so neither Lightning nor Hydra nor the prior is imported or built.
    """
    from priorfit.hub import resolve_checkpoint
    from priorfit.networks.bar_distribution import BarDistribution
    from priorfit.networks.heads import ClassificationHead
    from priorfit.networks.transformer import PFNTransformer
    from priorfit.registry import build, check_config, resolve_target

    check_device(map_location, "map_location")
    path = resolve_checkpoint(name_or_path)
    task_name, hparams, state = _read(path)
    network_config = hparams.get("network")
    network_config = dict(network_config) if isinstance(network_config, dict) else {}
    target = network_config.setdefault("_target_", "priorfit.networks.PFNTransformer")
    try:  # build() below checks the network config; the head's sizes are checked here
        check_config({key: hparams.get(key) for key in ("objective", "num_classes", "num_buckets")})
        if task_name != "PFNTask" or resolve_target(target) is not PFNTransformer:
            raise CheckpointError(f"it holds a {task_name} ({target}), not a PFN; use priorfit.load for it")
        if hparams.get("objective") == "classification":
            head = ClassificationHead(int(hparams["num_classes"]))
        elif "head.borders" in state:
            head = BarDistribution(state["head.borders"])
        else:
            raise CheckpointError("a regression PFN checkpoint without stored bucket borders")
        network = build(network_config, num_outputs=head.num_outputs)
    except CheckpointError as error:
        raise type(error)(f"{path}: {error}") from None
    except (PriorfitValidationError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: its stored network configuration cannot be rebuilt: {error}") from None
    model = PFNModel(network, head, hparams, card=read_card(path))
    weights = {key: value for key, value in state.items() if key.startswith(("network.", "head."))}
    _load_state(model, weights, f"{path}: weights do not match the stored configuration")
    return model.to(map_location).eval()


def _trusted(names) -> frozenset[str]:
    if isinstance(names, str) or not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(
            f"trusted_targets must be a set of class names such as {{'my_priors.SineWaves'}}, got {names!r:.60}"
        )
    return frozenset(names)


def cached_pfn(name_or_path: str | os.PathLike, device: str = "cpu") -> PFNModel:
    """:func:`load_pfn_model`, built once per file and device for every estimator (a shared, read-only model).

    Keyed on the file's identity (path, size, mtime, inode), not the name or path string, so a file replaced on
    disk is read again.
    """
    from priorfit.hub import file_identity, resolve_checkpoint

    return _pfn_of_file(file_identity(resolve_checkpoint(name_or_path)), str(device))


@functools.lru_cache(maxsize=8)
def _pfn_of_file(identity: tuple, device: str) -> PFNModel:
    return load_pfn_model(Path(identity[0]), map_location=device)


def _load_state(module: torch.nn.Module, state: dict, problem: str) -> None:
    """``load_state_dict``, with torch's shape / key mismatch turned into a ``CheckpointError`` saying ``problem``."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{problem}: {error}") from None


def _read(path: Path) -> tuple[str, dict, dict]:
    """(task class name, hyperparameters, state dict) of a safetensors export or a Lightning checkpoint."""
    if path.suffix == ".safetensors" or _looks_like_safetensors(_head(path)):
        return _read_safetensors(path)
    return _read_lightning(path)


def _header_metadata(path: Path) -> dict | None:
    """The ``__metadata__`` of a safetensors header, read without the tensors ({} when it has none), or None when
    the file does not start with a readable safetensors header."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size <= 100_000_000:
                return None
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    metadata = header.get("__metadata__")
    return metadata if isinstance(metadata, dict) else {}


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(16)
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error}") from None


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[str, dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    # the whole file into memory, then tensors copied out of it: a model never reads a file that may be
    # rewritten (or truncated, which kills a memory-mapping process with SIGBUS) while it lives
    try:
        data = path.read_bytes()
        header_size = int.from_bytes(data[:8], "little")
        if header_size > len(data) - 8:  # also a file shorter than the 8-byte length field
            raise ValueError("the header is longer than the file")
        header = json.loads(data[8 : 8 + header_size])
        state = load_safetensors(data)
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or "priorfit_format" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a priorfit checkpoint (no priorfit metadata)")
    try:
        hparams = json.loads(metadata.get("hyper_parameters", ""))
    except ValueError as error:
        raise CheckpointError(f"{path}: its hyper_parameters metadata is not valid JSON ({error})") from None
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path}: its hyper_parameters metadata is not a JSON object")
    return metadata.get("task", "PFNTask"), hparams, state


def _read_lightning(path: Path) -> tuple[str, dict, dict]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(
            f"{path} is not a priorfit checkpoint (could not read it: {type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "hyper_parameters" not in payload:
        raise CheckpointError(f"{path} is not a priorfit checkpoint (no state_dict / hyper_parameters)")
    if not isinstance(payload["hyper_parameters"], dict) or not isinstance(payload["state_dict"], dict):
        raise CheckpointError(f"{path} is not a priorfit checkpoint (hyper_parameters / state_dict are not dicts)")
    hparams = dict(payload["hyper_parameters"])
    # Lightning checkpoints name no class: a posterior task is the one with θ's size among its settings
    task_name = payload.get("priorfit_task", "PosteriorTask" if "theta_dim" in hparams else "PFNTask")
    return task_name, hparams, payload["state_dict"]


def _task_class(name: str, path: Path):
    import importlib

    if not isinstance(name, str) or name not in _TASKS:
        raise CheckpointError(f"{path}: unknown task type {name!r}; known: {sorted(_TASKS)}")
    return getattr(importlib.import_module(_TASKS[name]), name)
