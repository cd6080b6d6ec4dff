"""Standard SBI problems with known or computable posteriors (after sbibm's definitions).

Each problem has ``prior`` (a torch distribution over θ), ``simulate(θ) -> x`` (batched, one
simulation per row), ``log_likelihood(θ, x_obs)`` (θ (M, Dθ), x_obs (n, Dx) iid -> (M,)), and
``reference_posterior(x_obs, num_samples, seed)``: analytic for Gaussian linear and the Gaussian mixture, a
dense grid for two moons (2-D), and for the others many-chain Metropolis-Hastings (``mcmc_posterior``), which
the tests check against analytic posteriors and ``benchmarks/sbibm_references.py`` against sbibm's samples.
``SimulatorPrior(problem.prior, problem.simulate)`` turns any of them into training data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Independent, LogNormal, MultivariateNormal, Normal, Uniform

from priorfit._validation import check_int
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError

__all__ = [
    "GaussianLinear",
    "TwoMoons",
    "SLCP",
    "GaussianMixture",
    "BernoulliGLM",
    "SIR",
    "LotkaVolterra",
    "PROBLEMS",
    "get_problem",
    "mcmc_posterior",
    "box_uniform",
    "simulator_prior",
]


def box_uniform(low: float, high: float, dim: int) -> Independent:
    """Uniform prior on [low, high]^dim (what ``sbi.utils.BoxUniform`` is)."""
    return Independent(Uniform(torch.full((dim,), float(low)), torch.full((dim,), float(high))), 1)


def _check_theta(theta, dim: int, name: str) -> Tensor:
    """θ as a floating tensor of shape (N, dim) (a (dim,) vector as one row); anything else is a named error."""
    if not isinstance(theta, Tensor):
        try:
            theta = torch.as_tensor(theta, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise PriorfitValidationError(
                f"{name}.simulate takes θ as a tensor of shape (N, {dim}), got {type(theta).__name__}"
            ) from None
    theta = theta if theta.is_floating_point() else theta.float()
    theta = theta.unsqueeze(0) if theta.dim() == 1 else theta
    if theta.dim() != 2 or theta.shape[-1] != dim:
        raise PriorfitValidationError(f"{name}.simulate takes θ of shape (N, {dim}), got {tuple(theta.shape)}")
    return theta


def _check_obs(x_obs: Tensor, dim: int, name: str) -> Tensor:
    x_obs = torch.as_tensor(x_obs, dtype=torch.float64)
    x_obs = x_obs.unsqueeze(0) if x_obs.dim() == 1 else x_obs
    if x_obs.dim() != 2 or x_obs.shape[-1] != dim:
        raise InvalidHyperparameterError(f"{name} observations must have shape (n, {dim}), got {tuple(x_obs.shape)}")
    return x_obs


def _rk4_states(
    rate: Callable[[Tensor], Tensor], state: Tensor, dt: float, steps: int, every: int, floor: float | None = None
) -> Tensor:
    """Classic fixed-step RK4 of ds/dt = rate(s) from ``state`` (M, S): the states after every ``every``-th of
    ``steps`` steps of ``dt``, stacked as (M, steps // every, S); with ``floor``, states are clamped below at it after
    each step (populations that must stay positive)."""
    observed = []
    for step in range(1, steps + 1):
        k1 = rate(state)
        k2 = rate(state + 0.5 * dt * k1)
        k3 = rate(state + 0.5 * dt * k2)
        k4 = rate(state + dt * k3)
        state = state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if floor is not None:
            state = state.clamp_min(floor)
        if step % every == 0:
            observed.append(state)
    return torch.stack(observed, dim=1)


class _Problem:
    name: str
    prior: torch.distributions.Distribution
    theta_dim: int
    x_dim: int

    def simulate(self, theta: Tensor) -> Tensor:
        """x ~ p(x | θ) for each row of θ (N, Dθ) (a (Dθ,) vector gives one (Dx,) observation)."""
        single = isinstance(theta, Tensor) and theta.dim() == 1
        x = self._simulate(_check_theta(theta, self.theta_dim, self.name))
        return x[0] if single else x

    def _simulate(self, theta: Tensor) -> Tensor:
        raise NotImplementedError

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        """log p(x_j | θ_i) for θ (M, Dθ) and observations (n, Dx): shape (M, n)."""
        raise NotImplementedError

    def log_likelihood(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        """log p(x_1..n | θ) of n iid observations (n, Dx), for each θ row: shape (M,)."""
        return self.log_likelihood_terms(theta, _check_obs(x_obs, self.x_dim, self.name).to(theta)).sum(1)

    def log_posterior_unnormalized(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        inside = self.prior.support.check(theta.to(torch.float32))  # log_prob raises outside the support
        out = torch.full(theta.shape[:1], -math.inf, dtype=theta.dtype, device=theta.device)
        if inside.any():
            log_prior = self.prior.log_prob(theta[inside].to(torch.float32)).to(theta.dtype)
            out[inside] = log_prior + self.log_likelihood(theta[inside], x_obs)
        return out

    def reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0, **options) -> Tensor:
        """``num_samples`` draws (num_samples, Dθ) of the reference posterior given n iid observations (n, Dx)."""
        check_int(num_samples, "num_samples", minimum=1)
        check_int(seed, "seed")
        return self._reference_posterior(x_obs, num_samples, seed, **options)

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        x_obs = _check_obs(x_obs, self.x_dim, self.name)
        return mcmc_posterior(lambda t: self.log_posterior_unnormalized(t, x_obs), self.prior, num_samples, seed=seed)


class GaussianLinear(_Problem):
    """θ ~ N(0, prior_var I), x | θ ~ N(θ, noise_var I) in ``dim`` dimensions; exact posterior for n iid x."""

    name = "gaussian_linear"

    def __init__(self, dim: int = 10, prior_var: float = 0.1, noise_var: float = 0.1) -> None:
        self.theta_dim = self.x_dim = dim
        self.prior_var, self.noise_var = prior_var, noise_var
        self.prior = Independent(Normal(torch.zeros(dim), math.sqrt(prior_var)), 1)

    def _simulate(self, theta: Tensor) -> Tensor:
        return theta + math.sqrt(self.noise_var) * torch.randn_like(theta)

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        return Normal(theta.unsqueeze(1), math.sqrt(self.noise_var)).log_prob(x_obs).sum(2)

    def posterior(self, x_obs: Tensor) -> MultivariateNormal:
        """The exact posterior given n iid observations (n, dim), in float64."""
        x_obs = _check_obs(x_obs, self.x_dim, self.name)
        n = x_obs.shape[0]
        precision = 1 / self.prior_var + n / self.noise_var
        mean = (x_obs.sum(0) / self.noise_var) / precision
        return MultivariateNormal(mean, torch.eye(self.theta_dim, dtype=torch.float64) / precision)

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.posterior(x_obs).sample((num_samples,)).to(torch.float32)


class TwoMoons(_Problem):
    """sbibm's two moons: θ ~ U(-1, 1)², x is a noisy half circle shifted by a function of θ (bimodal posterior)."""

    name = "two_moons"
    theta_dim = x_dim = 2

    def __init__(self) -> None:
        self.prior = box_uniform(-1.0, 1.0, 2)

    def _simulate(self, theta: Tensor) -> Tensor:
        angle = (torch.rand(len(theta), device=theta.device) - 0.5) * math.pi
        radius = 0.1 + 0.01 * torch.randn(len(theta), device=theta.device)
        p = torch.stack([radius * torch.cos(angle) + 0.25, radius * torch.sin(angle)], dim=1)
        return p + self._shift(theta)

    @staticmethod
    def _shift(theta: Tensor) -> Tensor:
        return torch.stack(
            [-(theta[:, 0] + theta[:, 1]).abs() / math.sqrt(2), (-theta[:, 0] + theta[:, 1]) / math.sqrt(2)], dim=1
        )

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        u = x_obs.unsqueeze(0) - self._shift(theta).unsqueeze(1) - torch.tensor([0.25, 0.0]).to(theta)  # (M, n, 2)
        radius = u.norm(dim=-1)
        # polar change of variables: p(u) = N(r; 0.1, 0.01) * (1 / pi) / r, for angles in (-pi/2, pi/2)
        log_density = Normal(0.1, 0.01).log_prob(radius) - math.log(math.pi) - radius.log()
        return torch.where(u[..., 0] > 0, log_density, torch.full_like(log_density, -math.inf))

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0, grid: int = 1500) -> Tensor:
        """Exact up to a grid: the posterior on a grid² lattice over the prior box, sampled with in-cell jitter."""
        x_obs = _check_obs(x_obs, 2, self.name)
        edges = torch.linspace(-1.0, 1.0, grid + 1, dtype=torch.float64)
        centers = (edges[1:] + edges[:-1]) / 2
        theta = torch.cartesian_prod(centers, centers)
        log_post = torch.cat([self.log_likelihood(chunk, x_obs) for chunk in theta.split(250_000)])
        if not torch.isfinite(log_post).any():
            raise InvalidHyperparameterError(
                "two moons: this observation has zero likelihood everywhere in the prior box"
            )
        generator = torch.Generator().manual_seed(seed)
        cells = torch.multinomial((log_post - log_post.max()).exp(), num_samples, replacement=True, generator=generator)
        jitter = (torch.rand(num_samples, 2, generator=generator, dtype=torch.float64) - 0.5) * (2.0 / grid)
        return (theta[cells] + jitter).to(torch.float32)


class SLCP(_Problem):
    """sbibm's simple likelihood, complex posterior: θ ~ U(-3, 3)^5, x = 4 draws of a 2-D Gaussian whose mean,
    scales and correlation are functions of θ (8-D x; four posterior modes from the signs of θ3, θ4)."""

    name = "slcp"
    theta_dim, x_dim = 5, 8

    def __init__(self) -> None:
        self.prior = box_uniform(-3.0, 3.0, 5)

    @staticmethod
    def _gaussian(theta: Tensor) -> MultivariateNormal:
        mean = theta[:, :2]
        s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, torch.tanh(theta[:, 4])
        cov = torch.stack([s1**2, rho * s1 * s2, rho * s1 * s2, s2**2], dim=1).view(-1, 2, 2)
        return MultivariateNormal(mean, cov + 1e-6 * torch.eye(2, dtype=theta.dtype, device=theta.device))

    def _simulate(self, theta: Tensor) -> Tensor:
        return self._gaussian(theta).sample((4,)).transpose(0, 1).reshape(len(theta), 8)

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        points = x_obs.reshape(-1, 4, 2)  # each observation is 4 iid 2-D points
        log_prob = self._gaussian(theta).log_prob(points.reshape(-1, 1, 2))  # (n * 4, M)
        return log_prob.view(len(x_obs), 4, -1).sum(1).T

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        x_obs = _check_obs(x_obs, 8, self.name)

        def folded(theta: Tensor) -> Tensor:  # one of the four sign-symmetric modes: θ3, θ4 > 0
            log_post = self.log_posterior_unnormalized(theta, x_obs)
            return torch.where((theta[:, 2:4] > 0).all(1), log_post, torch.full_like(log_post, -math.inf))

        samples = mcmc_posterior(folded, self.prior, num_samples, seed=seed)
        # the likelihood depends on θ3 and θ4 only through their squares: spread samples over the four modes
        generator = torch.Generator().manual_seed(seed + 1)
        signs = torch.randint(0, 2, (num_samples, 2), generator=generator) * 2 - 1
        samples[:, 2:4] = samples[:, 2:4].abs() * signs
        return samples


class GaussianMixture(_Problem):
    """sbibm's Gaussian mixture: θ ~ U(-10, 10)², x ~ ½ N(θ, I) + ½ N(θ, 0.01 I)."""

    name = "gaussian_mixture"
    theta_dim = x_dim = 2

    def __init__(self) -> None:
        self.prior = box_uniform(-10.0, 10.0, 2)

    def _simulate(self, theta: Tensor) -> Tensor:
        scale = torch.where(torch.rand(len(theta), 1, device=theta.device) < 0.5, 1.0, 0.1)
        return theta + scale * torch.randn_like(theta)

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        diff = x_obs.unsqueeze(0) - theta.unsqueeze(1)
        wide = Normal(0.0, 1.0).log_prob(diff).sum(-1)
        narrow = Normal(0.0, 0.1).log_prob(diff).sum(-1)
        return torch.logaddexp(wide, narrow) - math.log(2)

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        # exact: given which component (wide or narrow) drew each of the n observations, the posterior is a Gaussian
        # (truncated to the box, by rejection); the 2^n assignments, weighted by their evidence, give the mixture
        x_obs = _check_obs(x_obs, self.x_dim, self.name)
        if len(x_obs) > 12:
            return mcmc_posterior(
                partial(self.log_posterior_unnormalized, x_obs=x_obs), self.prior, num_samples, seed=seed
            )
        narrow = torch.cartesian_prod(*[torch.tensor([False, True])] * len(x_obs)).reshape(-1, len(x_obs))
        variances = torch.where(narrow, 0.01, 1.0).double()  # (C, n): per observation, its component's variance
        precision = (1 / variances).sum(1)  # (C,)
        mean = (x_obs.unsqueeze(0) / variances.unsqueeze(-1)).sum(1) / precision.unsqueeze(-1)  # (C, 2)
        # log ∫ Π_j N(x_j; θ, v_j I) dθ per assignment (2 dimensions), times the 1/2 of each observation's component
        quadratic = (x_obs.square().sum(-1) / variances).sum(1) - mean.square().sum(-1) * precision
        log_weight = -(variances.log().sum(1) + (len(x_obs) - 1) * math.log(2 * math.pi) + precision.log())
        log_weight = log_weight - 0.5 * quadratic - len(x_obs) * math.log(2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kept, have = [], 0
            while have < num_samples:
                component = torch.multinomial((log_weight - log_weight.max()).exp(), 4 * num_samples, replacement=True)
                draw = (
                    mean[component]
                    + torch.randn(len(component), 2, dtype=torch.float64) / precision[component, None].sqrt()
                )
                draw = draw[self.prior.support.check(draw.float())]
                kept.append(draw)
                have += len(draw)
                if not have and len(kept) > 20:
                    raise ValueError("the observations' posterior lies outside the prior's box")
        return torch.cat(kept)[:num_samples].float()


class BernoulliGLM(_Problem):
    """sbibm's Bernoulli GLM: a neuron spiking in 100 time bins driven by a white-noise stimulus through a 9-tap filter.

    θ = (offset, 9 filter weights) with sbibm's Gaussian smoothness prior (precision diag(0.5, FᵀF)); each bin t
    spikes with probability σ(X_t θ), X = [1, stimulus lagged by 0..8 bins] (stimulus: NumPy's ``RandomState(42)``
    normal draws, as sbibm's); x = Xᵀy (the spike count and the 9 spike-triggered sums of the stimulus), which are
    sufficient statistics, so p(θ | x) = p(θ | y). ``log_likelihood`` is log p(y | θ) for any y with these
    statistics: exact up to a term free of θ (how many spike trains share x), which no posterior sees.
    """

    name = "bernoulli_glm"
    theta_dim = x_dim = 10
    bins, taps = 100, 9

    def __init__(self) -> None:
        stimulus = torch.from_numpy(np.random.RandomState(42).randn(self.bins).astype(np.float32))
        self.stimulus = stimulus
        design = torch.zeros(self.bins, self.taps)
        for lag in range(self.taps):
            design[lag:, lag] = stimulus[: self.bins - lag]
        self.design = torch.cat([torch.ones(self.bins, 1), design], dim=1)  # (100, 10)
        differences = torch.eye(self.taps) - torch.diag(torch.ones(self.taps - 1), -1)
        smooth = differences @ differences + torch.diag(torch.arange(self.taps) / self.taps) ** 0.5
        precision = torch.zeros(self.theta_dim, self.theta_dim)
        precision[0, 0] = 0.5
        precision[1:, 1:] = smooth.T @ smooth
        self.prior = MultivariateNormal(torch.zeros(self.theta_dim), precision_matrix=precision)

    def _simulate(self, theta: Tensor) -> Tensor:
        design = self.design.to(theta)
        spikes = torch.bernoulli(torch.sigmoid(theta @ design.T))  # (N, 100)
        return spikes @ design

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        drive = theta @ self.design.to(theta).T  # (M, 100)
        return theta @ x_obs.to(theta).T - torch.nn.functional.softplus(drive).sum(1, keepdim=True)

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        # log-concave and narrower than the prior in 10-D: chains start at the mode (Laplace)
        x_obs = _check_obs(x_obs, self.x_dim, self.name)
        density = partial(self.log_posterior_unnormalized, x_obs=x_obs)
        return mcmc_posterior(density, self.prior, num_samples, seed=seed, start="mode", warmup=300)


class SIR(_Problem):
    """SIR epidemic (sbibm's): θ = (contact rate β, recovery rate γ) with log-normal priors; the ODE is solved by
    RK4 over 160 days for a population of 10^6 with one initial case; x = Binomial(1000, I(t)/N) at 10 times
    (scaled by 1/1000)."""

    name = "sir"
    theta_dim, x_dim = 2, 10
    population, days, steps, trials = 1_000_000.0, 160.0, 320, 1000

    def __init__(self) -> None:
        self.prior = Independent(LogNormal(torch.tensor([math.log(0.4), math.log(0.125)]), torch.tensor([0.5, 0.2])), 1)

    def infected_fraction(self, theta: Tensor) -> Tensor:
        """I(t)/N at the 10 observation days (16, 32, ..., 160), batched RK4 in float64: (M, 10)."""
        beta, gamma = theta[:, :1].double(), theta[:, 1:2].double()
        state = torch.zeros(len(theta), 3, dtype=torch.float64, device=theta.device)
        state[:, 0], state[:, 1] = 1.0 - 1.0 / self.population, 1.0 / self.population

        def rate(s: Tensor) -> Tensor:
            infection = beta[:, 0] * s[:, 0] * s[:, 1]
            recovery = gamma[:, 0] * s[:, 1]
            return torch.stack([-infection, infection - recovery, recovery], dim=1)

        observed = _rk4_states(rate, state, self.days / self.steps, self.steps, self.steps // 10)
        return observed[:, :, 1].clamp(1e-12, 1.0)

    def _simulate(self, theta: Tensor) -> Tensor:
        probs = self.infected_fraction(theta)
        counts = torch.distributions.Binomial(self.trials, probs=probs).sample()
        return (counts / self.trials).to(torch.float32)

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        probs = self.infected_fraction(theta)
        counts = (x_obs.to(torch.float64) * self.trials).round()
        binomial = torch.distributions.Binomial(self.trials, probs=probs.unsqueeze(1))
        return binomial.log_prob(counts.unsqueeze(0)).sum(2).to(theta.dtype)


class LotkaVolterra(_Problem):
    """Predator-prey dynamics (sbibm's priors, initial state and noise) returning the whole trajectory.

    θ = (α, β, γ, δ) with log-normal priors (log-means −0.125, −3, −0.125, −3, log-sd 0.5); prey X and predators Y
    from (30, 1) follow dX/dt = αX − βXY, dY/dt = −γY + δXY (batched RK4 in float64, ``steps_per_unit`` steps per
    time unit) for ``days`` time units; x holds both populations at ``num_times`` equally spaced times, each with
    log-normal noise of log-sd 0.1, time-major: x = (X(t1), Y(t1), X(t2), Y(t2), ...), so ``num_times`` steps of
    2 channels for a ``{"kind": "cnn", "channels": 2}`` embedding. sbibm's own task observes 10 times.
    """

    name = "lotka_volterra"
    theta_dim = 4
    initial, noise = (30.0, 1.0), 0.1

    def __init__(self, num_times: int = 50, days: float = 20.0, steps_per_unit: int = 20) -> None:
        check_int(num_times, "num_times", minimum=1)
        check_int(steps_per_unit, "steps_per_unit", minimum=1)
        self.num_times, self.days = num_times, float(days)
        self.steps = max(num_times, round(self.days * steps_per_unit) // num_times * num_times)
        self.x_dim = 2 * num_times
        self.prior = Independent(LogNormal(torch.tensor([-0.125, -3.0, -0.125, -3.0]), torch.full((4,), 0.5)), 1)

    def populations(self, theta: Tensor) -> Tensor:
        """Noise-free (X, Y) at the ``num_times`` observation times: (M, num_times, 2), float64."""
        alpha, beta, gamma, delta = theta.double().unbind(1)
        state = torch.tensor(self.initial, dtype=torch.float64, device=theta.device).expand(len(theta), 2)

        def rate(s: Tensor) -> Tensor:
            prey, predators = s.unbind(1)
            return torch.stack(
                [alpha * prey - beta * prey * predators, -gamma * predators + delta * prey * predators], 1
            )

        dt, every = self.days / self.steps, self.steps // self.num_times
        return _rk4_states(rate, state, dt, self.steps, every, floor=1e-10)

    def _simulate(self, theta: Tensor) -> Tensor:
        log_populations = self.populations(theta).log()
        noisy = (log_populations + self.noise * torch.randn_like(log_populations)).exp()
        return noisy.reshape(len(theta), self.x_dim).to(torch.float32)

    def _reference_posterior(self, x_obs: Tensor, num_samples: int, seed: int = 0) -> Tensor:
        # 100 values with 10 % noise: the posterior is far narrower than the prior, chains start at the mode
        x_obs = _check_obs(x_obs, self.x_dim, self.name)
        density = partial(self.log_posterior_unnormalized, x_obs=x_obs)
        return mcmc_posterior(density, self.prior, num_samples, seed=seed, start="mode", warmup=200)

    def log_likelihood_terms(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        populations = self.populations(theta).reshape(len(theta), 1, self.x_dim)  # (M, 1, Dx)
        log_x = x_obs.to(torch.float64).clamp_min(1e-300).log().unsqueeze(0)  # (1, n, Dx)
        terms = Normal(populations.log(), self.noise).log_prob(log_x) - log_x  # log-normal: density of log x / x
        return terms.sum(2).to(theta.dtype)


PROBLEMS = {
    cls.name: cls for cls in (GaussianLinear, TwoMoons, SLCP, GaussianMixture, BernoulliGLM, SIR, LotkaVolterra)
}


def get_problem(name: str, **kwargs) -> _Problem:
    """A standard problem by name (a key of ``PROBLEMS``): gaussian_linear, two_moons, slcp, gaussian_mixture,
    bernoulli_glm, sir, lotka_volterra."""
    if name not in PROBLEMS:
        raise InvalidHyperparameterError(f"unknown SBI problem {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[name](**kwargs)


def simulator_prior(problem: str, *, num_iid: int | tuple[int, int] | None = 1, **kwargs):
    """``SimulatorPrior`` of a standard problem by name (what Hydra configs instantiate)."""
    from priorfit.priors.simulator_prior import SimulatorPrior

    instance = get_problem(problem, **kwargs)
    return SimulatorPrior(
        instance.prior, instance.simulate, num_iid=tuple(num_iid) if isinstance(num_iid, list) else num_iid
    )


def mcmc_posterior(
    log_density,
    prior: torch.distributions.Distribution,
    num_samples: int,
    *,
    seed: int = 0,
    num_init: int = 20_000,
    warmup: int = 400,
    thin: int = 5,
    chains: int | None = None,
    start: str = "importance",
    num_starts: int = 8,
) -> Tensor:
    """Samples of an unnormalised log density by many parallel random-walk Metropolis chains (float64).

    ``start="importance"``: chains start from ``num_init`` prior draws resampled by their density (a crude
    importance step that puts them in the posterior's modes). ``start="mode"``, for posteriors so narrow that no
    prior draw lands in them: the ``num_starts`` densest prior draws are optimised (L-BFGS, in the prior support's
    unconstrained coordinates; the log density must be differentiable), and chains start from the Laplace
    approximation at the best optimum. Then one Gaussian proposal adapts to the chains' covariance during warm-up,
    and each chain contributes every ``thin``-th state until ``num_samples`` are collected. ``chains`` defaults to
    ``num_samples``: each sample is the state of its own chain after warm-up. Fewer chains give several nearby
    samples per chain, and a classifier test (C2ST) tells such clumped samples from independent ones (SLCP: 0.60-0.69
    against sbibm's reference with 500 chains, 0.49-0.52 with one sample per chain: benchmarks/sbibm_references.py,
    results in ``sbibm_references_500_chains.json`` and ``sbibm_references.json``).
    """
    if start not in ("importance", "mode"):
        raise InvalidHyperparameterError(f"start must be 'importance' or 'mode', got {start!r}")
    chains = num_samples if chains is None else chains
    raw_density = log_density

    def log_density(theta: Tensor) -> Tensor:  # NaN (e.g. an ODE that overflowed) is zero density
        values = raw_density(theta)
        return values.masked_fill(values.isnan(), -math.inf)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        candidates = prior.sample((num_init,)).double()
        weights = log_density(candidates)
        if not torch.isfinite(weights).any():
            raise ValueError("the posterior density is zero at every one of the prior draws used to start MCMC")
        if start == "mode":
            state = _laplace_draws(log_density, prior, candidates[weights.topk(num_starts).indices], chains)
            current = log_density(state)
        else:
            chosen = torch.multinomial((weights - weights.max()).exp(), chains, replacement=True)
            state, current = candidates[chosen], weights[chosen]
        dim = state.shape[1]
        scale = 2.38**2 / dim
        proposal = torch.linalg.cholesky(_chain_covariance(state) * scale)
        kept: list[Tensor] = []
        step = 0
        while sum(len(k) for k in kept) < num_samples:
            move = state + torch.randn_like(state) @ proposal.T
            proposed = log_density(move)
            accept = torch.rand(chains, dtype=torch.float64).log() < proposed - current
            state = torch.where(accept.unsqueeze(1), move, state)
            current = torch.where(accept, proposed, current)
            step += 1
            if step < warmup and step % 50 == 0:
                proposal = torch.linalg.cholesky(_chain_covariance(state) * scale)
            elif step >= warmup and (step - warmup) % thin == 0:
                kept.append(state.clone())
    return torch.cat(kept)[:num_samples].to(torch.float32)


def _laplace_draws(log_density, prior: torch.distributions.Distribution, starts: Tensor, count: int) -> Tensor:
    """``count`` draws of the Laplace approximation at the highest optimum reached from ``starts`` (S, D).

    The optimisation and the Gaussian live in the unconstrained coordinates u of the prior's support (log θ for a
    positive θ), where the density carries the Jacobian of θ(u) and narrow positive posteriors are nearly Gaussian.
    The rows are optimised together (their objectives are independent, so one L-BFGS on their sum serves all).
    """
    to_support = torch.distributions.biject_to(prior.support)

    def log_density_u(u: Tensor) -> Tensor:
        theta = to_support(u)
        return log_density(theta) + to_support.log_abs_det_jacobian(u, theta)

    u = to_support.inv(starts).detach().clone().requires_grad_()
    optimizer = torch.optim.LBFGS([u], max_iter=200, line_search_fn="strong_wolfe", tolerance_change=1e-12)

    def closure() -> Tensor:
        # a trial step can leave the region where the density is finite (an ODE that overflows): such rows count a
        # huge constant, so the line search steps back, and pass no gradient (it would be NaN)
        optimizer.zero_grad()
        values = log_density_u(u)
        finite = torch.isfinite(values)
        loss = -values[finite].sum() + 1e12 * (~finite).sum()
        loss.backward()
        u.grad.nan_to_num_(0.0, 0.0, 0.0)
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        values = log_density_u(u).nan_to_num(-math.inf)
        if not torch.isfinite(values).any():
            raise ValueError("every optimisation of the log density left its support: no mode to start MCMC from")
        mode = u[values.argmax()].detach()
    hessian = torch.autograd.functional.hessian(lambda v: log_density_u(v.unsqueeze(0))[0], mode)
    try:
        scale = torch.linalg.cholesky(torch.linalg.inv(-hessian))
    except torch.linalg.LinAlgError:
        raise ValueError("the optimised log density is not concave at its mode: no Laplace start for MCMC") from None
    return to_support(mode + torch.randn(count, len(mode), dtype=mode.dtype) @ scale.T)


def _chain_covariance(state: Tensor) -> Tensor:
    centered = state - state.mean(0)
    cov = centered.T @ centered / max(1, len(state) - 1)
    return cov + 1e-8 * torch.eye(len(cov), dtype=cov.dtype) * cov.diagonal().mean().clamp_min(1e-12)
