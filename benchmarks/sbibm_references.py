"""Our reference posteriors against sbibm's published ones, on sbibm's own observations.

``priorfit.priors.simulators`` regenerates reference posteriors (exact for Gaussian linear, a grid for two moons,
many-chain Metropolis for the others) instead of shipping sample files. This checks them: for each task and each of
sbibm's observations, C2ST between our reference samples and sbibm's (read from the files inside the ``sbibm``
wheel, which is not installed: ``pip download sbibm==1.1.0 --no-deps -d DIR``), beside the C2ST of two halves of
sbibm's own samples (what agreement looks like at this sample size). For the Bernoulli GLM it also checks that our
stimulus and design matrix equal sbibm's, and that sbibm's observations are Xᵀy of its spike trains.

    python benchmarks/sbibm_references.py --wheel DIR/sbibm-1.1.0-py2.py3-none-any.whl
    # writes benchmarks/results/sbibm_references.json
"""

from __future__ import annotations

import argparse
import bz2
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from _results import write_json  # benchmarks/ is on sys.path when a script runs
from sbi.utils.metrics import c2st

from priorfit.priors.simulators import get_problem

RESULTS = Path(__file__).resolve().parent / "results"
# our problem -> (sbibm's task folder, our constructor arguments); the same definitions (see simulators.py)
TASKS = {
    "bernoulli_glm": ("bernoulli_glm", {}),
    "gaussian_linear": ("gaussian_linear", {"dim": 10}),
    "two_moons": ("two_moons", {}),
    "slcp": ("slcp", {}),
    "gaussian_mixture": ("gaussian_mixture", {}),
}


class SbibmFiles:
    """The task files inside sbibm's wheel, read without installing it (CSV and tensors saved by torch)."""

    def __init__(self, wheel: Path) -> None:
        self.archive = zipfile.ZipFile(wheel)

    def _path(self, task: str, name: str) -> str:
        return f"sbibm/tasks/{task}/files/{name}"

    def csv(self, task: str, name: str) -> torch.Tensor:
        raw = self.archive.read(self._path(task, name))
        if name.endswith(".bz2"):
            raw = bz2.decompress(raw)
        return torch.tensor(np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2), dtype=torch.float32)

    def tensor(self, task: str, name: str) -> torch.Tensor:
        return torch.load(io.BytesIO(self.archive.read(self._path(task, name))), weights_only=True)


def check_glm_definition(files: SbibmFiles, observations: int) -> dict:
    problem = get_problem("bernoulli_glm")
    raw = [files.csv("bernoulli_glm", f"num_observation_{i}/observation_raw.csv") for i in range(1, observations + 1)]
    summaries = [files.csv("bernoulli_glm", f"num_observation_{i}/observation.csv") for i in range(1, observations + 1)]
    return {
        "stimulus_equal": torch.equal(files.tensor("bernoulli_glm", "stimulus_I.pt"), problem.stimulus),
        "design_equal": torch.equal(files.tensor("bernoulli_glm", "design_matrix.pt"), problem.design),
        "observations_are_design_T_spikes_max_error": max(
            float((y @ problem.design - x).abs().max()) for y, x in zip(raw, summaries)
        ),
    }


def run(files: SbibmFiles, observations: int, num_samples: int, tasks: list[str]) -> dict:
    results: dict = {}
    for name in tasks:
        folder, kwargs = TASKS[name]
        problem = get_problem(name, **kwargs)
        cells = []
        for index in range(1, observations + 1):
            x_o = files.csv(folder, f"num_observation_{index}/observation.csv")
            theirs = files.csv(folder, f"num_observation_{index}/reference_posterior_samples.csv.bz2")
            start = time.perf_counter()
            ours = problem.reference_posterior(x_o, num_samples, seed=index)
            seconds = time.perf_counter() - start
            cell = {
                "observation": index,
                "c2st_ours_vs_sbibm": float(c2st(ours, theirs[:num_samples])),
                "c2st_sbibm_halves": float(c2st(theirs[num_samples : 2 * num_samples], theirs[:num_samples])),
                "seconds": seconds,
            }
            cells.append(cell)
            print(name, cell, flush=True)
        results[name] = {
            "per_observation": cells,
            "c2st_ours_vs_sbibm_mean": float(np.mean([c["c2st_ours_vs_sbibm"] for c in cells])),
            "c2st_ours_vs_sbibm_max": float(np.max([c["c2st_ours_vs_sbibm"] for c in cells])),
            "c2st_sbibm_halves_mean": float(np.mean([c["c2st_sbibm_halves"] for c in cells])),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="sbibm's wheel file (sbibm 1.1.0)")
    parser.add_argument("--observations", type=int, default=10, help="sbibm's observations 1..N (it has 10)")
    parser.add_argument("--samples", type=int, default=2000, help="samples per side of each C2ST")
    parser.add_argument("--tasks", nargs="+", choices=tuple(TASKS), default=list(TASKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "sbibm_references.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = SbibmFiles(args.wheel)
    report = {
        "sbibm_wheel": args.wheel.name,
        "settings": {"observations": args.observations, "samples": args.samples, "tasks": args.tasks},
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
    }
    if "bernoulli_glm" in args.tasks:
        report["bernoulli_glm_definition"] = check_glm_definition(files, args.observations)
        print(report["bernoulli_glm_definition"], flush=True)
    report["results"] = run(files, args.observations, args.samples, args.tasks)
    report["load_average_end"] = list(os.getloadavg())
    write_json(report, args.out)


if __name__ == "__main__":
    main()
