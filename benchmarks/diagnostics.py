"""TARP benchmark: ``priorfit.diagnostics.tarp`` against the ``tarp`` package and sbi's TARP on the same inputs.

200 true parameters × 1,000 posterior samples × D ∈ {2, 10} (float32), the same reference points for all
three. A Gaussian-conjugate model supplies inputs from an exact posterior and from an over-dispersed one.
Reported per D: the largest difference of the ECP curves (evaluated at each peer's own α grid; on float64
copies of the inputs, and on the float32 inputs, where a sample whose distance ties the truth's to rounding
may be counted differently by each) and the median and the fastest wall time over the repeats (one thread;
the implementations take turns in blocks of repeats) of our ``tarp`` (ECP, ATC and KS test; also with the
100-resample bootstrap band), sbi 0.27's ``run_tarp`` + ``check_tarp`` (ECP, ATC and KS; its posterior hands
back our samples, so no sampling is timed; also its inner ``_run_tarp`` alone), and ``tarp.get_tarp_coverage``
(ECP only).
Must: at least 5× faster than sbi (judged on the medians). Our count runs in C (AVX2) when setup.py could build
``priorfit.diagnostics._tarp_kernel``; the JSON says whether it did.

    python benchmarks/diagnostics.py     # writes benchmarks/results/diagnostics.{json,png}
    python benchmarks/diagnostics.py --torch-count --out benchmarks/results/diagnostics_torch_count.json
    python benchmarks/diagnostics.py --interleave --out benchmarks/results/diagnostics_interleaved.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs
from sbi.diagnostics.tarp import _run_tarp, check_tarp, run_tarp
from tarp import get_tarp_coverage

from priorfit.diagnostics import tarp

RESULTS = Path(__file__).resolve().parent / "results"
TARP_MODULE = importlib.import_module("priorfit.diagnostics.tarp")  # the package's `tarp` is the function


def conjugate_inputs(num_posteriors: int, num_samples: int, dim: int, spread: float, seed: int):
    """θ ~ N(0, I), x = θ + N(0, I): exact posterior N(x / 2, I / 2); ``spread`` scales its width."""
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(num_posteriors, dim, generator=generator)
    x = theta + torch.randn(num_posteriors, dim, generator=generator)
    noise = torch.randn(num_samples, num_posteriors, dim, generator=generator)
    samples = x / 2 + spread * 0.5**0.5 * noise
    references_unit = torch.rand(num_posteriors, dim, generator=generator)
    return samples, theta, references_unit


def block_times(functions: dict, repeats: int, interleave: bool = False) -> dict[str, np.ndarray]:
    """Seconds of each call, in blocks: in each of 5 rounds every implementation runs ``repeats // 5`` times in
    a row after one warm-up call. Back to back, each runs warm, as in a user's loop; taking turns by blocks, a
    load that comes and goes on the machine falls on all. ``interleave``: single cold calls taking turns
    instead, each right after another library's, which evicts torch's code and data from the caches (what that
    costs depends on the order of the calls)."""
    rounds, warm_up = (repeats, False) if interleave else (5, True)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            if warm_up:
                function()
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - start)
    return {name: np.array(values) for name, values in times.items()}


def ecp_differences(samples, theta, unit) -> dict:
    """Largest |ECP difference| to sbi and to ``tarp`` on the same samples and references, each at its own α grid."""
    low, high = theta.min(0).values, theta.max(0).values
    references = low + unit * (high - low + 1e-10)  # sbi takes references in θ's units, tarp in the unit cube
    ours = tarp(samples, theta, references=unit, num_bootstrap=0)
    ecp_sbi, alpha_sbi = _run_tarp(samples, theta, references, z_score_theta=True)
    ecp_pkg, alpha_pkg = get_tarp_coverage(
        samples.numpy().copy(), theta.numpy().copy(), references=unit.numpy(), norm=True
    )
    return {
        "vs_sbi": float((ours.ecp_at(alpha_sbi) - ecp_sbi).abs().max()),
        "vs_tarp": float((ours.ecp_at(torch.as_tensor(alpha_pkg)) - torch.as_tensor(ecp_pkg)).abs().max()),
        "sbi_vs_tarp": float((ecp_sbi.double() - torch.as_tensor(ecp_pkg)).abs().max()),
    }


class FixedSamples:
    """Hands sbi's ``run_tarp`` our precomputed posterior samples, so it runs on the same ones."""

    def __init__(self, samples) -> None:
        self.samples = samples

    def sample_batched(self, sample_shape, x, **kwargs):
        return self.samples


def time_implementations(samples, theta, unit, repeats: int, interleave: bool) -> dict:
    """Median seconds of ours (with and without the bootstrap band), sbi's and the tarp package's TARP."""
    low, high = theta.min(0).values, theta.max(0).values
    references = low + unit * (high - low + 1e-10)
    posterior, xs = FixedSamples(samples), torch.zeros(len(theta), 1)

    def sbi_tarp():  # sbi's two calls give what our one returns: the ECP curve, ATC and a KS p-value
        ecp, alpha = run_tarp(
            theta, xs, posterior, references=references, num_posterior_samples=len(samples), show_progress_bar=False
        )
        return check_tarp(ecp, alpha)

    def sbi_tarp_core():  # the function run_tarp calls once it has the samples
        return check_tarp(*_run_tarp(samples, theta, references, z_score_theta=True))

    def tarp_package():
        return get_tarp_coverage(samples.numpy().copy(), theta.numpy().copy(), references=unit.numpy(), norm=True)

    times = block_times(
        {
            "ours": lambda: tarp(samples, theta, references=unit, num_bootstrap=0),
            "ours_with_bootstrap_band": lambda: tarp(samples, theta, references=unit),
            "sbi": sbi_tarp,
            "sbi_core": sbi_tarp_core,
            "tarp_package": tarp_package,
        },
        repeats,
        interleave,
    )
    row = {f"seconds_{name}": float(np.median(values)) for name, values in times.items()}
    # the fastest of the repeats: what timeit recommends on a machine whose load comes and goes
    row.update({f"fastest_seconds_{name}": float(values.min()) for name, values in times.items()})
    row["speedup_vs_sbi"] = row["seconds_sbi"] / row["seconds_ours"]
    row["speedup_vs_sbi_fastest"] = row["fastest_seconds_sbi"] / row["fastest_seconds_ours"]
    row["speedup_vs_sbi_with_bootstrap_band"] = row["seconds_sbi"] / row["seconds_ours_with_bootstrap_band"]
    row["speedup_vs_tarp_package"] = row["seconds_tarp_package"] / row["seconds_ours"]
    return row


def run(dims: list[int], num_posteriors: int, num_samples: int, repeats: int, interleave: bool = False) -> dict:
    rows = []
    for dim in dims:
        for spread in (1.0, 2.0):
            samples, theta, unit = conjugate_inputs(num_posteriors, num_samples, dim, spread, seed=dim)
            ours = tarp(samples, theta, references=unit)
            row = {
                "dim": dim,
                "posterior": "exact" if spread == 1.0 else "over-dispersed (2x width)",
                "atc": ours.atc,
                "ks_pvalue": ours.ks_pvalue,
                # float64 inputs: the three implementations make the same comparisons
                "max_ecp_difference_float64": ecp_differences(samples.double(), theta.double(), unit.double()),
                # float32: a sample whose distance ties the truth's to rounding may be counted differently
                "max_ecp_difference_float32": ecp_differences(samples, theta, unit),
            }
            if spread == 1.0:
                row.update(time_implementations(samples, theta, unit, repeats, interleave))
            rows.append(row)
            print(json.dumps(row))
    timed = [r for r in rows if "speedup_vs_sbi" in r]
    float64 = [max(r["max_ecp_difference_float64"]["vs_sbi"], r["max_ecp_difference_float64"]["vs_tarp"]) for r in rows]
    return {
        "setup": {
            "num_posteriors": num_posteriors,
            "num_samples": num_samples,
            "timing_dtype": "float32",
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "timing": "single calls taking turns (cold)" if interleave else "blocks of back-to-back calls (warm)",
            "c_count": TARP_MODULE._count_closer_avx2 is not None,
            "peers": "sbi 0.27 run_tarp (given the same samples, z_score_theta=True) + check_tarp, and its "
            "_run_tarp + check_tarp (seconds_sbi_core); tarp 0.1.1 get_tarp_coverage (norm=True)",
        },
        "rows": rows,
        "verdict": {
            "max_ecp_difference_float64": max(float64),
            "must_same_values_1e-6": max(float64) <= 1e-6,
            "min_speedup_vs_sbi": min(r["speedup_vs_sbi"] for r in timed),
            "min_speedup_vs_sbi_fastest_of_repeats": min(r["speedup_vs_sbi_fastest"] for r in timed),
            "min_speedup_vs_sbi_with_bootstrap_band": min(r["speedup_vs_sbi_with_bootstrap_band"] for r in timed),
            "must_5x_faster_than_sbi": all(r["speedup_vs_sbi"] >= 5 for r in timed),
        },
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in report["rows"] if "seconds_ours" in r]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    labels = ["priorfit", "priorfit + bootstrap band", "sbi (_run_tarp + check_tarp)", "tarp package"]
    keys = ["seconds_ours", "seconds_ours_with_bootstrap_band", "seconds_sbi", "seconds_tarp_package"]
    width = 0.2
    for i, (label, key) in enumerate(zip(labels, keys)):
        ax.bar([j + i * width for j in range(len(timed))], [1e3 * r[key] for r in timed], width, label=label)
    ax.set_xticks([j + 1.5 * width for j in range(len(timed))], [f"D = {r['dim']}" for r in timed])
    ax.set(
        ylabel="milliseconds per call (median, log scale)",
        xlabel="parameter dimension",
        yscale="log",
        title=f"TARP on {report['setup']['num_posteriors']} posteriors × {report['setup']['num_samples']} samples"
        " (lower is faster)",
    )
    ax.title.set_fontsize(10)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for all three (1: least noisy)")
    parser.add_argument("--out", type=Path, default=RESULTS / "diagnostics.json")
    parser.add_argument("--torch-count", action="store_true", help="time our torch count, not the C one")
    parser.add_argument("--interleave", action="store_true", help="single cold calls taking turns (see block_times)")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out, no timing")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    torch.set_num_threads(args.threads)
    if args.torch_count:
        TARP_MODULE._count_closer_avx2 = None
    report = run([2, 10], 200, 1000, args.repeats, args.interleave)
    write_json(report, args.out)
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["verdict"], indent=2))


if __name__ == "__main__":
    main()
