"""What the training-domain checks cost at inference: the same query with the checks on and off.

Every query a model answers goes through ``TrainingDomain.check`` (``priorfit/domain.py``). This times one query per
model with the check as shipped and with it replaced by a no-op, alternating the two in short windows (so load on
the machine hits both alike), for an in-domain query and for an out-of-domain one (which builds the warning
message; warnings are recorded, not printed, so terminal output is not timed). Each round also times the checked
query a second time: the median ratio of those two (``noise_a_a``) is how far a ratio moves with no change at all.

- ``posterior``: ``AmortizedPosterior("gmm")`` and ``("flow")`` trained on one observation per θ (1,000
  simulations), ``sample(x, 1000)``; out of domain: 5 observations (the gmm's 2.5 ms query is the cheapest there is);
- ``pfn-gp-1d``: ``predictive`` of 20 queries given 20 context points; out of domain: a label beyond the buckets;
- ``dt-linear-gaussian-2d``: ``update`` with 5 observations; out of domain: 40 observations;
- ``tabular-reg-small``: ``PFNRegressor.predict`` of 50 rows (fitted on 100); out of domain: a row beyond the range;
- ``lc-pfn-small``: ``fit`` + ``predict_quantiles``; out of domain: a falling curve.

    python benchmarks/domain_overhead.py   # writes benchmarks/results/domain_overhead.{json,png}
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

import priorfit
from priorfit.domain import TrainingDomain
from priorfit.gmm import GMM
from priorfit.priors.simulators import GaussianLinear

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS, WINDOW_SECONDS = 21, 0.25


def queries() -> dict:
    """name -> (in-domain call, out-of-domain call): each a function of no arguments."""
    torch.manual_seed(0)
    problem = GaussianLinear(dim=2)
    post = priorfit.AmortizedPosterior("gmm", max_epochs=3, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=1000)
    flow = priorfit.AmortizedPosterior("flow", max_epochs=3, progress_bar=False)
    flow.fit(problem.prior, problem.simulate, num_simulations=1000)
    one, five = torch.zeros(1, 2), torch.zeros(5, 2)

    gp = priorfit.load("pfn-gp-1d")
    data = gp.prior.sample(1, 40, generator=torch.Generator().manual_seed(0))
    xc, yc, xq = data.x[:, :20], data.y[:, :20], data.x[:, 20:]

    dt = priorfit.load("dt-linear-gaussian-2d")
    prior = GMM(torch.tensor([0.5, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), torch.eye(2).expand(2, 2, 2))

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(100, 4))
    reg = priorfit.PFNRegressor(n_estimators=4).fit(X, X @ [1.0, -1.0, 0.5, 2.0])
    rows, far = rng.uniform(0.1, 0.9, size=(50, 4)), rng.uniform(0.1, 0.9, size=(50, 4))
    far[0, 2] = 3.0

    lc = priorfit.LearningCurveExtrapolator()
    epochs, rising = np.arange(1, 11), 0.4 + 0.3 * (1 - np.exp(-np.arange(1, 11) / 3))
    return {
        "posterior (gmm)": (lambda: post.sample(one, 1000), lambda: post.sample(five, 1000)),
        "posterior (flow)": (lambda: flow.sample(one, 1000), lambda: flow.sample(five, 1000)),
        "pfn-gp-1d": (lambda: gp.predictive(xc, yc, xq), lambda: gp.predictive(xc, yc + 50.0, xq)),
        "dt-linear-gaussian-2d": (
            lambda: dt.update(prior, torch.zeros(5, 2)),
            lambda: dt.update(prior, torch.zeros(40, 2)),
        ),
        "tabular-reg-small": (lambda: reg.predict(rows), lambda: reg.predict(far)),
        "lc-pfn-small": (
            lambda: lc.fit(epochs, rising).predict_quantiles([50, 100]),
            lambda: lc.fit(epochs, 1.1 - rising).predict_quantiles([50, 100]),
        ),
    }


def window(call, calls: int) -> float:
    """Seconds per call over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def race(call) -> dict:
    """Checks on vs off in windows of about WINDOW_SECONDS, alternating which goes first; the median of the
    per-round ratios."""
    calls = max(5, round(WINDOW_SECONDS / window(call, 3)))
    on, off, again = [], [], []
    for index in range(ROUNDS):
        for checked in (index % 2 == 0, index % 2 == 1):
            if checked:
                on.append(window(call, calls))
            else:
                with mock.patch.object(TrainingDomain, "check", lambda *args, **kwargs: None):
                    off.append(window(call, calls))
        again.append(window(call, calls))  # checked again: the A/A control, i.e. the noise floor of a ratio
    return {
        "ms_checked": 1000 * statistics.median(on),
        "ms_unchecked": 1000 * statistics.median(off),
        "overhead": statistics.median([a / b for a, b in zip(on, off)]) - 1,
        "noise_a_a": statistics.median([a / b for a, b in zip(again, on)]) - 1,
        "calls_per_window": calls,
    }


def main() -> None:
    torch.set_num_threads(2)
    load_start = os.getloadavg()
    results = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, (inside, outside) in queries().items():
            inside(), outside()  # warm-up: caches, first-call allocations
            results[name] = {"in_domain": race(inside), "out_of_domain": race(outside)}
            shown = {k: f"{v['overhead']:+.1%} (A/A {v['noise_a_a']:+.1%})" for k, v in results[name].items()}
            print(name, shown, flush=True)
    report = {
        "settings": {"rounds": ROUNDS, "window_seconds": WINDOW_SECONDS, "threads": torch.get_num_threads()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "warnings_recorded": len(caught),
        "models": results,
    }
    write_json(report, RESULTS / "domain_overhead.json")
    plot(results, RESULTS / "domain_overhead.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    positions = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for offset, case in ((-0.2, "in_domain"), (0.2, "out_of_domain")):
        values = [100 * results[name][case]["overhead"] for name in names]
        ax.bar(positions + offset, values, width=0.4, label=case.replace("_", " ") + " query")
    ax.axhline(5, color="grey", linestyle=":", linewidth=1, label="5 % of the query's time")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(positions, names, fontsize="small")
    ax.set(ylabel="extra time with the check (%)", title="Cost of the training-domain check per query")
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
