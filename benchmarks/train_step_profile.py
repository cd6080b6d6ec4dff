"""Where a PFN training step's time goes: prior sampling, forward, backward, optimizer, and Lightning around them.

On the benchmark model (``experiment=gp_rbf_1d``: 4 layers, width 128, batch 64, 60 points, 1,000 buckets), a
hand-written loop times each part of a step separately (``time.perf_counter`` around each, after warm-up steps);
the same number of steps through ``Trainer.fit`` (no validation, logger or checkpoints) gives the whole step,
so Lightning's share is the difference. Variants: AdamW ``foreach`` against ``fused`` (on CPU torch defaults to
neither, a loop over tensors). Rounds alternate the loop and Lightning so load on the machine hits both alike.
Then ``torch.profiler`` splits the loop's step into matrix products (``aten::mm`` / ``addmm`` / ``bmm``, which any
implementation of this model shape runs alike) and everything else, and a 1,024³ float32 matrix product gives the
machine's GEMM rate, to compare the step's products against.

    python benchmarks/train_step_profile.py [--steps 100] [--rounds 3] [--threads 2]

Writes benchmarks/results/train_step_profile.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from _results import write_json  # benchmarks/ is on sys.path when a script runs
from gp_exact_gap import compose
from hydra.utils import instantiate

from priorfit._allocator import keep_freed_memory
from priorfit.tasks.common import warmup_cosine
from priorfit.train import build

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("sample", "forward", "backward", "optimizer")


def hand_loop(steps: int, fused: bool) -> dict:
    """Seconds per step of each part, from a plain loop over the same task and data stream."""
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose(["logger=none", "callbacks=none"], Path(folder))
        task, datamodule = build(cfg)
    task.train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
    stream = iter(datamodule.train_dataloader())
    totals = dict.fromkeys(PARTS, 0.0)
    for step in range(steps + 5):  # 5 warm-up steps, not counted
        clock = time.perf_counter()
        batch = next(stream)
        sampled = time.perf_counter()
        loss = task.query_nll(batch).mean()
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if step >= 5:
            for part, seconds in zip(PARTS, (sampled - clock, forward - sampled, backward - forward, done - backward)):
                totals[part] += seconds
    per_step = {part: seconds / steps for part, seconds in totals.items()}
    per_step["total"] = sum(per_step.values())
    return per_step


def plain_loop_step(steps: int, skip: int = 5) -> tuple[float, int]:
    """Seconds per step of the same training without Lightning: what ``Trainer.fit`` does each step (the task's
    AdamW settings, its warm-up/cosine schedule, gradient clipping at 1.0, freed memory kept as at fit start),
    written as a plain loop and timed from step ``skip``. The floor a training framework can approach."""
    with tempfile.TemporaryDirectory() as folder:
        task, datamodule = build(compose(["logger=none", "callbacks=none"], Path(folder)))
    keep_freed_memory()
    task.train()
    hp = task.hparams
    optimizer = torch.optim.AdamW(
        task.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas), fused=True
    )
    total = steps + skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, total, hp.min_lr_ratio)
    )
    stream = iter(datamodule.train_dataloader())
    for step in range(total):
        if step == skip:
            started = time.perf_counter()
        task.query_nll(next(stream)).mean().backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps, sum(p.numel() for p in task.network.parameters())


class _StepClock(pl.Callback):
    """Wall time from the start of batch ``skip`` to the end of the last batch."""

    def __init__(self, skip: int) -> None:
        self.skip, self.started, self.ended, self.steps = skip, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.ended, self.steps = time.perf_counter(), batch_idx + 1 - self.skip


def lightning_step(steps: int, skip: int = 5, extra: list[str] | tuple[str, ...] = ()) -> tuple[float, int]:
    """Seconds per step of ``Trainer.fit`` on the same configuration (plus ``extra`` Hydra overrides) after ``skip``
    warm-up steps, and the network's parameter count."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"trainer.max_steps={steps + skip}", "trainer.val_check_interval=100000", "callbacks=none"]
        cfg = compose([*overrides, "logger=none", *extra], Path(folder))
        task, datamodule = build(cfg)
        clock = _StepClock(skip=skip)
        trainer = instantiate(
            cfg.trainer,
            logger=False,
            callbacks=[clock],
            num_sanity_val_steps=0,
            limit_val_batches=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
        )
        trainer.fit(task, datamodule=datamodule)
    return (clock.ended - clock.started) / clock.steps, sum(p.numel() for p in task.network.parameters())


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")


def operator_shares(steps: int) -> dict:
    """Seconds per step in matrix products and in everything else (profiler self times of the hand loop)."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as folder:
        task, datamodule = build(compose(["logger=none", "callbacks=none"], Path(folder)))
    task.train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    stream = iter(datamodule.train_dataloader())

    def step() -> None:
        task.query_nll(next(stream)).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    totals = {event.key: event.self_cpu_time_total / 1e6 / steps for event in profiler.key_averages()}
    products = sum(seconds for key, seconds in totals.items() if key in MATRIX_PRODUCTS)
    everything = sum(totals.values())
    top = sorted(((k, v) for k, v in totals.items() if k not in MATRIX_PRODUCTS), key=lambda kv: -kv[1])[:8]
    return {
        "seconds_per_step_profiled": everything,
        "matrix_products_seconds_per_step": products,
        "matrix_product_share": products / everything,
        "largest_other_operators_seconds_per_step": dict(top),
    }


def gemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    """float32 GFLOP/s of a size³ matrix product with the current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "train_step_profile.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "steps_per_round": args.steps, "load_average_start": os.getloadavg()}
    loops: dict = {"foreach": [], "fused": []}
    lightning = []
    for _ in range(args.rounds):
        for name in loops:
            loops[name].append(hand_loop(args.steps, fused=name == "fused"))
        lightning.append(lightning_step(args.steps)[0])
    for name, rounds in loops.items():
        report[f"hand_loop_{name}"] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    report["lightning_seconds_per_step"] = statistics.median(lightning)
    loop = report["hand_loop_foreach"]["total"]
    # Lightning steps a fused AdamW (where it can clip its gradients), so its overhead is against the fused loop
    report["lightning_overhead_seconds_per_step"] = (
        report["lightning_seconds_per_step"] - report["hand_loop_fused"]["total"]
    )
    report["datasets_per_second"] = {
        "lightning": 64 / report["lightning_seconds_per_step"],
        "hand_loop_foreach": 64 / loop,
        "hand_loop_fused": 64 / report["hand_loop_fused"]["total"],
    }
    report["operators"] = operator_shares(min(args.steps, 40))
    report["gemm_1024_gflops"] = gemm_gflops()
    report["load_average_end"] = os.getloadavg()
    write_json(report, args.out)
    print(report)


if __name__ == "__main__":
    main()
