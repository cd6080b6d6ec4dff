"""One command for the day a CUDA GPU is lent: training throughput, big inference, bf16 vs fp32, and DDP.

In under 5 minutes on one GPU (more GPUs: the DDP step uses them all) it

1. trains ``gp_rbf_1d`` with ``trainer=gpu`` (bf16 mixed precision) for ``--steps`` steps and reports datasets/s
   (the first 20 steps, compilation and warm-up, are not counted);
2. answers 1,000 queries given 10,000 context points with the bundled ``pfn-gp-1d`` (latency, peak GPU memory);
3. compares that answer in bf16 autocast against fp32 (largest difference of the predictive mean and of the
   log-density, which must stay within ``--tolerance`` of the predictive's scale);
4. runs ``trainer=ddp`` on every visible GPU for a few steps (skipped with one GPU);

and writes ``benchmarks/results/gpu_check.json``. Without a CUDA GPU it says so and exits with status 3.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NO_GPU_STATUS = 3


def throughput_meter(warmup: int = 20):
    """A Lightning callback recording the time and step after ``warmup`` steps and at the end of training;
    ``meter.datasets_per_second(batch_size)`` reads the throughput off them."""
    import pytorch_lightning as pl

    class Throughput(pl.Callback):
        start = end = None
        start_step = end_step = 0

        def on_train_batch_end(self, trainer, module, outputs, batch, index) -> None:
            if trainer.global_step == warmup:
                torch.cuda.synchronize()
                self.start, self.start_step = time.perf_counter(), trainer.global_step

        def on_train_end(self, trainer, module) -> None:
            torch.cuda.synchronize()
            self.end, self.end_step = time.perf_counter(), trainer.global_step

        def datasets_per_second(self, batch_size: int) -> float | None:
            if self.start is None or self.end is None or self.end_step <= self.start_step:
                return None
            return (self.end_step - self.start_step) * batch_size / (self.end - self.start)

    return Throughput()


def train_throughput(steps: int, output: Path) -> dict:
    from hydra import compose, initialize_config_module

    from priorfit.train import train

    with initialize_config_module(config_module="priorfit.conf", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "experiment=gp_rbf_1d",
                "trainer=gpu",
                f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={steps}",
                "logger=none",
                "trainer.enable_progress_bar=false",
                f"paths.output_dir={output}",
            ],
        )
    meter = throughput_meter()
    start = time.perf_counter()
    metrics, _ = train(cfg, callbacks=[meter])
    return {
        "steps": steps,
        "batch_size": int(cfg.data.batch_size),
        "datasets_per_second": meter.datasets_per_second(int(cfg.data.batch_size)),
        "wall_seconds": time.perf_counter() - start,
        "final_val_nll": metrics.get("val/nll"),
        "precision": str(cfg.trainer.precision),
    }


def big_inference(context: int = 10_000, queries: int = 1000) -> dict:
    import priorfit

    model = priorfit.load("pfn-gp-1d", device="cuda")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, context + queries, 1, generator=generator)
    y = torch.sin(6 * x[..., 0]) + 0.05 * torch.randn(1, context + queries, generator=generator)
    x, y = x.cuda(), y.cuda()
    xc, yc, xq, yq = x[:, :context], y[:, :context], x[:, context:], y[:, context:]
    model.predictive(xc[:, :100], yc[:, :100], xq[:, :10])  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fp32 = model.predictive(xc, yc, xq)
    torch.cuda.synchronize()
    latency = time.perf_counter() - start
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = model.predictive(xc, yc, xq)
    scale = float(fp32.stddev.mean())
    return {
        "context": context,
        "queries": queries,
        "latency_seconds_fp32": latency,
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
        "bf16_vs_fp32": {
            "max_mean_difference": float((bf16.mean.float() - fp32.mean).abs().max()),
            "max_log_prob_difference": float((bf16.log_prob(yq).float() - fp32.log_prob(yq)).abs().max()),
            "predictive_sd": scale,
        },
    }


def ddp_steps(output: Path, steps: int = 20) -> dict:
    if torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU visible; DDP needs 2 or more"}
    command = [
        sys.executable,
        "-m",
        "priorfit.train",
        "experiment=gp_rbf_1d",
        "trainer=ddp",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={output}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    return {
        "gpus": torch.cuda.device_count(),
        "steps": steps,
        "returncode": result.returncode,
        "seconds": time.perf_counter() - start,
        "model_written": (output / "model.safetensors").is_file(),
        "stderr_tail": result.stderr[-1500:] if result.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=0.05, help="bf16 vs fp32, in units of the predictive sd")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible on this machine (torch.cuda.is_available() is False); nothing was run")
        return NO_GPU_STATUS
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        report["training"] = train_throughput(args.steps, Path(scratch) / "train")
        print("training", report["training"], flush=True)
        report["inference"] = big_inference()
        agreement = report["inference"]["bf16_vs_fp32"]
        agreement["within_tolerance"] = agreement["max_mean_difference"] <= args.tolerance * agreement["predictive_sd"]
        print("inference", report["inference"], flush=True)
        report["ddp"] = ddp_steps(Path(scratch) / "ddp")
        print("ddp", report["ddp"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".json.partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(args.out)
    print(f"wrote {os.path.relpath(args.out)}")
    return 0 if agreement["within_tolerance"] and report["ddp"].get("returncode", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
