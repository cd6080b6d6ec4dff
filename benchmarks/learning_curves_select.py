"""Pick between LC-PFN checkpoints on fresh prior curves, never on the benchmark's held-out curves.

Draws ``--curves`` curves from the training prior with a seed neither training nor ``learning_curves.py`` uses,
scores each checkpoint's log-likelihood of the continuation after each cutoff (``learning_curves.pfn_scores``), and
reports the paired difference of every checkpoint to the first one. This is how the bundled `lc-pfn-small`
fine-tune was chosen:

    python benchmarks/learning_curves_select.py lc-pfn-small path/to/candidate.safetensors ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _results import write_json  # benchmarks/ is on sys.path when a script runs
from learning_curves import pfn_scores

from priorfit.checkpoint import load_pfn_model
from priorfit.priors import LearningCurvePrior

SELECTION_SEED = 777_000_123
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="names or paths; differences are to the first")
    parser.add_argument("--curves", type=int, default=3000)
    parser.add_argument("--cutoffs", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--out", type=Path, default=RESULTS / "learning_curves_selection.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = LearningCurvePrior()
    batch = prior.sample(args.curves, prior.num_epochs, generator=torch.Generator().manual_seed(SELECTION_SEED))
    noisy = batch.y[..., 0].double().numpy()
    scores = {
        name: {c: pfn_scores(load_pfn_model(name), noisy, c)[0] for c in args.cutoffs} for name in args.checkpoints
    }
    first = scores[args.checkpoints[0]]
    report = {"curves": args.curves, "seed": SELECTION_SEED, "checkpoints": {}}
    for name, by_cutoff in scores.items():
        rows = {}
        for cutoff, values in by_cutoff.items():
            difference = values - first[cutoff]
            rows[str(cutoff)] = {
                "log_likelihood": float(values.mean()),
                "minus_first": float(difference.mean()),
                "minus_first_sem": float(difference.std() / np.sqrt(len(difference))),
            }
        report["checkpoints"][name] = rows
        print(
            name,
            {
                c: f"{r['log_likelihood']:.4f} ({r['minus_first']:+.4f} ± {r['minus_first_sem']:.4f})"
                for c, r in rows.items()
            },
        )
    write_json(report, args.out)


if __name__ == "__main__":
    main()
