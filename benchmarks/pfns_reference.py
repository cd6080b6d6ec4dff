"""Train and evaluate the reference PFN implementation (`pfns` 0.4.2) on priorfit's GP prior.

Runs in its own virtual environment (pfns pins clash with ours); `gp_exact_gap.py` and `train_race.py` call
it as a subprocess with the same prior, model shape, batch size, context-size distribution and budget, and
`gp_exact_gap.py` evaluates it on the same held-out datasets it saves to disk.

Shapes: ``classic`` (the default) is the PFN paper's and priorfit's: items attend to the training items only
(``attention_between_features=False``), 0.81 M parameters; ``per-feature`` is pfns' own default, which also
attends between features (1.08 M parameters here). Prior batches are drawn in the training process
(``--num-workers 0``, as priorfit does), and every ``get_batch`` call is timed, so the JSON also holds the
steady seconds per step (from the 10th step on), free of start-up.

    python benchmarks/pfns_reference.py --steps 4000 --eval-file heldout.pt --out pfns.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from dataclasses import dataclass

import torch
from pfns.batch_shape_sampler import BatchShape, BatchShapeSamplerConfig
from pfns.model.bar_distribution import BarDistributionConfig, get_bucket_borders
from pfns.model.transformer_config import TransformerConfig
from pfns.optimizer import OptimizerConfig
from pfns.priors.prior import AdhocPriorConfig, Batch
from pfns.train import MainConfig, train

from priorfit.priors import GPPrior

PRIOR = GPPrior(kernel="rbf", num_features=1, lengthscale=0.2, outputscale=1.0, noise=0.05)
BATCH_TIMES: list[float] = []  # time.perf_counter() at each get_batch call: one per training step
STEADY_FROM = 10  # steps before this one are warm-up for the steady rate


def get_batch(batch_size, seq_len, num_features, single_eval_pos=None, device="cpu", **kwargs):
    """pfns' get_batch protocol on top of priorfit's GP prior (same sampler as priorfit trains on)."""
    BATCH_TIMES.append(time.perf_counter())
    batch = PRIOR.sample(batch_size, seq_len, generator=None)
    return Batch(x=batch.x, y=batch.y, target_y=batch.y.clone(), single_eval_pos=single_eval_pos)


@dataclass(frozen=True)
class ContextRangeSampler(BatchShapeSamplerConfig):
    """Same context-size distribution as priorfit's data module: n ~ U{min_context..max_context}."""

    min_context: int = 1
    max_context: int = 50

    def sample_batch_shape(self, epoch: int, step: int) -> BatchShape:
        rng = random.Random(self.seed + epoch * 10000 + step)
        return BatchShape(
            batch_size=self.batch_size,
            seq_len=self.max_seq_len,
            num_features=1,
            single_eval_pos=rng.randint(self.min_context, self.max_context),
        )


def steady_seconds_per_step() -> float:
    """Seconds per training step between the STEADY_FROM-th get_batch call and the last one."""
    if len(BATCH_TIMES) < STEADY_FROM + 2:
        return float("nan")
    return (BATCH_TIMES[-1] - BATCH_TIMES[STEADY_FROM]) / (len(BATCH_TIMES) - 1 - STEADY_FROM)


def build_config(
    steps: int,
    batch_size: int,
    lr: float,
    num_buckets: int,
    steps_per_epoch: int,
    shape: str = "classic",
    num_workers: int = 0,
) -> MainConfig:
    torch.manual_seed(0)
    ys = PRIOR.sample(2000, 60, generator=torch.Generator().manual_seed(0)).y
    borders = get_bucket_borders(num_buckets, ys=ys)
    epochs = max(1, steps // steps_per_epoch)
    return MainConfig(
        priors=[AdhocPriorConfig(get_batch_methods=get_batch, prior_kwargs={})],
        optimizer=OptimizerConfig("adamw", lr=lr, weight_decay=0.0),
        model=TransformerConfig(
            criterion=BarDistributionConfig(borders.tolist(), full_support=True),
            emsize=128,
            nhid=256,
            nlayers=4,
            nhead=4,
            features_per_group=1,
            attention_between_features=shape == "per-feature",
        ),
        batch_shape_sampler=ContextRangeSampler(batch_size=batch_size, max_seq_len=60, seed=0),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        train_mixed_precision=False,  # bf16 autocast is slow on a CPU without bf16 units
        scheduler="cosine_decay",
        warmup_epochs=max(1, epochs // 20),
        verbose=False,
        progress_bar=False,
        num_workers=num_workers,  # 0: batches drawn in the training process, as priorfit does
    )


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, contexts: list[int], num_queries: int) -> dict:
    """Mean NLL of the last ``num_queries`` points given the first n, for every n; plus latency."""
    model.eval()
    criterion = model.criterion
    x_query, y_query = x[:, -num_queries:], y[:, -num_queries:]
    nll_per_n = []
    for n in contexts:
        nlls = []
        for start in range(0, x.shape[0], 500):
            sl = slice(start, start + 500)
            out = model(x[sl, :n], y[sl, :n], test_x=x_query[sl])
            logits = out if isinstance(out, torch.Tensor) else out["standard"]
            nlls.append(criterion(logits, y_query[sl].squeeze(-1).reshape(logits.shape[:-1])).flatten())
        nll_per_n.append(torch.cat(nlls).double().mean().item())
    return {"nll_per_n": nll_per_n}


@torch.no_grad()
def inference_latency(model, num_context: int = 1000, num_query: int = 1000, repeats: int = 3) -> float:
    model.eval()
    g = torch.Generator().manual_seed(1)
    batch = PRIOR.sample(1, num_context + num_query, generator=g)
    x, y = batch.x, batch.y
    model(x[:, :num_context], y[:, :num_context], test_x=x[:, num_context:])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x[:, :num_context], y[:, :num_context], test_x=x[:, num_context:])
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-buckets", type=int, default=1000)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--eval-file", required=True)
    parser.add_argument("--num-queries", type=int, default=10)
    parser.add_argument("--max-context", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-eval", action="store_true", help="only measure training speed")
    parser.add_argument("--shape", choices=("classic", "per-feature"), default="classic")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--inference-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.inference_probe:
        model = build_config(1, args.batch_size, args.lr, args.num_buckets, 1, args.shape).model.create_model()
        model.load_state_dict(torch.load(args.inference_probe, weights_only=True))
        latency = inference_latency(model)
        rss = next(
            int(line.split()[1]) / 1024
            for line in open("/proc/self/status").read().splitlines()
            if line.startswith("VmHWM:")
        )  # this process image's peak; ru_maxrss would include the parent's after fork+exec
        print(json.dumps({"latency_1000ctx_1000query_s": latency, "peak_rss_mb_inference": rss}))
        return

    config = build_config(
        args.steps, args.batch_size, args.lr, args.num_buckets, args.steps_per_epoch, args.shape, args.num_workers
    )
    start = time.perf_counter()
    result = train(config, device="cpu", reusable_config=False)
    train_seconds = time.perf_counter() - start
    model = result["model"]
    steps = config.epochs * config.steps_per_epoch
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.skip_eval:
        with open(args.out, "w") as handle:
            json.dump(
                {
                    "steps": steps,
                    "train_seconds": train_seconds,
                    "steady_seconds_per_step": steady_seconds_per_step(),
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "shape": args.shape,
                },
                handle,
            )
        return
    # inference memory and latency in a fresh process, like priorfit's probe
    model_file = args.out + ".model.pt"
    torch.save(model.state_dict(), model_file)
    import subprocess
    import sys

    probe = subprocess.run(
        [
            sys.executable,
            __file__,
            "--inference-probe",
            model_file,
            "--shape",
            args.shape,
            "--steps",
            "1",
            "--eval-file",
            "-",
            "--out",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(model_file)
    data = torch.load(args.eval_file, weights_only=True)
    contexts = list(range(1, args.max_context + 1))
    evaluation = evaluate(model, data["x"], data["y"], contexts, args.num_queries)
    probe_result = json.loads(probe.stdout.strip().splitlines()[-1])
    out = {
        "tool": "pfns 0.4.2",
        "shape": args.shape,
        "num_workers": args.num_workers,
        "steady_seconds_per_step": steady_seconds_per_step(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "batch_size": args.batch_size,
        "train_seconds": train_seconds,
        "datasets_per_second": steps * args.batch_size / train_seconds,
        "peak_rss_mb_training": train_rss,
        **probe_result,
        "contexts": contexts,
        **evaluation,
    }
    with open(args.out, "w") as handle:
        json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
