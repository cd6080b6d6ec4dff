"""glibc's allocator keeps freed memory during training (priorfit/_allocator.py): checked by the process's resident
memory after a large tensor is freed, in fresh processes so this one keeps its own settings."""

import json
import os
import platform
import subprocess
import sys

import pytest

from tests.helpers import TINY_NETWORK, TINY_POSTERIOR, train_briefly

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting applies to glibc only"
)

PROBE = """
import json, sys, torch
from priorfit._allocator import keep_freed_memory
def resident_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
block = torch.ones(64 << 18)  # 64 MB, every page written
before = resident_mb()
del block
print(json.dumps({"applied": applied, "again": keep_freed_memory() if applied else None,
                  "released_mb": before - resident_mb()}))
"""


def _probe(mode: str, **environment: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.pop("PRIORFIT_ALLOCATOR", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env={**env, **environment}, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_blocks_stay_in_the_process_once_applied():
    default = _probe("leave")
    kept = _probe("keep")
    assert default["released_mb"] > 50  # glibc's default hands a 64 MB block straight back to the OS
    assert kept["applied"] and kept["again"]
    assert kept["released_mb"] < 5  # kept for the next step's allocation


def test_opting_out_leaves_glibc_alone():
    for environment in ({"PRIORFIT_ALLOCATOR": "default"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}):
        result = _probe("keep", **environment)
        assert not result["applied"]
        assert result["released_mb"] > 50


@pytest.mark.parametrize(
    ("experiment", "module"),
    [
        ([*TINY_NETWORK, "trainer.val_check_interval=100"], "pfn"),
        (["experiment=sbi_two_moons", *TINY_POSTERIOR], "posterior"),
        (["experiment=dt_linear_gaussian_2d_message_small", "trainer.val_check_interval=100"], "dt"),
    ],
)
def test_every_task_applies_it_when_fitting_starts(tmp_path, monkeypatch, experiment, module):
    calls = []
    monkeypatch.setattr(f"priorfit.tasks.{module}.keep_freed_memory", lambda: calls.append(module))
    train_briefly(tmp_path, [*experiment, "trainer.max_steps=2", "callbacks=none"])
    assert calls == [module]
