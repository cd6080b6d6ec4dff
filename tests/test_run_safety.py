"""A run never loses work and a file is never half-written or silently replaced (kill tests run real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import priorfit
from priorfit import AmortizedPosterior, CheckpointError, InvalidHyperparameterError
from priorfit.checkpoint import export_checkpoint, load_pfn_model
from priorfit.hub import resolve_checkpoint
from priorfit.runs import RUN_SUFFIX, AtomicCheckpointIO, check_resume_path
from priorfit.train import train
from tests.helpers import TINY_NETWORK, compose_config

TRAIN = [sys.executable, "-m", "priorfit.train"]
SHORT = ["logger=none", "trainer.enable_progress_bar=false", "data.batch_size=8", "data.val_batches=1"]
SHORT += ["data.val_batch_size=8", "task.border_datasets=100", *TINY_NETWORK]


class _Payload:
    """Unpickling this writes a file: what a malicious .ckpt does."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_sigterm_saves_last_ckpt_and_exits_143(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [*TRAIN, f"hydra.run.dir={out}", "trainer.max_steps=1000000", "trainer.val_check_interval=1000000", *SHORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 120
    while not (out / ".hydra").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(10)  # imports, borders, then some training steps
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-2000:]
    last = out / "checkpoints" / "last.ckpt"
    assert last.exists(), output[-2000:]
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] > 0 and "stopped by SIGTERM" in output
    check_resume_path(str(last))  # resumable: plain tensors and values


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from priorfit.runs import AtomicCheckpointIO

    path = sys.argv[1]
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)

    real_save = torch.save
    def save_half_then_die(obj, file):  # the kill lands in the middle of writing the second checkpoint
        real_save(obj, file)
        with open(file, "r+b") as handle:
            handle.truncate(os.path.getsize(file) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = save_half_then_die
    io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    """
)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert torch.load(path, weights_only=True)["step"] == 1  # the old file, whole


def test_checkpoint_io_reads_with_weights_only(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(str(sentinel))}, evil)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported"):
        AtomicCheckpointIO().load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="weights_only=True only"):
        AtomicCheckpointIO().load_checkpoint(evil, weights_only=False)
    assert not sentinel.exists()


def test_resuming_from_a_pickle_payload_runs_no_code(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(str(sentinel))}, evil)
    cfg = compose_config(tmp_path / "run", ["trainer.max_steps=2", f"ckpt_path={evil}", *TINY_NETWORK])
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        train(cfg)
    assert not sentinel.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/last.ckpt", "https://example.org/x.ckpt", "s3://bucket/x.ckpt"])
def test_a_url_ckpt_path_is_refused(tmp_path, url):
    cfg = compose_config(tmp_path / "run", ["trainer.max_steps=2", f"ckpt_path={url}"])
    with pytest.raises(CheckpointError, match="is a URL"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_missing_ckpt_path_is_a_named_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        check_resume_path(str(tmp_path / "nope.ckpt"))


def test_a_finished_run_is_never_overwritten_without_the_switch(tmp_path):
    overrides = ["trainer.max_steps=2", "trainer.val_check_interval=2", *TINY_NETWORK]
    _, first = train(compose_config(tmp_path, overrides))
    model = Path(first["model_file"])
    before = model.read_bytes()
    with pytest.raises(InvalidHyperparameterError, match="overwrite=true"):
        train(compose_config(tmp_path, [*overrides, "seed=1"]))
    assert model.read_bytes() == before
    train(compose_config(tmp_path, [*overrides, "seed=1", "overwrite=true"]))
    assert model.read_bytes() != before


def test_run_folders_differ_between_processes():
    script = "from priorfit.runs import RUN_SUFFIX; print(RUN_SUFFIX)"
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in "ab"]
    suffixes = {process.communicate(timeout=120)[0] for process in processes}
    assert len(suffixes) == 2
    text = (Path(__import__("priorfit.conf").conf.__file__).parent / "train.yaml").read_text()
    assert text.count("%H-%M-%S}-${run_suffix:}") == 2  # hydra.run.dir and hydra.sweep.dir
    assert OmegaConf.create({"suffix": "${run_suffix:}"}).suffix == RUN_SUFFIX


def _tiny_posterior() -> AmortizedPosterior:
    theta = torch.randn(200, 2)
    post = AmortizedPosterior("gmm", max_epochs=1, logger=None, progress_bar=False, network={"components": 1})
    return post.fit_simulations(theta, theta + 0.1 * torch.randn(200, 2))


def test_save_refuses_to_replace_a_file_that_is_not_a_checkpoint(tmp_path):
    post = _tiny_posterior()
    precious = tmp_path / "precious.txt"
    precious.write_text("my notes")
    with pytest.raises(CheckpointError, match="not a priorfit checkpoint"):
        post.save(precious)
    assert precious.read_text() == "my notes"
    with pytest.raises(CheckpointError, match="not a priorfit checkpoint"):
        post.save(tmp_path)  # a folder
    saved = post.save(tmp_path / "post.safetensors")
    post.save(saved)  # an earlier checkpoint is replaced
    post.save(precious, overwrite=True)
    assert priorfit.load(precious).sample(torch.zeros(2), 5).shape == (5, 2)


def test_exported_files_get_the_umask_mode(tmp_path):
    post = _tiny_posterior()
    old = os.umask(0o022)
    try:
        path = post.save(tmp_path / "post.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob("*.partial"))


def test_a_loaded_model_does_not_change_when_its_file_is_rewritten(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(resolve_checkpoint("pfn-gp-1d").read_bytes())
    model = load_pfn_model(path)
    x = torch.linspace(0, 1, 12).view(1, 12, 1)
    y = torch.sin(6 * x)
    before = model(x[:, :8], y[:, :8], x[:, 8:])
    with open(path, "r+b") as handle:  # rewritten in place (same inode), then cut short
        handle.write(resolve_checkpoint("lc-pfn-small").read_bytes()[: path.stat().st_size])
        handle.truncate(1000)
    assert torch.equal(model(x[:, :8], y[:, :8], x[:, 8:]), before)  # no SIGBUS, the same answer


def test_the_estimators_reload_a_replaced_file(tmp_path):
    from priorfit import PFNRegressor

    path = tmp_path / "model.safetensors"
    X = torch.linspace(0, 1, 20).view(-1, 1).numpy()
    y = (X[:, 0] ** 2).tolist()
    path.write_bytes(resolve_checkpoint("pfn-gp-1d").read_bytes())
    first = PFNRegressor(checkpoint=path, n_estimators=1).fit(X, y).predict(X)
    replacement = tmp_path / "replacement.safetensors"
    replacement.write_bytes(resolve_checkpoint("tabular-reg-small").read_bytes())
    os.replace(replacement, path)
    second = PFNRegressor(checkpoint=path, n_estimators=1).fit(X, y).predict(X)
    assert abs(first - second).max() > 1e-4
    assert PFNRegressor(checkpoint=path, n_estimators=1).fit(X, y).predict(X) == pytest.approx(second)


def test_export_checkpoint_refuses_a_folder(tmp_path):
    post = _tiny_posterior()
    with pytest.raises(CheckpointError):
        export_checkpoint(post.task_, tmp_path)
