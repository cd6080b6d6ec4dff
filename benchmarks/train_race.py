"""Training throughput, priorfit against pfns 0.4.2 at the same model shape, side by side.

Both train the ``gp_rbf_1d`` model: the same GP prior sampler, 4 layers, width 128, 4 heads, hidden 256, 1,000
buckets, batch 64, 60 points with the context size uniform on 1..50, AdamW with gradient clipping at 1.0, batches
drawn in the training process, the same number of torch threads. Each window is a fresh process that trains
``--steps`` steps; its rate is timed from the 10th step to the last, so start-up does not count (priorfit: a
Lightning callback at batch start and end; pfns: a clock in its ``get_batch``). Windows alternate between the
tools, in the opposite order every other round, so load on the machine hits both alike; the load average is
recorded before each window. pfns' own default shape (attention between features as well, 1.08 M parameters)
is a second, labelled row when ``--per-feature`` is given.

Two more priorfit rows on request, in the same alternation: ``--plain-loop`` steps the same task, batches, AdamW,
schedule and clipping in a plain Python loop without Lightning (the floor a training framework can approach), and
``--allocator-variant`` runs priorfit with glibc's default allocator (``PRIORFIT_ALLOCATOR=default``: freed blocks
go back to the OS at every step, as before priorfit kept them; priorfit/_allocator.py).

    python benchmarks/train_race.py --pfns-python PFNS_VENV/bin/python [--rounds 5] [--steps 150] [--threads 2]

``PFNS_VENV`` is a virtual environment with ``pfns==0.4.2`` and priorfit installed. Writes
benchmarks/results/train_race.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCH_SIZE = 64
STEADY_FROM = 10  # as pfns_reference.STEADY_FROM


def priorfit_window(steps: int, threads: int, plain_loop: bool) -> dict:
    """Steady seconds per step of ``Trainer.fit`` on ``experiment=gp_rbf_1d`` (run in a fresh process), or of the
    same training in a plain loop."""
    from train_step_profile import lightning_step, plain_loop_step

    torch.set_num_threads(threads)
    window = plain_loop_step if plain_loop else lightning_step
    seconds, parameters = window(steps, skip=STEADY_FROM)
    return {"steady_seconds_per_step": seconds, "parameters": parameters, "threads": torch.get_num_threads()}


PRIORFIT_TOOLS = {  # tool: (plain loop, environment)
    "priorfit": (False, {}),
    "priorfit_plain_loop": (True, {}),
    "priorfit_glibc_default": (False, {"PRIORFIT_ALLOCATOR": "default"}),
}


def run_window(tool: str, args: argparse.Namespace) -> dict:
    if tool in PRIORFIT_TOOLS:
        plain_loop, environment = PRIORFIT_TOOLS[tool]
        command = [sys.executable, __file__, "--window", str(args.steps), "--threads", str(args.threads)]
        if plain_loop:
            command.append("--plain-loop")
        env = {key: value for key, value in os.environ.items() if key != "PRIORFIT_ALLOCATOR"}
        done = subprocess.run(command, capture_output=True, text=True, env={**env, **environment})
        if done.returncode:
            raise RuntimeError(f"priorfit window failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    shape = "classic" if tool == "pfns_classic" else "per-feature"
    steps = args.steps if shape == "classic" else max(STEADY_FROM + 10, args.steps // 3)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "pfns.json"
        command = [
            args.pfns_python,
            str(HERE / "pfns_reference.py"),
            *("--steps", str(steps), "--steps-per-epoch", str(steps), "--skip-eval", "--shape", shape),
            *("--threads", str(args.threads), "--batch-size", str(BATCH_SIZE), "--eval-file", "-", "--out", str(out)),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pfns window failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarize(windows: list[dict], tools: list[str]) -> dict:
    summary = {}
    for tool in tools:
        rates = [BATCH_SIZE / w["steady_seconds_per_step"] for w in windows if w["tool"] == tool]
        summary[tool] = {
            "datasets_per_second_median": statistics.median(rates),
            "datasets_per_second_windows": rates,
            "parameters": next(w["parameters"] for w in windows if w["tool"] == tool),
        }
    # per round, the ratio of windows run next to each other: priorfit over each pfns row, and each other priorfit
    # row over classic pfns
    pairs = [("priorfit", other) for other in tools if other.startswith("pfns")]
    pairs += [(ours, "pfns_classic") for ours in tools if ours in PRIORFIT_TOOLS and ours != "priorfit"]
    rounds = sorted({w["round"] for w in windows})
    for ours, theirs in pairs:
        ratios = [_seconds(windows, r, theirs) / _seconds(windows, r, ours) for r in rounds]
        summary[f"{ours}_over_{theirs}"] = {"median": statistics.median(ratios), "per_round": ratios}
    return summary


def _seconds(windows: list[dict], round_index: int, tool: str) -> float:
    return next(w for w in windows if w["round"] == round_index and w["tool"] == tool)["steady_seconds_per_step"]


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = report["tools"]
    fig, ax = plt.subplots(figsize=(1.6 * len(tools) + 2, 3.8))
    for i, tool in enumerate(tools):
        rates = report["summary"][tool]["datasets_per_second_windows"]
        ax.scatter([i] * len(rates), rates, color=f"C{i}", alpha=0.7)
        median = report["summary"][tool]["datasets_per_second_median"]
        ax.hlines(median, i - 0.25, i + 0.25, color=f"C{i}")
        ax.annotate(f"{median:.0f}", (i + 0.28, median), va="center")
    labels = {
        "priorfit": "priorfit",
        "pfns_classic": "pfns 0.4.2\nclassic shape",
        "pfns_per_feature": "pfns 0.4.2\nper-feature (default)",
        "priorfit_plain_loop": "priorfit model,\nplain loop",
        "priorfit_glibc_default": "priorfit,\nglibc default",
    }
    ax.set_xticks(range(len(tools)), [labels[t] for t in tools])
    ax.set_xlim(-0.5, len(tools) - 0.3)
    ax.set_ylabel("training datasets / s (each window)")
    ax.set_title(f"gp_rbf_1d, batch {BATCH_SIZE}, {report['threads']} threads, {report['rounds']} alternating rounds")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pfns-python", default=os.environ.get("PFNS_PYTHON", ""))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="training steps per window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-feature", action="store_true", help="also race pfns' default per-feature shape")
    parser.add_argument("--plain-loop", action="store_true", help="also the same training in a plain loop")
    parser.add_argument("--allocator-variant", action="store_true", help="also priorfit with glibc's default")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_race.json")
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)  # internal: one priorfit window
    args = parser.parse_args()
    if args.window:
        print(json.dumps(priorfit_window(args.window, args.threads, args.plain_loop)))
        return
    if not args.pfns_python:
        parser.error("give --pfns-python (a virtual environment with pfns==0.4.2 and priorfit installed)")
    tools = [
        "priorfit",
        "pfns_classic",
        *(["priorfit_plain_loop"] if args.plain_loop else []),
        *(["priorfit_glibc_default"] if args.allocator_variant else []),
        *(["pfns_per_feature"] if args.per_feature else []),
    ]
    windows = []
    for round_index in range(args.rounds):
        order = tools if round_index % 2 == 0 else tools[::-1]
        for tool in order:
            load = os.getloadavg()
            window = run_window(tool, args)
            windows.append({"tool": tool, "round": round_index, "load_average_before": load, **window})
            print(f"round {round_index} {tool}: {BATCH_SIZE / window['steady_seconds_per_step']:.1f} datasets/s")
    report = {
        "benchmark": "train_race",
        "command": "python benchmarks/train_race.py " + " ".join(a for a in sys.argv[1:] if "python" not in a),
        "model": "gp_rbf_1d: 4 layers, width 128, 4 heads, hidden 256, 1,000 buckets; batch 64, 60 points, "
        "context size uniform on 1..50; AdamW, gradient clipping 1.0; batches drawn in the training process",
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_window": args.steps,
        "steady_from_step": STEADY_FROM,
        "tools": tools,
        "torch": torch.__version__,
        "summary": summarize(windows, tools),
        "windows": windows,
        "load_average_end": os.getloadavg(),
    }
    write_json(report, args.out)
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
