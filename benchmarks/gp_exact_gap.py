"""NLL gap of the gp_rbf_1d PFN to the exact GP posterior predictive, against the `pfns` reference.

Trains priorfit's `gp_rbf_1d` experiment and (in its own virtual environment, via
`pfns_reference.py`) the `pfns` 0.4.2 PFN on the same GP prior, with the same model shape
(`--pfns-shape classic`, the default: items attend to the training items only; `per-feature` is
pfns' own default, a different and larger model), batch size, context-size distribution and
wall-clock budget; with `--pfns-equal-datasets` pfns also trains as many steps as priorfit did.
Then scores all on the same held-out prior datasets: for n = 1..50 context points, the mean NLL
of 10 further points minus the exact GP predictive NLL. Also: training throughput, peak RSS of
training and of inference (1,000 context + 1,000 query points, each in a fresh process) and that
latency. The throughput race itself is `train_race.py` (alternating windows).

    python benchmarks/gp_exact_gap.py --budget-minutes 18 --pfns-python PFNS_VENV/bin/python --pfns-equal-datasets

Writes benchmarks/results/gp_exact_gap.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import write_json  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NUM_POINTS, MAX_CONTEXT, NUM_QUERIES = 60, 50, 10


def heldout_datasets(num_datasets: int, seed: int = 20261123):
    from priorfit.priors import GPPrior

    prior = GPPrior(kernel="rbf", num_features=1, lengthscale=0.2, outputscale=1.0, noise=0.05)
    batch = prior.sample(num_datasets, NUM_POINTS, generator=torch.Generator().manual_seed(seed))
    return prior, batch.x, batch.y


def exact_nll_per_n(prior, x, y) -> list[float]:
    xq, yq = x[:, -NUM_QUERIES:], y[:, -NUM_QUERIES:]
    return [-prior.predictive_log_density(x[:, :n], y[:, :n], xq, yq).mean().item() for n in range(1, MAX_CONTEXT + 1)]


@torch.no_grad()
def priorfit_nll_per_n(task, x, y) -> list[float]:
    task.eval()
    xq, yq = x[:, -NUM_QUERIES:], y[:, -NUM_QUERIES:, 0]
    out = []
    for n in range(1, MAX_CONTEXT + 1):
        nll = torch.cat(
            [
                task.head.nll(task(x[s : s + 500, :n], y[s : s + 500, :n], xq[s : s + 500]), yq[s : s + 500]).flatten()
                for s in range(0, x.shape[0], 500)
            ]
        )
        out.append(nll.double().mean().item())
    return out


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="priorfit.conf", version_base="1.3"):
        return hydra_compose(
            config_name="train",
            overrides=[
                "experiment=gp_rbf_1d",
                "logger=csv",
                f"paths.output_dir={output_dir}",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


def train_priorfit(steps: int, output_dir: Path, extra: list[str]) -> tuple[object, float]:
    from priorfit.train import train

    cfg = compose([f"trainer.max_steps={steps}", *extra], output_dir)
    start = time.perf_counter()
    _, objects = train(cfg)
    return objects, time.perf_counter() - start


def measure_rate_priorfit(steps: int, extra: list[str]) -> float:
    """Steady training steps per second (timed from the 10th step, as pfns' calibration below)."""
    from train_step_profile import lightning_step  # imports this module: import here, not at the top

    seconds_per_step, _ = lightning_step(steps, skip=10, extra=extra)
    return 1.0 / seconds_per_step


def run_pfns(python: str, args: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    command = [python, str(ROOT / "benchmarks" / "pfns_reference.py"), *args, "--out", out]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pfns run failed:\n{result.stderr[-4000:]}")
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


def vm_hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM); ru_maxrss would include the parent's peak after fork+exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference_probe(model_file: str) -> dict:
    """Run in a fresh process: latency and peak RSS of one forward with 1,000 context + 1,000 queries."""
    from priorfit.checkpoint import load_task

    task = load_task(model_file)
    rss_loaded = vm_hwm_mb()
    batch = task.prior.sample(1, 2000, generator=torch.Generator().manual_seed(1))
    xc, yc, xq = batch.x[:, :1000], batch.y[:, :1000], batch.x[:, 1000:]
    with torch.no_grad():
        task(xc, yc, xq)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            task(xc, yc, xq)
            times.append(time.perf_counter() - start)
    return {
        "latency_1000ctx_1000query_s": min(times),
        "peak_rss_mb_inference": vm_hwm_mb(),
        "rss_mb_after_loading": rss_loaded,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    n = results["contexts"]
    ax.plot(n, results["priorfit"]["gap_per_n"], label=f"priorfit (mean {results['priorfit']['mean_gap']:.4f})")
    shape = results.get("pfns_shape", "per-feature")  # runs before the shape was recorded raced pfns' default
    if "pfns" in results and "gap_per_n" in results["pfns"]:
        label = f"pfns 0.4.2, {shape}, same minutes (mean {results['pfns']['mean_gap']:.4f})"
        ax.plot(n, results["pfns"]["gap_per_n"], label=label)
    if "pfns_equal_datasets" in results:
        same = results["pfns_equal_datasets"]
        label = f"pfns 0.4.2, {shape}, same datasets (mean {same['mean_gap']:.4f})"
        ax.plot(n, same["gap_per_n"], label=label)
    ax.axhline(0.02, color="gray", ls="--", lw=0.8, label="0.02 nats")
    ax.axhline(0.01, color="gray", ls=":", lw=0.8, label="0.01 nats")
    ax.set_xlabel("context points n")
    ax.set_ylabel("NLL − exact GP NLL (nats / query point)")
    ax.set_title(
        f"gp_rbf_1d, {results['num_heldout_datasets']} held-out datasets, "
        f"{results['budget_minutes']:.1f} min CPU budget each"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--num-heldout", type=int, default=2000)
    parser.add_argument(
        "--pfns-python",
        default=os.environ.get("PFNS_PYTHON", ""),
        help="python of a virtual environment with pfns==0.4.2 and priorfit (--no-deps) installed",
    )
    parser.add_argument("--pfns-shape", choices=("classic", "per-feature"), default="classic")
    parser.add_argument(
        "--pfns-equal-datasets", action="store_true", help="also train pfns for as many steps as priorfit did"
    )
    parser.add_argument("--load", help="evaluate this priorfit checkpoint instead of training one")
    parser.add_argument("--bundle", action="store_true", help="copy the trained model into priorfit/checkpoints/")
    parser.add_argument("--calibration-steps", type=int, default=300)
    parser.add_argument("--override", action="append", default=[], help="extra Hydra overrides for priorfit")
    parser.add_argument("--inference-probe", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "gp_exact_gap.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out, no training")
    args = parser.parse_args()
    torch.set_num_threads(2)

    if args.inference_probe:
        print(json.dumps(inference_probe(args.inference_probe)))
        return
    if args.replot:
        out = Path(args.out)
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        return

    budget_s = args.budget_minutes * 60
    prior, x, y = heldout_datasets(args.num_heldout)
    exact = exact_nll_per_n(prior, x, y)
    results: dict = {
        "benchmark": "gp_exact_gap",
        "prior": "GP RBF, Dx=1, x~U[0,1], lengthscale 0.2, outputscale 1.0, noise variance 0.05",
        "num_heldout_datasets": args.num_heldout,
        "num_queries_per_dataset": NUM_QUERIES,
        "contexts": list(range(1, MAX_CONTEXT + 1)),
        "budget_minutes": args.budget_minutes,
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__},
        "exact_nll_per_n": exact,
        "command": "python benchmarks/gp_exact_gap.py "
        + " ".join("PFNS_VENV/bin/python" if a == args.pfns_python else a for a in sys.argv[1:]),
        "pfns_shape": args.pfns_shape,
    }

    # priorfit
    if args.load:
        from priorfit.checkpoint import load_task

        task, model_file, train_info = load_task(args.load), args.load, {"loaded_from": args.load}
    else:
        rate = measure_rate_priorfit(args.calibration_steps, args.override)
        steps = int(rate * budget_s * 0.97)
        run_dir = Path(tempfile.mkdtemp(prefix="priorfit_gp_rbf_1d_"))
        objects, seconds = train_priorfit(steps, run_dir, args.override)
        task, model_file = objects["task"], objects["model_file"]
        batch_size = objects["datamodule"].batch_size
        train_info = {
            "steps": steps,
            "batch_size": batch_size,
            "train_seconds": seconds,
            "datasets_per_second": steps * batch_size / seconds,
            "calibrated_steps_per_second": rate,
            "peak_rss_mb_training": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "overrides": args.override,
        }
    nll = priorfit_nll_per_n(task, x, y)
    gap = [a - b for a, b in zip(nll, exact)]
    probe = subprocess.run(
        [sys.executable, __file__, "--inference-probe", str(model_file)], capture_output=True, text=True, check=True
    )
    results["priorfit"] = {
        "parameters": sum(p.numel() for p in task.network.parameters()),
        **train_info,
        **json.loads(probe.stdout.strip().splitlines()[-1]),
        "nll_per_n": nll,
        "gap_per_n": gap,
        "mean_gap": sum(gap) / len(gap),
    }
    if args.bundle:
        from priorfit.hub import register_file

        target = ROOT / "priorfit" / "checkpoints" / "pfn-gp-1d.safetensors"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(model_file, target)
        register_file(
            "pfn-gp-1d",
            target,
            bundled=True,
            config=f"priorfit-train experiment=gp_rbf_1d trainer.max_steps={train_info.get('steps')}",
            description="PFN for 1-D GP regression (RBF, lengthscale 0.2, outputscale 1, noise 0.05), ~0.8 M params",
        )
        results["priorfit"]["bundled_as"] = str(target.relative_to(ROOT))

    # pfns reference, same budget
    if args.pfns_python:
        with tempfile.TemporaryDirectory() as tmp:
            data_file = Path(tmp) / "heldout.pt"
            torch.save({"x": x, "y": y}, data_file)
            common = [
                *("--batch-size", str(results["priorfit"].get("batch_size", 64)), "--eval-file", str(data_file)),
                *("--shape", args.pfns_shape, "--threads", str(torch.get_num_threads())),
            ]
            calibration = run_pfns(
                args.pfns_python,
                [
                    "--steps",
                    str(args.calibration_steps),
                    "--steps-per-epoch",
                    str(args.calibration_steps),
                    "--skip-eval",
                    *common,
                ],
            )
            # the steady rate: a rate over the whole calibration run counts pfns' start-up, a fifth of 150 steps
            pfns_rate = 1.0 / calibration["steady_seconds_per_step"]
            pfns_steps = int(pfns_rate * budget_s * 0.97)
            pfns = run_pfns(args.pfns_python, ["--steps", str(pfns_steps), "--steps-per-epoch", "50", *common])
            same = None
            if args.pfns_equal_datasets and "steps" in results["priorfit"]:
                steps = str(results["priorfit"]["steps"])
                same = run_pfns(args.pfns_python, ["--steps", steps, "--steps-per-epoch", "50", *common])
        for run in (pfns, same):
            if run is not None:
                run["gap_per_n"] = [a - b for a, b in zip(run["nll_per_n"], exact)]
                run["mean_gap"] = sum(run["gap_per_n"]) / len(run["gap_per_n"])
        pfns["calibrated_steps_per_second"] = pfns_rate
        results["pfns"] = pfns
        if same is not None:
            results["pfns_equal_datasets"] = same
        results["train_minutes"] = {
            "priorfit": results["priorfit"].get("train_seconds", float("nan")) / 60,
            "pfns": pfns["train_seconds"] / 60,
        }
        results["throughput_ratio_priorfit_over_pfns"] = (
            results["priorfit"].get("datasets_per_second", float("nan")) / pfns["datasets_per_second"]
        )
        results["latency_ratio_pfns_over_priorfit"] = (
            pfns["latency_1000ctx_1000query_s"] / results["priorfit"]["latency_1000ctx_1000query_s"]
        )
    else:
        results["pfns"] = {"skipped": "no --pfns-python given"}

    mean_gap = results["priorfit"]["mean_gap"]
    results["must"] = {
        "gap_le_0.02": mean_gap <= 0.02,
        "train_le_20_minutes": results["priorfit"].get("train_seconds", 0) <= 20 * 60,
        "not_worse_than_pfns": ("mean_gap" not in results["pfns"]) or mean_gap <= results["pfns"]["mean_gap"],
    }
    results["aim"] = {
        "gap_le_0.01": mean_gap <= 0.01,
        "throughput_ge_1.5x_pfns": results.get("throughput_ratio_priorfit_over_pfns", 0) >= 1.5,
    }
    out = Path(args.out)
    write_json(results, out)
    plot(results, out.with_suffix(".png"))
    summary = {k: v for k, v in results["priorfit"].items() if not isinstance(v, list)}
    print(
        json.dumps(
            {
                "priorfit": summary,
                "pfns_mean_gap": results["pfns"].get("mean_gap"),
                "must": results["must"],
                "aim": results["aim"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
