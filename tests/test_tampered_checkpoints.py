"""A checkpoint is data, never code: tampered configurations never run code or write files on any load path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from priorfit import CheckpointError, load
from priorfit.checkpoint import load_pfn_model, load_task, load_weights
from priorfit.errors import UntrustedTargetError
from priorfit.evaluate import evaluate_checkpoint
from priorfit.tasks.posterior import PosteriorTask, SimulationShapes


def _open_for_writing(sentinel: Path) -> dict:
    return {"_target_": "builtins.open", "file": str(sentinel), "mode": "w"}


def _copy_file(sentinel: Path) -> dict:
    return {"_target_": "shutil.copyfile", "src": __file__, "dst": str(sentinel)}


def _torch_load(sentinel: Path) -> dict:
    return {"_target_": "torch.load", "f": str(sentinel), "weights_only": False}


def _write_text(sentinel: Path) -> dict:
    return {"_target_": "pathlib.Path.write_text", "_args_": [str(sentinel), "pwned"]}


PAYLOADS = {"open": _open_for_writing, "copyfile": _copy_file, "torch_load": _torch_load, "write_text": _write_text}


def _where(hparams: dict, kind: str, payload: dict) -> None:
    """Plant ``payload`` in a copy of the hyperparameters: the prior, a nested prior argument or the network."""
    if kind == "prior":
        hparams["prior"] = payload
    elif kind == "nested_prior":
        prior = hparams["prior"]
        if "_target_" not in prior:  # a posterior trained on given simulations stores a description only
            hparams["prior"] = {"_target_": "priorfit.priors.GPPrior", "lengthscale": payload}
        else:
            prior["lengthscale" if "GPPrior" in prior["_target_"] else "likelihood_options"] = payload
    elif kind == "network":
        hparams["network"] = {**payload, **{k: v for k, v in hparams["network"].items() if k != "_target_"}}
    elif kind == "nested_network":
        key = "encoder" if "encoder" in hparams["network"] else "d_ff"
        hparams["network"][key] = payload
    elif kind == "top_level":
        hparams["lr"] = payload


def _posterior_task() -> PosteriorTask:
    network = {"kind": "flow", "encoder": {"layers": 0, "width": 8, "embed_dim": 8}, "transforms": 1, "hidden": [8]}
    return PosteriorTask(prior=SimulationShapes(2, 2), network=network)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """(task name, hyperparameters, state) of a real checkpoint of each task type."""
    from priorfit.checkpoint import _read
    from priorfit.hub import resolve_checkpoint

    found = {}
    for name in ("pfn-gp-1d", "dt-linear-gaussian-2d"):
        task_name, hparams, state = _read(resolve_checkpoint(name))
        found[task_name] = (hparams, state)
    posterior = _posterior_task()
    found["PosteriorTask"] = (json.loads(json.dumps(dict(posterior.hparams))), posterior.state_dict())
    return found


def _write(directory: Path, task_name: str, hparams: dict, state: dict, fmt: str) -> Path:
    if fmt == "safetensors":
        path = directory / "model.safetensors"
        metadata = {"priorfit_format": "1", "task": task_name, "hyper_parameters": json.dumps(hparams)}
        save_file({k: v.contiguous() for k, v in state.items()}, path, metadata=metadata)
    else:
        path = directory / "last.ckpt"
        torch.save({"state_dict": state, "hyper_parameters": hparams, "priorfit_task": task_name}, path)
    return path


def _init_from(path: Path) -> None:
    """``priorfit-train init_from=PATH``: weights into an already built task; the stored config is never read."""
    load_weights(load_task("pfn-gp-1d"), path)


LOADERS = {
    "PFNTask": {
        "load_task": load_task,
        "load": load,
        "load_pfn_model": load_pfn_model,
        "init_from": _init_from,
        "PFNRegressor": lambda path: __import__("priorfit").PFNRegressor(checkpoint=path).fit([[0.0], [1.0]], [0, 1]),
    },
    "DTTask": {"load_task": load_task, "load": load},
    "PosteriorTask": {
        "load_task": load_task,
        "load": load,
        "priorfit-eval": lambda path: evaluate_checkpoint(str(path), num_posteriors=5, num_samples=10),
    },
}
# every load path against two payloads; the other payloads against the common loader
CASES = [
    (task, kind, payload, fmt, loader)
    for task, loaders in LOADERS.items()
    for kind in ("prior", "nested_prior", "network", "nested_network", "top_level")
    for payload in PAYLOADS
    for fmt in ("safetensors", "ckpt")
    for loader in loaders
    if payload in ("open", "torch_load") or loader == "load_task"
]


@pytest.mark.parametrize("task_name, kind, payload, fmt, loader", CASES)
def test_a_tampered_configuration_runs_no_code(originals, tmp_path, task_name, kind, payload, fmt, loader):
    sentinel = tmp_path / "pwned"
    hparams, state = copy.deepcopy(originals[task_name])
    _where(hparams, kind, PAYLOADS[payload](sentinel))
    path = _write(tmp_path, task_name, hparams, state, fmt)
    load = LOADERS[task_name][loader]
    if loader == "init_from" or (
        loader in ("load_pfn_model", "PFNRegressor") and kind in ("prior", "nested_prior", "top_level")
    ):
        load(path)  # these build the network only (or nothing): the stored prior is never read, so it loads
    else:
        with pytest.raises(UntrustedTargetError):
            load(path)
    assert not sentinel.exists(), f"{loader} ran code from a tampered {fmt} file"


def test_the_error_names_the_class_and_the_switch(originals, tmp_path):
    hparams, state = copy.deepcopy(originals["PFNTask"])
    hparams["prior"] = {"_target_": "my_priors.SineWaves"}
    path = _write(tmp_path, "PFNTask", hparams, state, "safetensors")
    with pytest.raises(UntrustedTargetError, match=r"'my_priors.SineWaves'.*trusted_targets"):
        load_task(path)


def test_a_trusted_prior_class_loads(originals, tmp_path, monkeypatch):
    """The user's own prior loads when they name it, and only that name."""
    (tmp_path / "my_priors_for_test.py").write_text(
        "from priorfit.priors import GPPrior\n\nclass Sine(GPPrior):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hparams, state = copy.deepcopy(originals["PFNTask"])
    hparams["prior"] = {**hparams["prior"], "_target_": "my_priors_for_test.Sine"}
    path = _write(tmp_path, "PFNTask", hparams, state, "safetensors")
    with pytest.raises(UntrustedTargetError):
        load_task(path, trusted_targets={"my_priors_for_test.Other"})
    task = load_task(path, trusted_targets={"my_priors_for_test.Sine"})
    assert type(task.prior).__name__ == "Sine"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("n_layers", 10**7, r"n_layers = 10000000 is outside"),
        ("d_model", 10**9, r"d_model = 1000000000 is outside"),
        ("n_heads", 0, r"n_heads = 0 is outside"),
        ("d_ff", 2.5, r"d_ff must be an integer"),
        ("n_layers", True, r"n_layers must be an integer"),
        ("d_model", "128", r"d_model must be an integer"),
        ("decoder_hidden", [64] * 100, r"100 sizes"),
        ("extra", "x" * 100_000, r"a string of 100000 characters"),
        ("_recursive_", False, r"not accepted in a stored configuration"),
    ],
)
def test_sizes_in_a_file_are_bounded(originals, tmp_path, key, value, message):
    hparams, state = copy.deepcopy(originals["PFNTask"])
    hparams["network"][key] = value
    path = _write(tmp_path, "PFNTask", hparams, state, "safetensors")
    for loader in (load_task, load_pfn_model, load):
        with pytest.raises(CheckpointError, match=message):
            loader(path)


def test_deep_nesting_is_refused(originals, tmp_path):
    hparams, state = copy.deepcopy(originals["PFNTask"])
    deep: dict = {}
    for _ in range(100):
        deep = {"inner": deep}
    hparams["prior"]["lengthscale"] = deep
    path = _write(tmp_path, "PFNTask", hparams, state, "safetensors")
    with pytest.raises(CheckpointError, match="nested deeper"):
        load_task(path)


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", "null"])
def test_metadata_that_is_not_a_json_object(originals, tmp_path, bad):
    _, state = originals["PFNTask"]
    path = tmp_path / "model.safetensors"
    save_file(dict(state), path, metadata={"priorfit_format": "1", "task": "PFNTask", "hyper_parameters": bad})
    with pytest.raises(CheckpointError, match="hyper_parameters metadata"):
        load_task(path)


def test_an_unknown_task_name_is_refused(originals, tmp_path):
    hparams, state = copy.deepcopy(originals["PFNTask"])
    path = _write(tmp_path, "os.system", hparams, state, "ckpt")
    with pytest.raises(CheckpointError, match="unknown task type"):
        load_task(path)
