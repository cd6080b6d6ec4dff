"""trainer=ddp_sim: two CPU processes (ddp_spawn over gloo) draw different prior data and still learn."""

import json
import math
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate

from priorfit.train import build
from tests.helpers import TINY_NETWORK, compose_config


class RecordBatches(pl.Callback):
    """Writes each rank's training batch fingerprints (index, sum of y) to a JSON file."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.seen: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((int(batch.meta["index"]), float(batch.y.sum())))

    def on_train_end(self, trainer, pl_module) -> None:
        path = Path(self.directory) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"seen": self.seen, "val_nll": float(trainer.callback_metrics["val/nll"])}))


def test_ddp_sim_ranks_draw_different_data_and_converge(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "trainer=ddp_sim",
            "trainer.max_steps=400",
            "trainer.val_check_interval=400",
            "data.batch_size=16",
            "data.num_points=30",
            "data.max_context=20",
            "task.lr=3e-3",
            "task.warmup_steps=10",
            *TINY_NETWORK,
        ],
    )
    task, datamodule = build(cfg)
    trainer = instantiate(
        cfg.trainer, logger=False, callbacks=[RecordBatches(str(tmp_path))], enable_checkpointing=False
    )
    trainer.fit(task, datamodule=datamodule)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert len(rank0["seen"]) == len(rank1["seen"]) == 400
    # same stream positions, different data
    assert [i for i, _ in rank0["seen"]] == [i for i, _ in rank1["seen"]]
    assert all(abs(a - b) > 1e-6 for (_, a), (_, b) in zip(rank0["seen"], rank1["seen"]))
    prior_predictive_nll = 0.5 * math.log(2 * math.pi * math.e * 1.05)
    assert rank0["val_nll"] < prior_predictive_nll - 0.2
