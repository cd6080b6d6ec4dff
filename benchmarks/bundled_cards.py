"""Calibration cards of the bundled checkpoints: evaluate each, store its card and training domain in the file.

For every bundled checkpoint this (1) loads it, (2) records the training domain its data module trained it on (the
context-size range of the PFNs, the observation-count range of the Distribution Transformer: older exports did not
record it), (3) computes its calibration card on held-out prior draws (``priorfit.card.make_card``) with the
training budget the registry documents, (4) re-exports it in place (same weights: checked tensor by tensor) and
(5) updates its registry entry (sha256, size, a description of the model; the training history moves to the card).

    python benchmarks/bundled_cards.py            # re-exports priorfit/checkpoints/*, writes bundled_cards.{json,png}
    python benchmarks/bundled_cards.py --dry-run  # computes and reports the cards, changes no file
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

from priorfit.card import make_card
from priorfit.checkpoint import export_checkpoint, load_task
from priorfit.hub import BUNDLED_DIR, get_spec, register_file, resolve_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"

# name: (domain the data module trained it on, points per data set, training budget, description of the model)
BUNDLED = {
    "pfn-gp-1d": (
        {"num_context": [1, 50]},
        60,
        {"steps": 5168, "batch_size": 64, "datasets_seen": 5168 * 64},
        "PFN for 1-D GP regression (RBF kernel, lengthscale 0.2, outputscale 1, noise 0.05): the posterior "
        "predictive of y at query x given 1-50 context points; 4 layers, width 128, 1000-bucket bar distribution",
    ),
    "lc-pfn-small": (
        {"num_context": [1, 99]},
        100,
        {
            "steps": 82_000,
            "batch_size": 64,
            "datasets_seen": 82_000 * 64,
            "wall_clock": "about 11 h on one CPU thread (40,000 steps in one schedule, then three 14,000-step "
            "fine-tunes)",
        },
        "LC-PFN: extrapolates learning curves of up to 100 epochs (performance in [0, 1], higher is better) from "
        "their first epochs, trained on the pow3 / ilog2 / janoschek prior of Adriaensen et al. (2023); 4 layers, "
        "width 128, 1000-bucket bar distribution",
    ),
    "tabular-clf-small": (
        {"num_context": [16, 448]},
        512,
        {
            "steps": 15_000,
            "batch_size": 16,
            "datasets_seen": 15_000 * 16,
            "wall_clock": "about 4.1 h on a 2-core CPU",
        },
        "tabular classification PFN behind PFNClassifier: tables of up to 64 features, 10 classes and 448 "
        "training rows, trained on structural-causal-model tables; 4 layers, width 128",
    ),
    "tabular-reg-small": (
        {"num_context": [16, 448]},
        512,
        {
            "steps": 24_700,
            "batch_size": 16,
            "datasets_seen": 24_700 * 16,
            "wall_clock": "about 6 h on one CPU thread (8,200 steps, then an 8,500- and an 8,000-step fine-tune)",
            "validation_nll": 0.417,
        },
        "tabular regression PFN behind PFNRegressor: tables of up to 16 features and 448 training rows, trained on "
        "a mixture of structural-causal-model tables, random MLPs and 1-D / 4-D GPs with hyperpriors; 4 layers, "
        "width 128, 1000-bucket bar distribution",
    ),
    "dt-linear-gaussian-2d": (
        {"num_observations": [1, 20]},
        None,
        {
            "steps": 6000,
            "batch_size": 64,
            "datasets_seen": 6000 * 64,
            "wall_clock": "about 15 min on one CPU thread",
            "validation_nll_gap": 0.005,
        },
        "Distribution Transformer: the posterior GMM of a 2-D θ given any Gaussian-mixture prior (up to 3 "
        "components) and 1-20 observations x = θ + N(0, I); 4 layers, width 128, message head",
    ),
}


def record_domain(task, domain: dict) -> None:
    """What ``on_fit_start`` records for a run today, for a model exported before it did."""
    task.hparams["domain"] = {**(task.hparams.get("domain") or {}), **domain}
    checked = task.network.domain if hasattr(task.network, "domain") else task.domain
    checked.ranges.update(domain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="compute and report the cards; change no file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    cards = {}
    for name, (domain, num_points, training, description) in BUNDLED.items():
        spec = get_spec(name)
        path = resolve_checkpoint(name)
        task = load_task(path)
        weights = {key: value.clone() for key, value in task.state_dict().items()}
        record_domain(task, domain)
        started = time.perf_counter()
        task.card = make_card(task, training=training, num_points=num_points)
        seconds = time.perf_counter() - started
        cards[name] = task.card
        print(f"{name}: {task.card.summary()} ({seconds:.1f} s)")
        entry = {"card": task.card.to_dict(), "seconds": round(seconds, 2)}
        if not args.dry_run:
            target = BUNDLED_DIR / spec.file
            export_checkpoint(task, target)
            again = load_task(target)
            assert all(torch.equal(again.state_dict()[key], value) for key, value in weights.items()), name
            assert again.card is not None and again.card.metrics == task.card.metrics, name
            new = register_file(name, target, bundled=True, config=spec.config, description=description)
            entry.update(sha256=new.sha256, size=new.size)
        report["models"][name] = entry
    if args.dry_run:
        return
    write_json(report, RESULTS / "bundled_cards.json")
    plot(cards, RESULTS / "bundled_cards.png")


def plot(cards: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 9.5))
    axes = axes.reshape(-1)
    for ax in axes[len(cards) :]:
        ax.axis("off")
    for ax, (name, card) in zip(axes, cards.items()):
        card.plot(ax)
        ax.set_title(f"{name}\n{ax.get_title()}", fontsize="small")
        ax.xaxis.label.set_fontsize("small")
        ax.yaxis.label.set_fontsize("small")
    fig.suptitle("Calibration cards of the bundled checkpoints (held-out prior draws)")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
