"""Learning-curve extrapolation benchmark: LC-PFN (`lc-pfn-small`) against MCMC on the same parametric model.

Held-out curves are fresh draws of the training prior (`priorfit/conf/prior/learning_curves.yaml`, a seed no
training batch uses), cut after `--cutoffs` epochs. Score: the mean per-epoch log-likelihood of the
true noisy continuation (epochs cutoff+1..100) under each method's per-epoch predictive.

MCMC is what Domhan et al. (2015) do, on exactly the model the prior samples from: emcee's affine-
invariant ensemble (100 walkers, stretch move) over the raw mixture weights, every family parameter and
the log noise sd, with the prior's densities and its rejection rule (the noise-free curve stays in
[0, 1] and ends above its start) as the prior, and the Gaussian likelihood of the observed epochs. Each
curve gets `--mcmc-seconds` of CPU time (one thread); the predictive is read at budgets of 1, 3 and 10
seconds from prefixes of the same chain (the first half of a prefix is burn-in, the rest thinned to
2,000 draws): a mixture of N(f_s(t), σ_s²). MCMC runs on the first `--mcmc-curves` curves only (10 s ×
cutoffs × curves of CPU; 500 curves would take 4 hours on this machine); the PFN runs on all of them and
the comparison is paired on the MCMC subset.

Early stopping (the paper's Section 5 protocol): learning curves recorded here (validation accuracy per
epoch of scikit-learn MLPs on the bundled digits data, a grid of hyperparameters), trained one after the
other; from epoch `--min-epochs` on, a run is stopped when the PFN gives P(y(T) > best final value so far)
< `--stop-threshold`. Reported: fraction of epochs saved and the regret of the best value found.

    python benchmarks/learning_curves.py --part mcmc   # slow: MCMC reference, cached in results/
    python benchmarks/learning_curves.py               # missing MCMC runs, PFN, early stopping -> JSON + PNG
    python benchmarks/learning_curves.py --part pfn    # PFN and early stopping against the cached MCMC runs
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import emcee
import numpy as np
import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

from priorfit.priors import LearningCurvePrior, Normal, Uniform
from priorfit.priors.learning_curves import FAMILIES, combined_curves, valid_curves

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT_SEED = 20261124
WALKERS = 100
BUDGETS = (1.0, 3.0, 10.0)
MAX_DRAWS = 2000
CHUNK = 50


def held_out_curves(prior: LearningCurvePrior, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, T) noisy curves and their noise-free means, from a seed the training stream never uses."""
    batch = prior.sample(count, prior.num_epochs, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    return batch.y[..., 0].double().numpy(), batch.meta["curve"].double().numpy()


# ------------------------------------------------------------------------------------------------ MCMC
class CurvePosterior:
    """Unnormalised log posterior of the prior's parametric model given the first epochs of one curve.

    Parameter vector: K raw weights (U(0, 1), normalised inside the curve), each family's parameters
    (their priors), log noise sd (N(loc, scale²)). Vectorised over walkers for emcee.
    """

    def __init__(self, prior: LearningCurvePrior, observed: np.ndarray) -> None:
        self.prior = prior
        self.families = prior.families
        self.names = [(family, name) for family in self.families for name in FAMILIES[family].parameters]
        self.dim = len(self.families) + len(self.names) + 1
        self.epochs = prior.epochs(torch.float64)
        self.observed = torch.as_tensor(observed, dtype=torch.float64)
        self.noise = Normal(prior.noise.loc, prior.noise.scale)
        self.raw_weight = Uniform(0.0, 1.0)

    def unpack(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        k = len(self.families)
        raw = theta[:, :k]
        weights = raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)
        parameters: dict[str, dict[str, torch.Tensor]] = {family: {} for family in self.families}
        for index, (family, name) in enumerate(self.names):
            parameters[family][name] = theta[:, k + index]
        return raw, weights, parameters, theta[:, -1]

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        raw, _, parameters, log_sd = self.unpack(theta)
        total = self.raw_weight.log_prob(raw).sum(-1) + self.noise.log_prob(log_sd)
        for family, name in self.names:
            total = total + FAMILIES[family].parameters[name].log_prob(parameters[family][name])
        return total

    def curves(self, theta: torch.Tensor) -> torch.Tensor:
        _, weights, parameters, _ = self.unpack(theta)
        return combined_curves(self.epochs, self.families, weights, parameters)

    def __call__(self, theta_np: np.ndarray) -> np.ndarray:
        theta = torch.from_numpy(theta_np)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prior = self.log_prior(theta)
            curves = self.curves(theta)
            sd = theta[:, -1].exp().unsqueeze(-1)
            n = self.observed.shape[0]
            residual = (self.observed - curves[:, :n]) / sd
            likelihood = (-0.5 * residual.square() - sd.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
            total = prior + likelihood
            total = torch.where(valid_curves(curves) & torch.isfinite(total), total, -math.inf)
        return total.numpy()

    def initial_walkers(self, seed: int) -> np.ndarray:
        """Walkers drawn from the prior (accepted curves only)."""
        generator = torch.Generator().manual_seed(seed)
        drawn = self.prior.sample_curves(WALKERS, generator=generator)
        columns = [drawn["weights"].double()]
        columns += [drawn["parameters"][family][name].double().unsqueeze(-1) for family, name in self.names]
        columns.append(self.noise.sample(WALKERS, generator=generator, dtype=torch.float64).unsqueeze(-1))
        return torch.cat(columns, dim=-1).numpy()


def predictive_log_likelihood(posterior: CurvePosterior, draws: np.ndarray, future: np.ndarray) -> float:
    """Mean over future epochs of log (1/S) Σ_s N(y_t; f_s(t), σ_s²)."""
    theta = torch.from_numpy(draws)
    with torch.no_grad():
        curves = posterior.curves(theta)[:, -future.shape[0] :]
        sd = theta[:, -1].exp().unsqueeze(-1)
        target = torch.from_numpy(future)
        log_density = -0.5 * ((target - curves) / sd).square() - sd.log() - 0.5 * math.log(2 * math.pi)
        mixture = torch.logsumexp(log_density, dim=0) - math.log(theta.shape[0])
    return float(mixture.mean())


def run_mcmc(prior: LearningCurvePrior, noisy: np.ndarray, cutoff: int, seed: int, seconds: float) -> dict:
    """One chain per curve and cutoff, stopped after ``seconds`` of CPU; scores at every budget."""
    posterior = CurvePosterior(prior, noisy[:cutoff])
    sampler = emcee.EnsembleSampler(WALKERS, posterior.dim, posterior, vectorize=True)
    start = time.process_time()
    wall_start = time.perf_counter()
    state = posterior.initial_walkers(seed)
    step_times: list[float] = []  # CPU seconds when each chunk of steps ended
    while not step_times or step_times[-1] < seconds:
        state = sampler.run_mcmc(state, CHUNK)  # emcee preallocates the chain, so grow it chunk by chunk
        step_times += [time.process_time() - start] * CHUNK
    chain = sampler.get_chain()  # (steps, walkers, dim)
    scores = {}
    for budget in BUDGETS:
        if budget > seconds:
            continue
        steps = int(np.searchsorted(step_times, budget)) + 1
        kept = chain[steps // 2 : steps].reshape(-1, posterior.dim)
        kept = kept[:: max(1, len(kept) // MAX_DRAWS)]
        scores[f"{budget:g}s"] = {
            "steps": steps,
            "log_likelihood": predictive_log_likelihood(posterior, kept, noisy[cutoff:]),
        }
    return {
        "scores": scores,
        "cpu_seconds": step_times[-1],
        "wall_seconds": time.perf_counter() - wall_start,
        "acceptance": float(np.mean(sampler.acceptance_fraction)),
    }


def mcmc_reference(prior, noisy, cutoffs, count, seconds, out: Path) -> dict:
    """MCMC on the first ``count`` curves at each cutoff; appends to ``out`` as it goes (resumable)."""
    cache = json.loads(out.read_text()) if out.exists() else {}
    settings = {"held_out": len(noisy), "seconds": seconds, "walkers": WALKERS, "seed": HELD_OUT_SEED}
    if cache.get("settings") != settings:
        cache = {"settings": settings, "runs": {}}
    for cutoff in cutoffs:
        for index in range(count):
            key = f"{cutoff}/{index}"
            if key in cache["runs"]:
                continue
            cache["runs"][key] = run_mcmc(prior, noisy[index], cutoff, seed=index, seconds=seconds)
            write_json(cache, out)
            scores = cache["runs"][key]["scores"]
            print(key, {budget: round(score["log_likelihood"], 3) for budget, score in scores.items()}, flush=True)
    return cache


# ------------------------------------------------------------------------------------------------- PFN
def pfn_scores(model, noisy: np.ndarray, cutoff: int) -> tuple[np.ndarray, dict]:
    """Per-curve mean log-likelihood of the continuation, and per-curve latency (batched and batch of 1).

    Calls the network directly rather than through ``LearningCurveExtrapolator`` because held-out noisy
    values can stray outside [0, 1], which the estimator refuses; MCMC sees the same unclipped data.
    """
    count, num_epochs = noisy.shape
    x = torch.arange(1, num_epochs + 1, dtype=torch.float32) / num_epochs
    y = torch.as_tensor(noisy, dtype=torch.float32)

    def predict(rows: slice) -> torch.Tensor:
        size = len(range(*rows.indices(count)))
        x_context = x[:cutoff].expand(size, cutoff).unsqueeze(-1)
        x_query = x[cutoff:].expand(size, num_epochs - cutoff).unsqueeze(-1)
        with torch.no_grad():
            logits = model(x_context, y[rows, :cutoff], x_query)
            return model.head.log_density(logits, y[rows, cutoff:])

    start = time.perf_counter()
    log_density = predict(slice(None))
    batched = (time.perf_counter() - start) / count
    single = []
    for index in range(min(count, 50)):
        start = time.perf_counter()
        predict(slice(index, index + 1))
        single.append(time.perf_counter() - start)
    timing = {"seconds_per_curve_batched": batched, "seconds_per_curve_batch_of_1": float(np.median(single))}
    return log_density.double().mean(-1).numpy(), timing


def band_coverage(model, noisy: np.ndarray, cutoff: int, level: float = 0.9) -> float:
    """Fraction of future values of all held-out curves inside the PFN's central ``level`` predictive band."""
    count, num_epochs = noisy.shape
    x = torch.arange(1, num_epochs + 1, dtype=torch.float32) / num_epochs
    y = torch.as_tensor(noisy, dtype=torch.float32)
    with torch.no_grad():
        logits = model(
            x[:cutoff].expand(count, cutoff).unsqueeze(-1), y[:, :cutoff], x[cutoff:].expand(count, -1).unsqueeze(-1)
        )
        low, high = (model.head.quantile(logits, q) for q in ((1 - level) / 2, (1 + level) / 2))
    future = y[:, cutoff:]
    return float(((future >= low) & (future <= high)).double().mean())


def compare(model, noisy: np.ndarray, cutoffs: list[int], mcmc: dict, mcmc_count: int) -> dict:
    """PFN on every curve, MCMC on the cached subset; paired differences on that subset."""
    results = {}
    for cutoff in cutoffs:
        scores, timing = pfn_scores(model, noisy, cutoff)
        runs = [mcmc["runs"].get(f"{cutoff}/{index}") for index in range(mcmc_count)]
        done = [index for index, run in enumerate(runs) if run is not None]
        entry = {
            "pfn_all_curves": {"log_likelihood": float(scores.mean()), "sem": float(scores.std() / len(scores) ** 0.5)},
            "pfn_timing": timing,
            "pfn_band_90_coverage_all_curves": band_coverage(model, noisy, cutoff),
            "mcmc_curves": len(done),
            "pfn": float(scores[done].mean()) if done else None,
            "mcmc": {},
        }
        for budget in BUDGETS:
            key = f"{budget:g}s"
            values = np.array([runs[i]["scores"][key]["log_likelihood"] for i in done if key in runs[i]["scores"]])
            if len(values) != len(done) or not done:
                continue
            difference = scores[done] - values
            entry["mcmc"][key] = {
                "log_likelihood": float(values.mean()),
                "pfn_minus_mcmc": float(difference.mean()),
                "pfn_minus_mcmc_sem": float(difference.std() / len(difference) ** 0.5),
                "pfn_better_fraction": float((difference > 0).mean()),
                "mean_steps": float(np.mean([runs[i]["scores"][key]["steps"] for i in done])),
            }
        if done:
            cpu = float(np.mean([runs[i]["cpu_seconds"] for i in done]))
            entry["mcmc_cpu_seconds_per_curve"] = cpu
            entry["mcmc_acceptance"] = float(np.mean([runs[i]["acceptance"] for i in done]))
            entry["speedup_batch_of_1"] = cpu / timing["seconds_per_curve_batch_of_1"]
            entry["speedup_batched"] = cpu / timing["seconds_per_curve_batched"]
        results[str(cutoff)] = entry
    return results


# -------------------------------------------------------------------------------------- early stopping
def record_curves(num_epochs: int) -> dict[str, np.ndarray]:
    """Validation accuracy per epoch of scikit-learn MLPs over a hyperparameter grid, per bundled data set."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    grid = [
        dict(hidden_layer_sizes=(width,), learning_rate_init=lr, alpha=alpha, solver=solver, batch_size=64)
        for width in (8, 64)
        for lr in (1e-4, 1e-3, 1e-2)
        for alpha in (1e-4, 1e-1)
        for solver in ("adam", "sgd")
    ]
    curves = {}
    for name, loader in {"digits": load_digits, "breast_cancer": load_breast_cancer}.items():
        X, y = loader(return_X_y=True)
        X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        scaler = StandardScaler().fit(X_train)
        X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
        rows = []
        for index, params in enumerate(grid):
            model = MLPClassifier(random_state=index, **params)
            accuracy = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for _ in range(num_epochs):
                    model.partial_fit(X_train, y_train, classes=np.unique(y))
                    accuracy.append(model.score(X_val, y_val))
            rows.append(accuracy)
        curves[name] = np.array(rows)
    return curves


def early_stopping(model, curves: np.ndarray, thresholds: list[float], min_epochs: int) -> dict:
    """Runs trained one after another; stop a run once P(y(T) > best so far) < threshold (LC-PFN's rule)."""
    count, num_epochs = curves.shape
    x = torch.arange(1, num_epochs + 1, dtype=torch.float32) / num_epochs
    # P(y(T) > best | first e epochs) for every run and epoch does not depend on the threshold; the best
    # so far does, so the probabilities are recomputed inside the loop with a cache per (run, epoch)
    logits_cache: dict[tuple[int, int], torch.Tensor] = {}

    def final_logits(run: int, epochs: int) -> torch.Tensor:
        if (run, epochs) not in logits_cache:
            with torch.no_grad():
                logits_cache[run, epochs] = model(
                    x[:epochs].view(1, -1, 1),
                    torch.as_tensor(curves[run : run + 1, :epochs], dtype=torch.float32),
                    x[-1:].view(1, 1, 1),
                )[0, 0]
        return logits_cache[run, epochs]

    best_possible = float(curves.max())
    report = {}
    for threshold in thresholds:
        best, trained = -math.inf, []
        for run in range(count):
            epochs = num_epochs
            for seen in range(min_epochs, num_epochs):
                observed_best = max(best, float(curves[run, :seen].max()))
                logits = final_logits(run, seen)
                exceed = 1.0 - float(model.head.cdf(logits, torch.tensor(observed_best)))
                if exceed < threshold:
                    epochs = seen
                    break
            trained.append(epochs)
            best = max(best, float(curves[run, :epochs].max()))
        report[str(threshold)] = {
            "compute_saved": 1.0 - sum(trained) / (count * num_epochs),
            "regret": best_possible - best,
            "epochs_trained": trained,
        }
    report["best_without_stopping"] = best_possible
    return report


def plot(results: dict, stopping: dict, noisy: np.ndarray, model, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    cutoffs = sorted(results, key=int)
    for label in ["pfn"] + [f"{b:g}s" for b in BUDGETS]:
        values = [
            results[c]["pfn"] if label == "pfn" else results[c]["mcmc"].get(label, {}).get("log_likelihood")
            for c in cutoffs
        ]
        if None not in values:
            axes[0].plot([int(c) for c in cutoffs], values, "o-", label="LC-PFN" if label == "pfn" else f"MCMC {label}")
    axes[0].set(
        xlabel="epochs observed",
        ylabel="mean log-likelihood of the continuation",
        title="held-out prior curves (MCMC subset)",
    )
    axes[0].legend()
    num_epochs = noisy.shape[1]
    epochs = np.arange(1, num_epochs + 1)
    x = torch.as_tensor(epochs / num_epochs, dtype=torch.float32)
    for index, color in zip(range(3), ["C0", "C1", "C2"]):
        cutoff = 20
        with torch.no_grad():
            logits = model(
                x[:cutoff].view(1, -1, 1),
                torch.as_tensor(noisy[index : index + 1, :cutoff]).float(),
                x[cutoff:].view(1, -1, 1),
            )[0]
            low, mid, high = (model.head.quantile(logits, q).numpy() for q in (0.05, 0.5, 0.95))
        axes[1].plot(epochs, noisy[index], ".", color=color, ms=3)
        axes[1].plot(epochs[cutoff:], mid, color=color)
        axes[1].fill_between(epochs[cutoff:], low, high, color=color, alpha=0.2)
    axes[1].axvline(20, color="k", lw=0.5)
    axes[1].text(19, 0.02, "observed ", ha="right", transform=axes[1].get_xaxis_transform(), fontsize=8)
    axes[1].text(21, 0.02, " predicted: median and 90% band", transform=axes[1].get_xaxis_transform(), fontsize=8)
    axes[1].set(
        xlabel="epoch", ylabel="performance (three held-out prior curves)", title="LC-PFN bands after 20 epochs"
    )
    for name, report in stopping.items():
        thresholds = [t for t in report if t != "best_without_stopping"]
        points = [(report[t]["compute_saved"], report[t]["regret"]) for t in thresholds]
        axes[2].plot(*zip(*points), "o-", label=name)
        for threshold, point in zip(thresholds, points):
            axes[2].annotate(f"{float(threshold):g}", point, textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes[2].set(
        xlabel="fraction of epochs saved",
        ylabel="regret: best accuracy lost by stopping",
        title="early stopping on recorded MLP curves\n(point labels: stop when P(beat best so far) < label)",
    )
    axes[2].title.set_fontsize(10)
    axes[2].legend(title="data set", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "mcmc", "pfn"], default="all", help="pfn: use only cached MCMC runs")
    parser.add_argument("--curves", type=int, default=500)
    parser.add_argument("--cutoffs", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--mcmc-curves", type=int, default=200)
    parser.add_argument("--mcmc-seconds", type=float, default=10.0)
    parser.add_argument("--mcmc-cache", type=Path, default=RESULTS / "learning_curves_mcmc.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "learning_curves.json")
    parser.add_argument("--checkpoint", default="lc-pfn-small", help="name or path of the LC-PFN to score")
    parser.add_argument("--stop-thresholds", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2])
    parser.add_argument("--min-epochs", type=int, default=5, help="epochs before the first stopping decision")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out, no runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = LearningCurvePrior()
    noisy, _ = held_out_curves(prior, args.curves)
    if args.replot:
        from priorfit.checkpoint import load_pfn_model

        stored = json.loads(args.out.read_text())
        model = load_pfn_model(stored["checkpoint"])
        plot(stored["by_cutoff"], stored["early_stopping"], noisy, model, args.out.with_suffix(".png"))
        return
    if args.part != "pfn":
        mcmc_reference(prior, noisy, args.cutoffs, args.mcmc_curves, args.mcmc_seconds, args.mcmc_cache)
    if args.part == "mcmc":
        return
    from priorfit.checkpoint import load_pfn_model

    model = load_pfn_model(args.checkpoint)
    mcmc = json.loads(args.mcmc_cache.read_text()) if args.mcmc_cache.exists() else {"runs": {}}
    results = compare(model, noisy, args.cutoffs, mcmc, args.mcmc_curves)
    recorded = record_curves(prior.num_epochs)
    stopping = {
        name: early_stopping(model, curves, args.stop_thresholds, args.min_epochs) for name, curves in recorded.items()
    }
    largest = f"{max(BUDGETS):g}s"
    verdict = {
        "pfn_minus_mcmc_10s_by_cutoff": {
            c: r["mcmc"].get(largest, {}).get("pfn_minus_mcmc") for c, r in results.items()
        },
        "must_pfn_at_least_mcmc_10s": all(
            r["mcmc"].get(largest, {}).get("pfn_minus_mcmc", -1) >= 0 for r in results.values()
        ),
        "speedup_batch_of_1": min(r.get("speedup_batch_of_1", 0) for r in results.values()),
        "must_1000x_faster": all(r.get("speedup_batch_of_1", 0) >= 1000 for r in results.values()),
        "early_stopping_at_0.05": {
            name: {k: v for k, v in report.get("0.05", {}).items() if k != "epochs_trained"}
            for name, report in stopping.items()
        },
    }
    report = {
        "checkpoint": str(args.checkpoint),
        "held_out_curves": args.curves,
        "mcmc": {
            "walkers": WALKERS,
            "move": "emcee StretchMove",
            "cpu_seconds_per_curve": args.mcmc_seconds,
            "budgets": list(BUDGETS),
            "curves": args.mcmc_curves,
            "max_draws": MAX_DRAWS,
        },
        "torch_threads": torch.get_num_threads(),
        "by_cutoff": results,
        "early_stopping": stopping,
        "recorded_curves": {name: curves.round(4).tolist() for name, curves in recorded.items()},
        "verdict": verdict,
    }
    write_json(report, args.out)
    plot(results, stopping, noisy, model, args.out.with_suffix(".png"))
    print(json.dumps(verdict, indent=2))


if __name__ == "__main__":
    main()
