import csv
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from priorfit.checkpoint import load_task
from priorfit.errors import CheckpointError
from priorfit.tasks import DTTask, PFNTask, PosteriorTask
from priorfit.train import build, train
from tests.helpers import TINY_NETWORK, TINY_POSTERIOR, compose_config, train_briefly

# NLL of the prior predictive N(0, outputscale + noise) of the gp_rbf prior: what a model that ignores the context gets
PRIOR_PREDICTIVE_NLL = 0.5 * math.log(2 * math.pi * math.e * 1.05)


def test_short_training_beats_the_prior_predictive_by_a_clear_margin(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "trainer.max_steps=300",
            "trainer.val_check_interval=300",
            "data.batch_size=32",
            "data.num_points=30",
            "data.max_context=20",
            "task.lr=3e-3",
            "task.warmup_steps=20",
            "data.val_batches=4",
            "data.val_batch_size=32",
            "callbacks=none",
            *TINY_NETWORK,
        ],
    )
    metrics, _ = train(cfg)
    assert metrics["val/nll"] < PRIOR_PREDICTIVE_NLL - 0.2, metrics
    # the exact GP predictive is the floor; a short run is above it but already far below the baseline
    assert 0.0 < metrics["val/nll_gap"] < PRIOR_PREDICTIVE_NLL - metrics["val/nll_exact"] - 0.2, metrics


class StopAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


RESUME = [
    "trainer.max_steps=16",
    "trainer.val_check_interval=1000",
    "callbacks.model_checkpoint.every_n_train_steps=8",
    "task.warmup_steps=4",
    *TINY_NETWORK,
]


def _fit(tmp_path: Path, extra_callbacks: list, ckpt_path: str | None = None):
    cfg = compose_config(tmp_path, RESUME)
    pl.seed_everything(0)
    task, datamodule = build(cfg)
    callbacks = [instantiate(cfg.callbacks.model_checkpoint), *extra_callbacks]
    trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    return task, trainer, datamodule


def test_resumed_training_matches_uninterrupted_training(tmp_path):
    full_task, full_trainer, _ = _fit(tmp_path / "full", [])
    _, first_trainer, _ = _fit(tmp_path / "split", [StopAt(8)])
    assert first_trainer.global_step == 8
    last = tmp_path / "split" / "checkpoints" / "last.ckpt"
    resumed_task, resumed_trainer, datamodule = _fit(tmp_path / "split", [], ckpt_path=str(last))
    assert resumed_trainer.global_step == full_trainer.global_step == 16
    assert datamodule.next_index == 16
    for (name, a), (_, b) in zip(full_task.state_dict().items(), resumed_task.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


class ThresholdedGP:
    """A user-style classification prior: GP draws cut into 3 classes at fixed thresholds."""

    num_features = 1

    def __init__(self) -> None:
        from priorfit.priors import GPPrior

        self.gp = GPPrior(lengthscale=0.3, noise=0.01)

    def sample(self, batch_size, num_points, *, generator=None):
        batch = self.gp.sample(batch_size, num_points, generator=generator)
        batch.y = torch.bucketize(batch.y, torch.tensor([-0.5, 0.5])).float()
        return batch


def test_classification_objective_trains_on_a_user_prior():
    from priorfit.tasks import PFNTask, PriorDataModule

    task = PFNTask(
        prior={"_target_": "tests.tasks.test_training.ThresholdedGP"},
        network={
            "_target_": "priorfit.networks.PFNTransformer",
            "d_model": 32,
            "n_heads": 2,
            "n_layers": 1,
            "d_ff": 64,
        },
        objective="classification",
        num_classes=3,
        lr=3e-3,
        warmup_steps=5,
        trusted_targets={"tests.tasks.test_training.ThresholdedGP"},  # a class of one's own: trusted by name
    )
    data = PriorDataModule(task.prior, batch_size=16, num_points=30, max_context=20, val_batches=2, val_batch_size=32)
    before = task.query_nll(data.validation_set()[1]).mean().item()
    trainer = pl.Trainer(
        max_steps=60,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        val_check_interval=60,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, datamodule=data)
    after = task.query_nll(data.validation_set()[1]).mean().item()
    assert after < before - 0.2 and after < math.log(3)
    val = data.validation_set()[1]
    probs = task.predictive(val.x[:2, :10], val.y[:2, :10], val.x[:2, 10:]).probs
    assert probs.shape == (2, 20, 3) and torch.allclose(probs.sum(-1), torch.ones(2, 20))


def test_init_from_starts_a_fresh_run_from_a_checkpoints_weights(tmp_path):
    common = ["trainer.val_check_interval=1000", "callbacks=none", *TINY_NETWORK]
    _, first = train(compose_config(tmp_path / "first", ["trainer.max_steps=4", *common]))
    # no steps: the fine-tuning run's export is the source checkpoint's weights
    _, copy = train(
        compose_config(tmp_path / "copy", ["trainer.max_steps=0", f"init_from={first['model_file']}", *common])
    )
    source, copied = load_task(first["model_file"]).state_dict(), load_task(copy["model_file"]).state_dict()
    assert all(torch.equal(source[name], copied[name]) for name in source)
    assert copy["trainer"].global_step == 0
    with pytest.raises(CheckpointError, match="do not fit this configuration"):
        train(
            compose_config(
                tmp_path / "wider",
                ["trainer.max_steps=1", f"init_from={first['model_file']}", *common, "network.d_model=64"],
            )
        )


@pytest.mark.parametrize(
    ("experiment", "metric", "task_type"),
    [
        ([*TINY_NETWORK, "trainer.val_check_interval=100"], "train/nll", PFNTask),
        (["experiment=sbi_two_moons", *TINY_POSTERIOR], "train/loss", PosteriorTask),
        (["experiment=dt_linear_gaussian_2d_message_small", "trainer.val_check_interval=100"], "train/nll", DTTask),
    ],
    ids=["pfn", "posterior", "dt"],
)
def test_training_steps_log_only_the_steps_the_logger_writes(tmp_path, monkeypatch, experiment, metric, task_type):
    calls = []
    original_log = task_type.log

    def counting_log(self, name, *args, **kwargs):
        calls.append(name)
        return original_log(self, name, *args, **kwargs)

    monkeypatch.setattr(task_type, "log", counting_log)
    overrides = ["logger=csv", "trainer.log_every_n_steps=3", "trainer.max_steps=10", "callbacks=none"]
    objects = train_briefly(tmp_path, [*experiment, *overrides])
    with open(Path(objects["trainer"].logger.log_dir) / "metrics.csv") as handle:
        written = [int(row["step"]) for row in csv.DictReader(handle) if row.get(metric)]
    assert written == [2, 5, 8]  # Lightning writes the steps whose count is a multiple of log_every_n_steps
    assert calls.count(metric) == 3  # and self.log ran on those steps only


@pytest.mark.parametrize(("precision", "fused"), [("32-true", True), ("bf16-mixed", False)])
def test_adamw_is_fused_where_lightning_can_clip_its_gradients(tmp_path, precision, fused):
    # Lightning's mixed-precision plugin refuses to clip a fused optimizer's gradients; the run must still train
    overrides = [*TINY_NETWORK, "trainer.max_steps=3", "trainer.val_check_interval=3", "callbacks=none"]
    objects = train_briefly(tmp_path, [*overrides, f"trainer.precision={precision}", "trainer.gradient_clip_val=1.0"])
    assert objects["trainer"].global_step == 3
    assert objects["trainer"].optimizers[0].defaults["fused"] is fused
