"""Distribution Transformer benchmark: held-out random GMM priors, linear-Gaussian likelihood, exact posteriors.

Sections (each writes into one JSON + PNG):
- accuracy: for each trained DT (Dθ = 2 and 5), 500 held-out priors from the training family (a seed training
  never uses), and the same priors shifted by +10 in every coordinate (far outside the training means
  ~ N(0, 3²)); n = 1..20 observations: mean NLL of the true θ under the DT posterior minus under the exact
  posterior, and KL(exact ‖ DT) by Monte Carlo (256 exact draws per data set).
- npe: what a user without a prior-adaptive model has: an NPE (``AmortizedPosterior("flow")``, n = 1..20)
  trained on one fixed prior N(0, 3² I) with the same likelihood, scored on the held-out priors.
- sampler: emcee (32 walkers, stretch move, seeded) on one prior and data set at a time (50 of them), run to a
  matched accuracy (the smallest budget whose posterior-mean error, in exact-posterior sd units, is at most the
  DT's); wall time per posterior against the DT's batch-of-1 latency (one thread each). The headline uses a
  NumPy log density (the sampler's fastest set-up); the same with a torch density is reported beside it.
- nonlinear: a DT trained on the range-bearing likelihood (``--checkpoint-range-bearing``), 200 held-out priors,
  n = 1..20: excess NLL of the true θ over the exact posterior density, log p(θ) + log p(x | θ) − log Z with Z
  by defensive importance sampling (100,000 draws, half from the prior, half from the DT posterior widened 2×;
  data sets whose ESS is below 1,000 are reported apart).
- gp (``--checkpoint-gp``): the GP-hyperprior predictive task (θ = f(x*), ``GPPredictive``): the accuracy
  section's excess NLL and KL against the exact predictive (a GMM over component × lengthscale), and per n
  the NLL and time of a type-II maximum-likelihood GP (scikit-learn, what a user without the hyperprior does).
- throughput: posteriors per second of one ``update`` call on batches of 1, 64 and 1,024 priors and data sets (one
  thread), against emcee's at matched accuracy (the sampler section's) and pyro's NUTS run to the same accuracy
  (torch density, one chain, 10 posteriors; ``pip install pyro-ppl``). What a filter or a survey of many objects
  waits for; the batch-1 latency is the sampler section's.
- filtering: 50 sequential single-observation updates (the posterior becomes the next prior) on 200
  sequences, DT against the exact filter: excess NLL of the true θ after each step.

    python benchmarks/distribution_transformer.py --checkpoint-2d PATH [--checkpoint-5d PATH]
    python benchmarks/distribution_transformer.py --sections filtering --keep   # rerun one section, keep the rest
    python benchmarks/distribution_transformer.py --sections sampler throughput --keep

With ``--keep`` the sections (and dimensions) not rerun are carried over from the existing ``--out`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import emcee
import numpy as np
import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

from priorfit.gmm import GMM, sample_gmm
from priorfit.networks import DistributionTransformer
from priorfit.priors import RandomGMMPrior

RESULTS = Path(__file__).resolve().parent / "results"
# the autoregressive flow (the default before coupling flows) these committed results were measured with
FLOW = {"coupling": False}
HELD_OUT_SEED = 777_2026
SHIFT = 10.0
N_GRID = list(range(1, 21))


BATCH_SIZES = (1, 64, 1024)


def checkpoint_label(name_or_path: str) -> str:
    """A hub name as given; a file as "a local training folder: " and its last four path parts (no absolute path of
    this machine goes into a committed result)."""
    path = Path(name_or_path)
    if not path.suffix:
        return str(name_or_path)
    return "a local training folder: " + "/".join(path.parts[-4:])


def held_out(prior_family: RandomGMMPrior, count: int, num_obs: int, shift: float, seed: int):
    """Held-out (prior GMM, θ, x) with the prior and θ shifted by ``shift`` (x follows θ)."""
    generator = torch.Generator().manual_seed(seed)
    priors = prior_family.sample_priors(count, generator=generator)
    logits = priors.mixture_distribution.logits.double()
    means = priors.means.double() + shift
    tril = priors.scale_tril.double()
    prior = GMM.from_logits(logits, means, tril)
    likelihood = prior_family.likelihood
    if hasattr(likelihood, "sample_joint"):  # GP predictive: the data depend on the component θ came from
        theta, x = likelihood.sample_joint(GMM.from_logits(logits, means - shift, tril), num_obs, generator=generator)
        return prior, theta + shift, likelihood.center(x, torch.full_like(theta, -shift))
    theta = sample_gmm(prior, generator)
    x = prior_family.likelihood.simulate(theta, num_obs, generator=generator)
    return prior, theta, x


def dt_log_prob(network: DistributionTransformer, prior: GMM, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        posterior = network(
            prior.mixture_distribution.logits.float(), prior.means.float(), prior.scale_tril.float(), x.float()
        )
        return posterior.log_prob(theta.float()).double()


def accuracy(network, prior_family, count: int) -> dict:
    """Excess NLL and KL(exact ‖ DT) over n = 1..20, in and out of the training means."""
    report = {}
    for label, shift in (("in_distribution", 0.0), ("shifted", SHIFT)):
        prior, theta, x = held_out(prior_family, count, max(N_GRID), shift, HELD_OUT_SEED)
        rows = []
        for n in N_GRID:
            exact = prior_family.likelihood.exact_posterior(prior, x[:, :n])
            excess = float((exact.log_prob(theta) - dt_log_prob(network, prior, x[:, :n], theta)).mean())
            draws = sample_gmm(exact, torch.Generator().manual_seed(n), 256)  # (S, B, D)
            kl = float((exact.log_prob(draws) - dt_log_prob(network, prior, x[:, :n], draws)).mean())
            rows.append({"n": n, "excess_nll": excess, "kl": kl})
        dim = prior_family.dim
        report[label] = {
            "by_n": rows,
            "mean_excess_nll_per_dim": float(np.mean([r["excess_nll"] for r in rows]) / dim),
            "mean_kl_per_dim": float(np.mean([r["kl"] for r in rows]) / dim),
        }
    return report


def reference_log_posterior(
    prior: GMM, likelihood, x: torch.Tensor, theta: torch.Tensor, guide: GMM, num_draws: int, seed: int
):
    """log p(θ | x) = log p(θ) + log p(x | θ) − log Z, Z by defensive importance sampling.

    Proposal: half prior draws, half draws from ``guide`` (the DT's posterior) with its scales doubled, so the
    weights p(θ) p(x | θ) / q(θ) stay bounded by 2 p(x | θ) whatever the guide; the estimate of Z is unbiased
    for any guide, and its ESS says how far to trust it.
    """
    generator = torch.Generator().manual_seed(seed)
    wide = GMM.from_logits(
        guide.mixture_distribution.logits.double(), guide.means.double(), 2 * guide.scale_tril.double()
    )
    log_z, ess = [], []
    for chunk in range(0, len(theta), 25):  # 25 data sets at a time keep the (draws, B) tables small
        part = slice(chunk, chunk + 25)
        draws = torch.cat(
            [sample_gmm(prior[part], generator, num_draws // 2), sample_gmm(wide[part], generator, num_draws // 2)]
        )
        log_target = prior[part].log_prob(draws) + likelihood.log_likelihood(draws, x[part])
        log_proposal = torch.logaddexp(prior[part].log_prob(draws), wide[part].log_prob(draws)) - np.log(2)
        log_weights = log_target - log_proposal
        log_z.append(torch.logsumexp(log_weights, 0) - np.log(len(draws)))
        ess.append(1.0 / torch.softmax(log_weights, 0).square().sum(0))
    log_z, ess = torch.cat(log_z), torch.cat(ess)
    return prior.log_prob(theta) + likelihood.log_likelihood(theta.unsqueeze(0), x)[0] - log_z, ess


def nonlinear(network, prior_family, count: int, num_draws: int = 100_000) -> dict:
    """A likelihood without a closed-form posterior (range-bearing): excess NLL over an importance-sampled reference."""
    rows = []
    for n in (1, 2, 5, 10, 20):
        prior, theta, x = held_out(prior_family, count, n, 0.0, HELD_OUT_SEED + 3)
        with torch.no_grad():
            guide = GMM.from_logits(
                *network.posterior_parameters(
                    prior.mixture_distribution.logits.float(), prior.means.float(), prior.scale_tril.float(), x.float()
                )
            )
        likelihood = prior_family.likelihood
        reference, ess = reference_log_posterior(prior, likelihood, x, theta, guide, num_draws, seed=n)
        excess = reference - guide.log_prob(theta.float()).double()
        trusted = ess >= 1000
        rows.append(
            {
                "n": n,
                "excess_nll": float(excess.mean()),
                "excess_nll_where_ess_at_least_1000": float(excess[trusted].mean()),
                "fraction_ess_at_least_1000": float(trusted.double().mean()),
                "median_ess": float(ess.median()),
            }
        )
    # the same reference where the answer is known: linear-Gaussian, n = 10, the prior itself as the guide
    check_family = RandomGMMPrior(dim=2)
    prior, theta, x = held_out(check_family, 100, 10, 0.0, HELD_OUT_SEED + 5)
    exact = check_family.likelihood.exact_posterior(prior, x).log_prob(theta)
    estimate, ess = reference_log_posterior(prior, check_family.likelihood, x, theta, prior, num_draws, seed=0)
    check = {
        "model": "linear-Gaussian, n = 10, guide = the prior, 100 data sets",
        "max_abs_error_nats": float((estimate - exact).abs().max()),
        "mean_abs_error_nats": float((estimate - exact).abs().mean()),
        "median_ess": float(ess.median()),
    }
    return {
        "reference_check": check,
        "likelihood": type(prior_family.likelihood).__name__,
        "data_sets_per_n": count,
        "importance_draws": num_draws,
        "by_n": rows,
        "mean_excess_nll_per_dim": float(np.mean([r["excess_nll_where_ess_at_least_1000"] for r in rows]) / 2),
    }


def gp_baseline(network, prior_family, count: int) -> dict:
    """The GP predictive task against what a user without the DT does: fit the GP's hyperparameters by marginal
    likelihood (scikit-learn, type-II ML, ignoring the hyperprior), and the exact GMM predictive's own cost."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    likelihood = prior_family.likelihood
    rows = []
    for n in (2, 5, 10, 20):
        prior, theta, x = held_out(prior_family, count, n, 0.0, HELD_OUT_SEED + 6)
        exact = likelihood.exact_posterior(prior, x)
        dt_nll, ml_nll, dt_seconds, ml_seconds = [], [], [], []
        network.update(prior[0], x[0])
        for i in range(count):
            start = time.perf_counter()
            posterior = network.update(prior[i], x[i])
            dt_seconds.append(time.perf_counter() - start)
            dt_nll.append(-float(posterior.log_prob(theta[i].float())))
            offset = float(prior[i].mean[0])  # the GP's constant mean: the prior mixture's mean
            kernel = ConstantKernel(1.0, (1e-3, 1e2)) * RBF(0.3, (0.02, 5.0))
            start = time.perf_counter()
            gp = GaussianProcessRegressor(kernel, alpha=likelihood.noise_std**2, random_state=0)
            gp.fit(x[i, :, :1].numpy(), x[i, :, 1].numpy() - offset)
            mean, sd = gp.predict(np.zeros((1, 1)), return_std=True)  # x* sits at offset 0
            ml_seconds.append(time.perf_counter() - start)
            ml_nll.append(-float(torch.distributions.Normal(mean[0] + offset, max(sd[0], 1e-6)).log_prob(theta[i, 0])))
        start = time.perf_counter()
        likelihood.exact_posterior(prior, x)
        exact_seconds = (time.perf_counter() - start) / count
        rows.append(
            {
                "n": n,
                "nll_exact": float(-exact.log_prob(theta).mean()),
                "nll_dt": float(np.mean(dt_nll)),
                "nll_type2_ml_gp": float(np.mean(ml_nll)),
                "seconds_dt_batch_of_1": float(np.median(dt_seconds)),
                "seconds_type2_ml_gp": float(np.median(ml_seconds)),
                "seconds_exact_per_data_set_batched": exact_seconds,
            }
        )
    return {"data_sets_per_n": count, "by_n": rows}


def npe_baseline(prior_family, count: int, simulations: int) -> dict:
    """A flow NPE trained on one fixed prior, then used (as it must be) on the held-out random priors."""
    from priorfit import AmortizedPosterior

    dim = prior_family.dim
    fixed = torch.distributions.MultivariateNormal(torch.zeros(dim), 9.0 * torch.eye(dim))

    def simulate(theta: torch.Tensor) -> torch.Tensor:
        return prior_family.likelihood.simulate(theta, 1)[:, 0]

    npe = AmortizedPosterior("flow", network=FLOW, num_iid=(1, max(N_GRID)), logger=None, progress_bar=False, seed=0)
    start = time.perf_counter()
    npe.fit(fixed, simulate, num_simulations=simulations)
    seconds = time.perf_counter() - start
    prior, theta, x = held_out(prior_family, count, max(N_GRID), 0.0, HELD_OUT_SEED)
    rows = []
    for n in (1, 5, 10, 20):
        exact = prior_family.likelihood.exact_posterior(prior, x[:, :n])
        with torch.no_grad():
            log_q = torch.cat([npe.log_prob(theta[i : i + 1].float(), x[i, :n].float()) for i in range(count)])
        rows.append({"n": n, "excess_nll": float((exact.log_prob(theta) - log_q.double().flatten()).mean())})
    return {"simulations": simulations, "train_seconds": seconds, "by_n": rows}


def sampler(network, prior_family, count: int, n: int) -> dict:
    """emcee per posterior at growing budgets; posterior-mean error in exact sd units, against the DT's."""
    torch.set_num_threads(1)
    prior, theta, x = held_out(prior_family, count, n, 0.0, HELD_OUT_SEED + 1)
    exact = prior_family.likelihood.exact_posterior(prior, x)
    exact_sd = exact.covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    # DT: error of its posterior mean, and latency for one prior + data set
    with torch.no_grad():
        dt_mean = torch.stack([network.update(prior[i], x[i]).mean for i in range(count)])
    dt_error = float(((dt_mean.double() - exact.mean) / exact_sd).abs().mean())
    latencies = []
    singles = [(prior[i], x[i]) for i in range(min(count, 50))]  # built outside the clock, as emcee's inputs are
    network.update(*singles[0])
    for one_prior, data in singles:
        start = time.perf_counter()
        network.update(one_prior, data)
        latencies.append(time.perf_counter() - start)
    dt_latency = float(np.median(latencies))
    budgets = [100, 200, 400, 800, 1600, 3200]
    report = {
        "n": n,
        "posteriors": count,
        "dt_mean_error_sd_units": dt_error,
        "dt_latency_seconds_batch_of_1": dt_latency,
    }
    for label, make_log_posterior in (("numpy", numpy_log_posterior), ("torch", torch_log_posterior)):
        rows = []
        for steps in budgets:
            errors, seconds = [], []
            for i in range(count):
                log_posterior = make_log_posterior(prior[i], x[i], prior_family.likelihood)
                start = time.perf_counter()
                walkers = sample_gmm(prior[i], torch.Generator().manual_seed(i), 32).numpy()
                chain = emcee.EnsembleSampler(32, prior_family.dim, log_posterior, vectorize=True)
                chain.random_state = np.random.RandomState(i).get_state()  # reproducible stretch moves
                chain.run_mcmc(walkers, steps)
                draws = chain.get_chain(discard=steps // 2, flat=True)
                seconds.append(time.perf_counter() - start)
                errors.append(float((np.abs(draws.mean(0) - exact.mean[i].numpy()) / exact_sd[i].numpy()).mean()))
            rows.append(
                {"steps": steps, "mean_error_sd_units": float(np.mean(errors)), "seconds": float(np.mean(seconds))}
            )
        matched = next((row for row in rows if row["mean_error_sd_units"] <= dt_error), rows[-1])
        suffix = "" if label == "numpy" else "_torch_log_density"
        report[f"emcee{suffix}"] = rows
        report[f"matched_budget{suffix}"] = matched
        report[f"speedup_at_matched_accuracy{suffix}"] = matched["seconds"] / dt_latency
    return report


def throughput(network, prior_family, emcee_seconds: float, n: int, repeats: int = 15) -> dict:
    """Posteriors per second of ``network.update`` on batches of 1, 64 and 1,024 priors (one thread), against
    emcee's and NUTS's posteriors per second at the DT's accuracy (one posterior at a time, one thread)."""
    torch.set_num_threads(1)
    prior, _, x = held_out(prior_family, max(BATCH_SIZES), n, 0.0, HELD_OUT_SEED + 2)
    rows = []
    for batch in BATCH_SIZES:
        priors, data = prior[:batch], x[:batch]  # built outside the clock
        network.update(priors, data)  # warm-up: first-call allocations
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            network.update(priors, data)
            seconds.append(time.perf_counter() - start)
        per_call = float(np.median(seconds))
        rate = batch / per_call
        rows.append(
            {
                "batch": batch,
                "seconds_per_call": per_call,
                "posteriors_per_second": rate,
                "vs_emcee": rate * emcee_seconds,
            }
        )
    return {"n": n, "torch_threads": 1, "emcee_posteriors_per_second": 1 / emcee_seconds, "by_batch": rows}


def nuts(network, prior_family, count: int, n: int, dt_error: float) -> dict:
    """pyro's NUTS per posterior (torch density, one chain, half the draws warm-up) at growing budgets, to the
    DT's posterior-mean error in exact sd units; seconds per posterior."""
    import pyro
    from pyro.infer import MCMC, NUTS

    torch.set_num_threads(1)
    prior, _, x = held_out(prior_family, count, n, 0.0, HELD_OUT_SEED + 1)  # the sampler section's data sets
    exact = prior_family.likelihood.exact_posterior(prior, x)
    exact_sd = exact.covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    rows = []
    for draws in (50, 100, 200, 400):
        errors, seconds = [], []
        for i in range(count):
            one_prior, data = prior[i], x[i]

            def potential(params: dict, one_prior=one_prior, data=data) -> torch.Tensor:
                theta = params["theta"].unsqueeze(0)
                log_likelihood = prior_family.likelihood.log_likelihood(theta, data.unsqueeze(0))
                return -(one_prior.log_prob(theta) + log_likelihood)[0]

            pyro.set_rng_seed(i)
            start = time.perf_counter()
            chain = MCMC(
                NUTS(potential_fn=potential),
                num_samples=draws,
                warmup_steps=draws,
                initial_params={"theta": one_prior.means.mean(0)},  # the prior means' centre, not the answer
                disable_progbar=True,
            )
            chain.run()
            samples = chain.get_samples()["theta"]
            seconds.append(time.perf_counter() - start)
            errors.append(float(((samples.mean(0) - exact.mean[i]) / exact_sd[i]).abs().mean()))
        rows.append({"draws": draws, "mean_error_sd_units": float(np.mean(errors)), "seconds": float(np.mean(seconds))})
        print("nuts", rows[-1], flush=True)
    matched = next((row for row in rows if row["mean_error_sd_units"] <= dt_error), rows[-1])
    return {
        "posteriors": count,
        "by_budget": rows,
        "matched_budget": matched,
        "posteriors_per_second": 1 / matched["seconds"],
    }


def numpy_log_posterior(gmm: GMM, data: torch.Tensor, likelihood):
    """log p(θ) + log p(x | θ) for a batch of walkers, vectorised in NumPy from sufficient statistics: the
    sampler's fastest set-up (a per-call torch density costs ~0.2 ms more per call than the algebra itself)."""
    log_weights = torch.log_softmax(gmm.mixture_distribution.logits, -1).numpy()
    means = gmm.means.numpy()
    inverse_tril = torch.linalg.inv(gmm.scale_tril).numpy()  # (K, D, D)
    log_norm = log_weights - np.log(np.diagonal(gmm.scale_tril.numpy(), axis1=-2, axis2=-1)).sum(-1)
    log_norm = log_norm - 0.5 * means.shape[-1] * np.log(2 * np.pi)
    a = likelihood.matrix.double().numpy()
    gram = data.shape[0] * (a.T @ a) / likelihood.noise_std**2  # n AᵀA / σ²
    linear = a.T @ data.numpy().sum(0) / likelihood.noise_std**2  # Aᵀ Σ x_i / σ²

    def log_posterior(points: np.ndarray) -> np.ndarray:
        whitened = np.einsum("kij,wkj->wki", inverse_tril, points[:, None, :] - means)
        log_prior = np.logaddexp.reduce(log_norm - 0.5 * (whitened**2).sum(-1), axis=-1)
        return log_prior - 0.5 * np.einsum("wi,ij,wj->w", points, gram, points) + points @ linear

    return log_posterior


def torch_log_posterior(gmm: GMM, data: torch.Tensor, likelihood):
    """The same density through ``GMM.log_prob`` and the likelihood's torch code (what a torch user writes)."""

    def log_posterior(points: np.ndarray) -> np.ndarray:
        values = torch.from_numpy(points)
        with torch.no_grad():
            return (gmm.log_prob(values) + likelihood.log_likelihood(values, data.unsqueeze(0))).numpy()

    return log_posterior


def filtering(network, prior_family, count: int, steps: int) -> dict:
    """Sequential single-observation updates against the exact filter (static θ: batch posterior so far)."""
    prior, theta, x = held_out(prior_family, count, steps, 0.0, HELD_OUT_SEED + 2)
    current_logits = prior.mixture_distribution.logits.float()
    current_means, current_tril = prior.means.float(), prior.scale_tril.float()
    rows = []
    for t in range(1, steps + 1):
        with torch.no_grad():
            posterior = network(current_logits, current_means, current_tril, x[:, t - 1 : t].float())
        component = posterior.component_distribution
        current_logits = posterior.mixture_distribution.logits
        current_means, current_tril = component.loc, component.scale_tril
        exact = prior_family.likelihood.exact_posterior(prior, x[:, :t])
        excess = float((exact.log_prob(theta) - posterior.log_prob(theta.float()).double()).mean())
        rows.append({"step": t, "excess_nll": excess})
    return {"sequences": count, "by_step": rows}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for dim, section in report["accuracy"].items():
        for label, style in (("in_distribution", "-"), ("shifted", "--")):
            rows = section[label]["by_n"]
            name = f"DT, D={dim}, " + ("held-out priors" if label == "in_distribution" else "priors shifted +10")
            axes[0].plot([r["n"] for r in rows], [r["excess_nll"] / int(dim) for r in rows], style, label=name)
    if "npe" in report:
        rows = report["npe"]["by_n"]
        axes[0].plot(
            [r["n"] for r in rows], [r["excess_nll"] / 2 for r in rows], "o:", label="NPE on a fixed prior, D=2"
        )
    if "nonlinear" in report:
        rows = report["nonlinear"]["by_n"]
        axes[0].plot(
            [r["n"] for r in rows],
            [r["excess_nll_where_ess_at_least_1000"] / 2 for r in rows],
            "s-.",
            label="range-bearing D=2 (importance-sampled reference)",
        )
    if "gp_predictive" in report:
        rows = report["gp_predictive"]["accuracy"]["in_distribution"]["by_n"]
        axes[0].plot([r["n"] for r in rows], [r["excess_nll"] for r in rows], "^-", label="GP predictive f(x*), D=1")
    axes[0].axhline(0.1, color="k", lw=0.5, label="0.1 nats per dimension")
    axes[0].set(
        xlabel="observations n",
        ylabel="NLL above the exact posterior's, per dimension (nats)",
        title="accuracy on held-out priors (shifted lines lie on the others)",
    )
    axes[0].title.set_fontsize(10)
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if "sampler" in report:
        rows = report["sampler"]["emcee"]
        axes[1].plot([r["seconds"] for r in rows], [r["mean_error_sd_units"] for r in rows], "o-", label="emcee")
        if "emcee_torch_log_density" in report["sampler"]:
            rows = report["sampler"]["emcee_torch_log_density"]
            axes[1].plot(
                [r["seconds"] for r in rows],
                [r["mean_error_sd_units"] for r in rows],
                "o:",
                label="emcee, torch density",
            )
        axes[1].plot(
            [report["sampler"]["dt_latency_seconds_batch_of_1"]],
            [report["sampler"]["dt_mean_error_sd_units"]],
            "r*",
            ms=12,
            label="Distribution Transformer",
        )
        axes[1].set(
            xscale="log",
            xlabel="seconds per posterior (log scale)",
            ylabel="posterior-mean error (posterior sd units)",
            title="cost at matched accuracy (lower left is better)",
        )
        axes[1].legend()
    if "filtering" in report:
        rows = report["filtering"]["by_step"]
        axes[2].plot([r["step"] for r in rows], [r["excess_nll"] for r in rows])
        axes[2].set(
            xlabel="filtering step (one observation; posterior = next prior)",
            ylabel="NLL above the exact filter's (nats)",
            title="sequential updates, D=2",
        )
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-2d", default="dt-linear-gaussian-2d")
    parser.add_argument("--checkpoint-5d", default=None)
    parser.add_argument("--checkpoint-range-bearing", default=None, help="a DT trained with dt_range_bearing")
    parser.add_argument("--checkpoint-gp", default=None, help="a DT trained with dt_gp_predictive")
    parser.add_argument("--posteriors", type=int, default=500)
    parser.add_argument("--sampler-posteriors", type=int, default=50, help="priors emcee runs on, per budget")
    parser.add_argument(
        "--sections", nargs="+", default=["accuracy", "npe", "sampler", "throughput", "filtering", "nonlinear", "gp"]
    )
    parser.add_argument("--npe-simulations", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "distribution_transformer.json")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out, no runs")
    parser.add_argument("--keep", action="store_true", help="carry sections not rerun over from --out")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text()), args.out.with_suffix(".png"))
        return
    torch.set_num_threads(1)
    from priorfit.checkpoint import load_task

    networks = {2: args.checkpoint_2d, 5: args.checkpoint_5d}
    report: dict = json.loads(args.out.read_text()) if args.keep and args.out.exists() else {"accuracy": {}}
    report.pop("verdict", None)
    labels = {str(d): checkpoint_label(p) for d, p in networks.items() if p}
    report["checkpoints"] = {**report.get("checkpoints", {}), **labels}
    report["torch_threads"] = 1
    report["load_average_start"] = list(os.getloadavg())  # the machine's load: timings beside other jobs differ
    for dim, path in networks.items():
        if not path:
            continue
        task = load_task(path)
        network, prior_family = task.network, task.prior
        if "accuracy" in args.sections:
            report["accuracy"][str(dim)] = accuracy(network, prior_family, args.posteriors)
            print(dim, json.dumps({k: v["mean_excess_nll_per_dim"] for k, v in report["accuracy"][str(dim)].items()}))
        if dim == 2:
            if "npe" in args.sections:
                report["npe"] = npe_baseline(prior_family, 200, args.npe_simulations)
                print("npe", report["npe"]["by_n"])
            if "sampler" in args.sections:
                report["sampler"] = sampler(network, prior_family, args.sampler_posteriors, 10)
                print("sampler", report["sampler"]["matched_budget"], report["sampler"]["speedup_at_matched_accuracy"])
            if "throughput" in args.sections:  # against the sampler section's emcee and NUTS at the DT's accuracy
                sampled = report["sampler"]
                report["throughput"] = throughput(network, prior_family, sampled["matched_budget"]["seconds"], 10)
                report["throughput"]["nuts"] = nuts(network, prior_family, 10, 10, sampled["dt_mean_error_sd_units"])
                print("throughput", report["throughput"]["by_batch"])
            if "filtering" in args.sections:
                report["filtering"] = filtering(network, prior_family, 200, 50)
                print("filtering", [round(r["excess_nll"], 3) for r in report["filtering"]["by_step"][::5]])
    if args.checkpoint_gp and "gp" in args.sections:
        task = load_task(args.checkpoint_gp)
        report["checkpoints"]["gp_predictive"] = checkpoint_label(args.checkpoint_gp)
        report["gp_predictive"] = {
            "accuracy": accuracy(task.network, task.prior, args.posteriors),
            "baselines": gp_baseline(task.network, task.prior, 100),
        }
        print("gp", {k: v["mean_excess_nll_per_dim"] for k, v in report["gp_predictive"]["accuracy"].items()})
        print("gp baselines", report["gp_predictive"]["baselines"]["by_n"])
    if args.checkpoint_range_bearing and "nonlinear" in args.sections:
        task = load_task(args.checkpoint_range_bearing)
        report["checkpoints"]["range_bearing"] = checkpoint_label(args.checkpoint_range_bearing)
        report["nonlinear"] = nonlinear(task.network, task.prior, 200)
        print("nonlinear", [round(r["excess_nll_where_ess_at_least_1000"], 3) for r in report["nonlinear"]["by_n"]])
    accuracy_values = [s[label]["mean_excess_nll_per_dim"] for s in report["accuracy"].values() for label in s]
    report["verdict"] = {
        "mean_excess_nll_per_dim": {
            d: {k: v["mean_excess_nll_per_dim"] for k, v in s.items()} for d, s in report["accuracy"].items()
        },
        "must_excess_nll_per_dim_le_0.1": bool(accuracy_values) and max(accuracy_values) <= 0.1,
        "aim_le_0.03": bool(accuracy_values) and max(accuracy_values) <= 0.03,
        "speedup_vs_emcee": report.get("sampler", {}).get("speedup_at_matched_accuracy"),
        "batch_1_latency_seconds": report.get("sampler", {}).get("dt_latency_seconds_batch_of_1"),
        "posteriors_per_second_vs_emcee_by_batch": {
            row["batch"]: row["vs_emcee"] for row in report.get("throughput", {}).get("by_batch", [])
        },
        "must_1000x_emcee_posteriors_per_second_at_batch_64": any(
            row["batch"] >= 64 and row["vs_emcee"] >= 1000 for row in report.get("throughput", {}).get("by_batch", [])
        ),
        "speedup_vs_emcee_torch_log_density": report.get("sampler", {}).get(
            "speedup_at_matched_accuracy_torch_log_density"
        ),
        "gp_predictive_mean_excess_nll": {
            k: v["mean_excess_nll_per_dim"] for k, v in report["gp_predictive"]["accuracy"].items()
        }
        if "gp_predictive" in report
        else None,
        "filtering_excess_nll_step_10_25_50": [report["filtering"]["by_step"][i]["excess_nll"] for i in (9, 24, 49)]
        if "filtering" in report
        else None,
    }
    report["load_average_end"] = list(os.getloadavg())
    write_json(report, args.out)
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report["verdict"], indent=2))


if __name__ == "__main__":
    main()
