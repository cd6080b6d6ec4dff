import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

import priorfit.conf
from priorfit.train import train
from tests.helpers import TINY_NETWORK, TINY_POSTERIOR, compose_config

EXPERIMENTS = sorted(p.stem for p in (Path(priorfit.conf.__file__).parent / "experiment").glob("*.yaml"))


def test_all_required_experiments_exist():
    assert len(EXPERIMENTS) >= 10, EXPERIMENTS
    assert {"gp_tiny", "gp_rbf_1d", "gp_hyper", "bnn"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_runs_a_fast_dev_run(experiment, tmp_path):
    tiny = TINY_POSTERIOR if experiment.startswith("sbi_") else TINY_NETWORK
    cfg = compose_config(tmp_path, [f"experiment={experiment}", "+trainer.fast_dev_run=true", *tiny])
    assert cfg.experiment_name == experiment
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert "val/nll" in metrics
    assert (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "fsdp", "ddp_sim"])
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_config(tmp_path, [f"trainer={trainer}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if trainer in ("gpu", "ddp", "fsdp"):
        assert cfg.trainer.precision == "bf16-mixed"
    if trainer == "ddp_sim":
        assert cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"


def test_unknown_experiment_lists_the_available_ones(tmp_path):
    with pytest.raises(MissingConfigException) as error:
        compose_config(tmp_path, ["experiment=gp_huge"])
    message = str(error.value)
    assert "gp_huge" in message
    for name in EXPERIMENTS:
        assert name in message


def test_wandb_is_offline_by_default(tmp_path):
    cfg = compose_config(tmp_path, ["logger=wandb"])
    assert cfg.logger.offline is True


# a few seconds of CPU for a CLI run
SHORT_CLI_RUN = [
    "data.val_batches=1",
    "task.border_datasets=200",
    "network.n_layers=1",
    "trainer.enable_progress_bar=false",
]


def _cli(args: list[str], cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(env_extra)
    command = [sys.executable, "-m", "priorfit.train", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_trains_from_any_directory_with_offline_wandb_and_reports_the_gap(tmp_path):
    """The README's main command, shortened: no account, no network, ends with the checkpoint and gap."""
    result = _cli(
        ["trainer.max_steps=4", "trainer.val_check_interval=2", *SHORT_CLI_RUN],
        cwd=tmp_path,
        env_extra={"PRIORFIT_RUNS_DIR": str(tmp_path / "runs"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NLL gap to the exact posterior predictive" in result.stdout
    assert "last.ckpt" in result.stdout
    run_dirs = list((tmp_path / "runs" / "gp_tiny").iterdir())
    assert len(run_dirs) == 1
    assert list(run_dirs[0].glob("wandb/offline-run-*")), "wandb should have written an offline run"
    log = (run_dirs[0] / "train.log").read_text()
    assert "configuration:" in log and "NLL gap to the exact posterior predictive" in log  # not empty any more
    assert "💡" not in result.stdout + result.stderr  # Lightning's advertisements are dropped


@pytest.mark.slow
def test_multirun_sweep(tmp_path):
    result = _cli(
        [
            "-m",
            *[o for o in SHORT_CLI_RUN if not o.startswith("network.n_layers")],
            "network.n_layers=1,2",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "logger=none",
        ],
        cwd=tmp_path,
        env_extra={"PRIORFIT_RUNS_DIR": str(tmp_path / "runs")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "runs" / "multirun" / "gp_tiny").glob("*/*/model.safetensors"))
    assert len(jobs) == 2


def test_user_prior_from_own_config_dir(tmp_path):
    """The README recipe: a plain class with sample(...), a config file, --config-dir."""
    (tmp_path / "my_priors.py").write_text(
        "import torch\n"
        "from priorfit.priors import Batch\n\n"
        "class SineWaves:\n"
        "    num_features = 1\n\n"
        "    def sample(self, batch_size, num_points, *, generator=None):\n"
        "        x = torch.rand(batch_size, num_points, 1, generator=generator) * 6\n"
        "        phase = torch.rand(batch_size, 1, 1, generator=generator) * 6.28\n"
        "        y = torch.sin(x + phase) + 0.1 * torch.randn(batch_size, num_points, 1, generator=generator)\n"
        "        return Batch(x=x, y=y)\n"
    )
    (tmp_path / "my_conf" / "prior").mkdir(parents=True)
    (tmp_path / "my_conf" / "prior" / "sine.yaml").write_text("_target_: my_priors.SineWaves\n")
    result = _cli(
        [
            "--config-dir",
            "my_conf",
            "prior=sine",
            "experiment_name=sine",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "logger=none",
            *SHORT_CLI_RUN,
        ],
        cwd=tmp_path,
        env_extra={"PRIORFIT_RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no exact posterior predictive for SineWaves" in result.stdout
    assert list((tmp_path / "runs" / "sine").glob("*/model.safetensors"))


def test_tabular_classification_config_runs(tmp_path):
    cfg = compose_config(
        tmp_path, ["prior=scm", "task=pfn_classification", "+trainer.fast_dev_run=true", *TINY_NETWORK]
    )
    assert cfg.task.num_classes == cfg.prior.max_classes == 10
    metrics, objects = train(cfg)
    assert objects["task"].hparams.objective == "classification" and metrics["val/nll"] > 0
