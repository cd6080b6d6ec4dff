import pytest
import torch
from safetensors.torch import save_file

import priorfit
from priorfit import CheckpointError
from priorfit.checkpoint import load_task
from priorfit.priors import GPPrior
from tests.helpers import TINY_NETWORK, train_briefly


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    steps = ["trainer.max_steps=4", "trainer.val_check_interval=4", "callbacks.model_checkpoint.every_n_train_steps=2"]
    return train_briefly(tmp_path_factory.mktemp("run"), [*steps, *TINY_NETWORK])


def test_checkpoint_alone_rebuilds_model_and_prior(trained_run):
    task = trained_run["task"].eval()
    batch = GPPrior().sample(3, 12, generator=torch.Generator().manual_seed(0))
    xc, yc, xq = batch.x[:, :8], batch.y[:, :8], batch.x[:, 8:]
    expected = task(xc, yc, xq)
    for path in (trained_run["checkpoint"], trained_run["model_file"]):
        loaded = load_task(path)
        assert isinstance(loaded.prior, GPPrior) and loaded.prior.has_exact_predictive
        assert torch.allclose(loaded(xc, yc, xq), expected, atol=1e-6)
        predictive = loaded.predictive(xc, yc, xq)
        assert predictive.mean.shape == (3, 4)
        assert type(priorfit.load(path)).__name__ == "PFNTask"  # a GP PFN: the task, predictive and prior


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_task(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_task(tmp_path)


def test_files_that_are_not_priorfit_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="not a priorfit checkpoint"):
        load_task(garbage)
    other_torch = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other_torch)
    with pytest.raises(CheckpointError, match="not a priorfit checkpoint"):
        load_task(other_torch)
    plain_safetensors = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain_safetensors)
    with pytest.raises(CheckpointError, match="not a priorfit checkpoint"):
        load_task(plain_safetensors)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(trained_path := plain_safetensors, "rb").read()[:20])
    with pytest.raises(CheckpointError):
        load_task(truncated)
    assert trained_path.exists()  # never deletes a user's file


def test_checkpoint_errors_are_value_errors():
    assert issubclass(CheckpointError, ValueError)


def test_bundled_gp_checkpoint_is_close_to_the_exact_posterior():
    """The shipped pfn-gp-1d model, checked against the exact GP on fresh prior draws."""
    model = load_task("pfn-gp-1d")
    prior = model.prior
    assert prior.has_exact_predictive and prior.lengthscale.value == 0.2
    held = prior.sample(300, 60, generator=torch.Generator().manual_seed(99))
    xq, yq = held.x[:, 50:], held.y[:, 50:]
    gaps = []
    with torch.no_grad():
        for n in (1, 5, 20, 50):
            nll = model.head.nll(model(held.x[:, :n], held.y[:, :n], xq), yq[..., 0]).mean()
            exact = -prior.predictive_log_density(held.x[:, :n], held.y[:, :n], xq, yq).mean()
            gaps.append((nll - exact).item())
    assert max(gaps) < 0.06, gaps
    assert sum(gaps) / len(gaps) < 0.04, gaps


def test_inference_loader_matches_the_full_task():
    """load_pfn builds only network + head (no Lightning, no prior) and gives the same outputs."""
    from priorfit.checkpoint import load_pfn_model

    task, model = load_task("pfn-gp-1d"), load_pfn_model("pfn-gp-1d")
    assert model.objective == "regression" and torch.equal(model.head.borders, task.head.borders)
    data = task.prior.sample(2, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = task(data.x[:, :20], data.y[:, :20], data.x[:, 20:])
        torch.testing.assert_close(model(data.x[:, :20], data.y[:, :20], data.x[:, 20:]), expected)


def test_unknown_checkpoint_name_lists_bundled_ones():
    with pytest.raises(CheckpointError, match="pfn-gp-1d"):
        load_task("pfn-gp-2d")
