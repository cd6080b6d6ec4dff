"""SBI benchmark: our amortized posteriors against sbi's NPE on the same simulations, scored by C2ST.

Tasks (``priorfit.priors.simulators``): Gaussian linear (10-D, exact reference), two moons (grid
reference), SLCP (MCMC reference, checked in tests against the exact Gaussian-linear posterior), each at
1,000 and 10,000 simulations. For every (task, budget) the same simulations train our ``flow`` and
``gmm`` estimators (``AmortizedPosterior``) and sbi's ``NPE(density_estimator="nsf")`` with the same
training rule (batch 200, lr 5e-4, stop after 20 epochs without validation improvement). Posterior
samples for 5 observations per task are compared with reference samples by
``sbi.utils.metrics.c2st`` (0.5 = indistinguishable). Training and sampling wall times are reported.

Not yet here: the many-iid-observations section (compositional ``score`` estimator vs sbi's NPSE),
which needs the score estimator.

    python benchmarks/sbi_tasks.py                 # writes benchmarks/results/sbi_tasks.{json,png}
    python benchmarks/sbi_tasks.py --quick         # a minute-long smoke run (tiny budgets)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from priorfit.priors.simulators import get_problem
from sbi.inference import NPE
from sbi.utils.metrics import c2st

from priorfit import AmortizedPosterior

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = {"gaussian_linear": {"dim": 10}, "two_moons": {}, "slcp": {}}


def observations(problem, count: int, seed: int) -> list[torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        theta = problem.prior.sample((count,))
        return [problem.simulate(theta[i : i + 1]) for i in range(count)]


def train_ours(kind: str, theta, x, prior, max_epochs: int) -> tuple[AmortizedPosterior, float]:
    start = time.perf_counter()
    post = AmortizedPosterior(kind, max_epochs=max_epochs, logger=None, progress_bar=False)
    post.fit_simulations(theta, x.unsqueeze(1), prior=prior)
    return post, time.perf_counter() - start


def train_sbi(theta, x, prior, max_epochs: int):
    start = time.perf_counter()
    inference = NPE(prior=prior, density_estimator="nsf", show_progress_bars=False)
    inference.append_simulations(theta, x).train(max_num_epochs=max_epochs)
    return inference.build_posterior(), time.perf_counter() - start


def run(budgets: list[int], num_obs: int, num_samples: int, max_epochs: int) -> dict:
    results: dict = {}
    for task_name, kwargs in TASKS.items():
        problem = get_problem(task_name, **kwargs)
        obs = observations(problem, num_obs, seed=1000)
        references = [problem.reference_posterior(x_o, num_samples, seed=i) for i, x_o in enumerate(obs)]
        for budget in budgets:
            torch.manual_seed(budget)
            theta = problem.prior.sample((budget,))
            x = problem.simulate(theta)
            cell: dict = {}
            for method in ("flow", "gmm", "sbi_npe_nsf"):
                if method == "sbi_npe_nsf":
                    posterior, train_s = train_sbi(theta, x, problem.prior, max_epochs)

                    def draw(x_o, posterior=posterior):
                        return posterior.sample((num_samples,), x=x_o, show_progress_bars=False)
                else:
                    posterior, train_s = train_ours(method, theta, x, problem.prior, max_epochs)

                    def draw(x_o, posterior=posterior):
                        return posterior.sample(x_o, num_samples)

                scores, sample_s = [], []
                for x_o, reference in zip(obs, references):
                    start = time.perf_counter()
                    samples = draw(x_o)
                    sample_s.append(time.perf_counter() - start)
                    scores.append(float(c2st(samples, reference)))
                cell[method] = {
                    "c2st_mean": float(np.mean(scores)),
                    "c2st": scores,
                    "train_seconds": train_s,
                    "sample_seconds_per_observation": float(np.mean(sample_s)),
                }
                print(
                    f"{task_name} {budget:>6} {method:12s} C2ST {np.mean(scores):.3f}  train {train_s:.0f} s",
                    flush=True,
                )
            cell["flow_minus_sbi"] = cell["flow"]["c2st_mean"] - cell["sbi_npe_nsf"]["c2st_mean"]
            results.setdefault(task_name, {})[str(budget)] = cell
    return results


def verdict(results: dict) -> dict:
    gaps = {f"{t}/{b}": cell["flow_minus_sbi"] for t, cells in results.items() for b, cell in cells.items()}
    return {
        "flow_minus_sbi_c2st": gaps,
        "must_flow_within_0.02_of_sbi_everywhere": all(g <= 0.02 for g in gaps.values()),
        "aim_flow_below_sbi_everywhere": all(g < 0 for g in gaps.values()),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), sharey=True)
    for ax, (task_name, cells) in zip(np.atleast_1d(axes), results.items()):
        budgets = sorted(cells, key=int)
        for method in ("flow", "gmm", "sbi_npe_nsf"):
            ax.plot([int(b) for b in budgets], [cells[b][method]["c2st_mean"] for b in budgets], "o-", label=method)
        ax.set_xscale("log")
        ax.set_title(task_name)
        ax.set_xlabel("simulations")
    np.atleast_1d(axes)[0].set_ylabel("C2ST (0.5 is best)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "sbi_tasks.json")
    parser.add_argument("--quick", action="store_true", help="tiny budgets and few epochs: checks the script runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.quick:
        settings = {"budgets": [300], "num_obs": 1, "num_samples": 300, "max_epochs": 3}
    else:
        settings = {"budgets": [1000, 10_000], "num_obs": 5, "num_samples": 2000, "max_epochs": 1000}
    results = run(**settings)
    report = {
        "settings": settings,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "verdict": verdict(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(report["verdict"], indent=2))


if __name__ == "__main__":
    main()
