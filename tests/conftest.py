"""Shared fixtures: no wandb network access, threads the machine can spare, fixed seeds."""

from __future__ import annotations

import os

import pytest
import torch

from priorfit._threads import apply_default_threads

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
apply_default_threads()  # the cores other jobs leave free (``PRIORFIT_THREADS=N`` to choose)


@pytest.fixture(autouse=True)
def _seed_and_quiet(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    torch.manual_seed(0)


def make_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where CUDA is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
