"""Infinite streams of freshly sampled prior batches, seeded per rank, worker and batch index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from priorfit._validation import check_int
from priorfit.errors import InvalidHyperparameterError
from priorfit.priors.base import Batch, Prior

__all__ = ["PriorStream", "FixedPriorSet", "PriorDataModule", "batch_seed"]


def batch_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (base seed, rank, batch index, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_training_batch(
    prior: Prior, seed: int, batch_size: int, num_points: int, min_context: int, max_context: int
) -> Batch:
    """One batch plus the number of its points used as context (the rest are queries)."""
    generator = torch.Generator().manual_seed(seed)
    num_context = int(torch.randint(min_context, max_context + 1, (1,), generator=generator))
    batch = prior.sample(batch_size, num_points, generator=generator)
    batch.meta["num_context"] = num_context
    return batch


class PriorStream(IterableDataset):
    """Endless batches; batch ``i`` is a pure function of (seed, rank, i).

    With several DataLoader workers, worker w yields indices w, w + W, w + 2W, ...; the
    DataLoader takes workers round-robin, so the trainer still sees indices in order and
    a resumed run (``start_index``) continues the same stream.
    """

    def __init__(
        self,
        prior: Prior,
        *,
        batch_size: int,
        num_points: int,
        min_context: int,
        max_context: int,
        seed: int,
        rank: int = 0,
        start_index: int = 0,
    ) -> None:
        self.prior = prior
        self.batch_size = batch_size
        self.num_points = num_points
        self.min_context = min_context
        self.max_context = max_context
        self.seed = seed
        self.rank = rank
        self.start_index = start_index

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index = self.start_index + worker
        while True:
            batch = sample_training_batch(
                self.prior,
                batch_seed(self.seed, self.rank, index),
                self.batch_size,
                self.num_points,
                self.min_context,
                self.max_context,
            )
            batch.meta["index"] = index
            yield batch
            index += num_workers


class FixedPriorSet(Dataset):
    """A fixed, seeded list of batches (validation); identical on every rank."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


class PriorDataModule(pl.LightningDataModule):
    """Training stream and fixed validation set for one prior.

    Args:
        prior: anything with ``sample(batch_size, num_points, *, generator)``.
        batch_size: datasets per training batch.
        num_points: points per dataset (context + queries).
        min_context, max_context: each batch uses a uniform random number of context points
            in this range; the remaining ``num_points - n`` are queries.
        val_batches, val_batch_size: size of the fixed validation set; its context sizes
            are spread evenly over [min_context, max_context].
        seed: base seed; training batches are also keyed by distributed rank.
        val_seed: seed of the validation set (None: ``seed``); fix it to compare runs trained with different seeds.
        num_workers: DataLoader worker processes for the training stream.
    """

    def __init__(
        self,
        prior: Prior,
        *,
        batch_size: int = 64,
        num_points: int = 60,
        min_context: int = 1,
        max_context: int | None = None,
        val_batches: int = 8,
        val_batch_size: int = 64,
        seed: int = 0,
        val_seed: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        max_context = self.check_settings(
            batch_size=batch_size,
            num_points=num_points,
            min_context=min_context,
            max_context=max_context,
            val_batches=val_batches,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
        )
        self.prior = prior
        self.batch_size = batch_size
        self.num_points = num_points
        self.min_context = min_context
        self.max_context = max_context
        self.val_batches = val_batches
        self.val_batch_size = val_batch_size
        self.seed = seed
        self.val_seed = seed if val_seed is None else val_seed
        self.num_workers = num_workers
        self.next_index = 0  # first training batch index not yet consumed
        self._val_set: FixedPriorSet | None = None

    @staticmethod
    def check_settings(
        *,
        batch_size: int = 64,
        num_points: int = 60,
        min_context: int = 1,
        max_context: int | None = None,
        val_batches: int = 8,
        val_batch_size: int = 64,
        num_workers: int = 0,
        **_: Any,
    ) -> int:
        """Named errors for impossible settings (``priorfit-train`` calls it before building anything); returns
        the effective ``max_context``."""
        check_int(batch_size, "data.batch_size", minimum=1)
        check_int(num_points, "data.num_points", minimum=2)
        check_int(min_context, "data.min_context", minimum=1)
        check_int(val_batches, "data.val_batches", minimum=1)
        check_int(val_batch_size, "data.val_batch_size", minimum=1)
        check_int(num_workers, "data.num_workers", minimum=0)
        max_context = num_points - 1 if max_context is None else check_int(max_context, "data.max_context", minimum=1)
        if not 1 <= min_context <= max_context < num_points:
            raise InvalidHyperparameterError(
                f"need 1 <= min_context <= max_context < num_points, got {min_context}, {max_context}, {num_points}"
            )
        return max_context

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_rank if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        stream = PriorStream(
            self.prior,
            batch_size=self.batch_size,
            num_points=self.num_points,
            min_context=self.min_context,
            max_context=self.max_context,
            seed=self.seed,
            rank=self._rank(),
            start_index=self.next_index,
        )
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
        )

    def validation_set(self) -> FixedPriorSet:
        if self._val_set is None:
            contexts = np.linspace(self.min_context, self.max_context, self.val_batches)
            batches = []
            for i, num_context in enumerate(contexts.round().astype(int)):
                generator = torch.Generator().manual_seed(batch_seed(self.val_seed, 2**31 - 1, i))
                batch = self.prior.sample(self.val_batch_size, self.num_points, generator=generator)
                batch.meta["num_context"] = int(num_context)
                batch.meta["index"] = -1 - i
                batches.append(batch)
            self._val_set = FixedPriorSet(batches)
        return self._val_set

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.validation_set(), batch_size=None, shuffle=False)

    def on_before_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and batch.meta.get("index", -1) >= 0:
            self.next_index = int(batch.meta["index"]) + 1
        return batch

    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch:
        return batch.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {"next_index": self.next_index}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_index = int(state_dict["next_index"])
