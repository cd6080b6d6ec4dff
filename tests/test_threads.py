"""torch's thread count at import: lowered to the free cores on a busy machine, or what the user set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from priorfit import _threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_free_cores_subtracts_the_busy_ones(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.7, 1.0, 1.0))
    monkeypatch.setattr(_threads, "runnable_others", lambda: 3)
    assert _threads.free_cores() == 2  # busy now and over the last minute
    monkeypatch.setattr(_threads, "runnable_others", lambda: 0)
    assert _threads.free_cores() == 4  # the load of a job that just ended
    monkeypatch.setattr(_threads, "runnable_others", lambda: None)  # no /proc: the load average alone
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 1.0, 1.0))
    assert _threads.free_cores() == 1  # never zero


def test_runnable_others_reads_this_machine():
    others = _threads.runnable_others()
    if os.path.exists("/proc/loadavg"):
        assert isinstance(others, int) and others >= 0  # read, not the fallback
    else:
        assert others is None


def test_a_busy_machine_lowers_the_threads_and_an_idle_one_keeps_them(monkeypatch):
    for name in ("PRIORFIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(2)
    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    assert _threads.apply_default_threads() == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    monkeypatch.setattr(_threads, "free_cores", lambda: 8)
    assert _threads.apply_default_threads() == 2 and torch.get_num_threads() == 2  # never raised


def test_the_users_choice_wins(monkeypatch):
    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _threads.apply_default_threads() == 2  # OpenMP's own setting: left alone
    monkeypatch.setenv("PRIORFIT_THREADS", "3")
    assert _threads.apply_default_threads() == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("PRIORFIT_THREADS", "many")
    with pytest.warns(UserWarning, match="PRIORFIT_THREADS='many' is not a positive integer"):
        assert _threads.apply_default_threads() == 1


def test_import_priorfit_applies_it():
    env = {**os.environ, "PRIORFIT_THREADS": "1"}
    env.pop("OMP_NUM_THREADS", None)
    code = "import torch, priorfit; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
