"""``AmortizedPosterior``: train q(θ | x_1..n) once on simulations, then sample / evaluate it for any observation."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor

from priorfit._validation import (
    as_float_tensor,
    check_count_range,
    check_device,
    check_float,
    check_int,
    check_observation_sets,
)
from priorfit.diagnostics.typicality import TypicalityResult
from priorfit.domain import domain_of_simulations, usable_simulations, warn_lost_simulations
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.networks.sampling import NO_DENSITY, ObservedPosterior, posterior_log_prob, posterior_samples
from priorfit.networks.score import ComposedScoreSampler
from priorfit.priors.truncated import TruncatedPrior
from priorfit.registry import posterior_kinds
from priorfit.runs import KeepBestWeights, make_logger, quiet_lightning
from priorfit.tasks.posterior import PosteriorTask, SimulationDataModule, SimulationShapes, simulate_budget

TRUNCATION_SAMPLES = 10_000  # posterior draws whose log densities place a truncated round's threshold (as sbi)
LOG_PROB_CHUNK = 50_000  # parameters per log-density call when testing prior draws against that threshold
CARD_POSTERIORS = 200  # held-out simulations a fitted posterior's calibration card is computed on

__all__ = ["AmortizedPosterior"]

Estimator = Literal["flow", "gmm", "score", "fmpe"]


def default_flow(theta_dim: int) -> dict:
    """The flow built unless told otherwise: coupling transforms, one network pass each to sample (as fast as sbi's
    nsf; benchmarks/results/sbi_sampling.json). A coupling transform moves half of θ; in two dimensions that is
    one coordinate, so a 1-D or 2-D θ gets twice as many (still cheap there). Stored in the checkpoint explicitly,
    so files of the earlier autoregressive default (which lack "coupling") rebuild as they were trained."""
    return {"coupling": True, "transforms": 10 if theta_dim <= 2 else 5, "hidden": [64, 64]}


# estimators trained on a noisy regression loss (score matching, flow matching): weights averaged (EMA), no plateau
AVERAGED = ("score", "fmpe")
ENSEMBLE = "priorfit.networks.ensemble.EnsemblePosterior"  # the network family of n_ensemble > 1


class AmortizedPosterior:
    """Neural posterior estimation with a set encoder, trained by Lightning on a fixed simulation budget.

    Args:
        estimator: "flow" (set encoder + neural spline flow: coupling transforms, ``default_flow``;
            ``network={"coupling": False}`` for zuko's autoregressive NSF), "gmm" (Gaussian-mixture head) or "score"
            (a score network trained on single observations whose scores compose for any n at sampling time;
            train it with ``num_iid=1``; ``sample`` only, no ``log_prob``). With ``network={"group_size": m}``
            and ``num_iid=(1, m)`` it is the partially factorized PF-NPSE: one score term per group of m.
            "fmpe": flow matching (Dax et al. 2023): a velocity field trained by regression, sampled and evaluated
            (``log_prob``) through zuko's ODE solver; slower to sample than "flow", often more accurate.
        num_iid: observations per θ in the training sets: an int or a (low, high) range (each θ gets its
            own n), so one network serves any n in it.
        network: extra keyword arguments of the network (``encoder={...}``, ``transforms``, ``components``...).
        max_epochs, patience: training stops after ``patience`` epochs without a better validation loss
            (sbi's rule); the best weights are kept.
        batch_size, lr, validation_fraction, seed: training settings; ``seed`` also fixes the simulations.
        logger: None (no logs, the default), "wandb" (offline, under ``$PRIORFIT_RUNS_DIR`` or ``runs/``) or "csv".
        device: where it trains and answers: "cpu", "cuda", "cuda:1", "mps" (``posterior(device=)`` moves it).
        progress_bar: Lightning's progress bar while training.
        sampling_steps: reverse-diffusion steps of the "score" sampler (None: 50 for "gauss", 200 for
            "geffner", whose Langevin-corrected sampler needs more, and 200 for one observation, where nothing
            is composed and both run the reverse SDE).
        lr_plateau_patience: flow and gmm halve the learning rate after this many epochs without a better
            validation loss (None: constant, as sbi). The score estimator averages its weights (EMA) instead
            and ignores this.
        iid_method: how the "score" estimator composes n > 1 observations: "gauss" (Linhart et al. 2024,
            Gaussian-corrected, no Langevin steps) or "geffner" (Geffner et al. 2023, sum of scores with a
            Langevin corrector).
        fisher_weight: weight of the Fisher-information trace regularizer (adversarial robustness, Glöckler
            et al. 2023; ``priorfit.robustness``) in the training loss; flow and gmm only.
        n_ensemble: train this many networks of the estimator's family side by side from different initial
            weights and answer with their equal-weight mixture (``priorfit.networks.ensemble``; as sbi's
            ``EnsemblePosterior``): wider where the members disagree. Density estimators only (not "score").

    Example:
        >>> from priorfit.priors.simulators import GaussianLinear
        >>> problem = GaussianLinear(dim=2)
        >>> post = AmortizedPosterior("gmm", max_epochs=2, logger=None, progress_bar=False)
        >>> post = post.fit(problem.prior, problem.simulate, num_simulations=500)
        >>> post.sample(torch.zeros(1, 2), num_samples=100).shape
        torch.Size([100, 2])
    """

    def __init__(
        self,
        estimator: Estimator = "flow",
        *,
        num_iid: int | tuple[int, int] = 1,
        network: dict | None = None,
        max_epochs: int = 200,
        patience: int = 20,
        batch_size: int = 200,
        lr: float = 5e-4,
        validation_fraction: float = 0.1,
        seed: int = 0,
        logger: Literal["wandb", "csv"] | None = None,
        progress_bar: bool = True,
        sampling_steps: int | None = None,
        iid_method: Literal["gauss", "geffner"] = "gauss",
        lr_plateau_patience: int | None = 5,
        fisher_weight: float = 0.0,
        n_ensemble: int = 1,
        device: str = "cpu",
    ) -> None:
        if not isinstance(estimator, str) or estimator not in posterior_kinds():  # the registry's posterior families
            raise InvalidHyperparameterError(f"estimator must be one of {sorted(posterior_kinds())}, got {estimator!r}")
        if iid_method not in ("gauss", "geffner"):
            raise InvalidHyperparameterError(f"iid_method must be 'gauss' or 'geffner', got {iid_method!r}")
        if logger not in ("wandb", "csv", None):
            raise InvalidHyperparameterError(f"logger must be 'wandb', 'csv' or None, got {logger!r}")
        if network is not None and not isinstance(network, dict):
            raise InvalidHyperparameterError(
                f"network must be a dict of network settings, got {type(network).__name__}"
            )
        check_count_range(num_iid, "num_iid")
        check_int(max_epochs, "max_epochs", minimum=1)
        check_int(patience, "patience", minimum=0)
        check_int(batch_size, "batch_size", minimum=1)
        check_float(lr, "lr", minimum=0, open_minimum=True)
        check_float(
            validation_fraction, "validation_fraction", minimum=0, maximum=1, open_minimum=True, open_maximum=True
        )
        check_int(seed, "seed")
        check_float(fisher_weight, "fisher_weight", minimum=0)
        check_int(n_ensemble, "n_ensemble", minimum=1)
        if n_ensemble > 1 and (estimator == "score" or fisher_weight):
            raise InvalidHyperparameterError(
                "n_ensemble > 1 mixes the members' densities: use a density estimator ('flow', 'gmm', 'fmpe') "
                "without fisher_weight"
            )
        check_device(device)
        if sampling_steps is not None:
            check_int(sampling_steps, "sampling_steps", minimum=1)
        if lr_plateau_patience is not None:
            check_int(lr_plateau_patience, "lr_plateau_patience", minimum=0)
        self.estimator = estimator
        self.num_iid = num_iid
        self.network_kwargs = dict(network or {})
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.logger = logger
        self.progress_bar = progress_bar
        self.sampling_steps = sampling_steps
        self.iid_method = iid_method
        self.lr_plateau_patience = lr_plateau_patience
        self.fisher_weight = fisher_weight
        self.n_ensemble = n_ensemble
        self.device = device
        self.task_: Any = None
        self.prior_: torch.distributions.Distribution | None = None
        self.acceptance_rate_: float | None = None

    # ------------------------------------------------------------------------------------------ training
    def fit(
        self,
        prior: torch.distributions.Distribution,
        simulator: Callable[[Tensor], Tensor],
        num_simulations: int | Sequence[int] = 10_000,
        *,
        x_obs: Tensor | None = None,
        truncation_quantile: float = 1e-4,
    ) -> AmortizedPosterior:
        """Simulate ``num_simulations`` parameter draws (``num_iid`` observations each) and train on them.

        A list of budgets (``[1000, 1000, 1000]``) trains in rounds for the one observation set ``x_obs``
        (truncated sequential NPE, Deistler et al. 2022): round 1 draws θ from the prior; each later round from
        the prior truncated to the current estimate's highest-density region for ``x_obs`` (all but
        ``truncation_quantile`` of its mass; ``priorfit.priors.TruncatedPrior``), and the network is retrained
        on every round's simulations. The answer is meant for ``x_obs``; ``rounds_`` records each round. The
        rejection evaluates log q for many prior draws: cheap for "flow" and "gmm", an ODE solve each for "fmpe".
        """
        from priorfit.priors.simulator_prior import SimulatorPrior

        budgets = list(num_simulations) if isinstance(num_simulations, (list, tuple)) else [num_simulations]
        if not budgets:
            raise PriorfitValidationError("num_simulations must be a positive integer or a list of them")
        for budget in budgets:
            check_int(budget, "num_simulations", minimum=10)
        if not callable(simulator):
            raise PriorfitValidationError(f"simulator must be a function θ -> x, got {type(simulator).__name__}")
        if len(budgets) > 1:
            if x_obs is None:
                raise PriorfitValidationError(
                    "rounds (a list of num_simulations) truncate the prior around one observation: pass x_obs"
                )
            if self.estimator == "score":
                raise PriorfitValidationError(NO_DENSITY + " (truncated rounds need one)")
            check_float(truncation_quantile, "truncation_quantile", minimum=0, maximum=1, open_maximum=True)
        thetas, xs, self.rounds_, proposal, redrawn = [], [], [], prior, 0
        for index, budget in enumerate(budgets):
            simulator_prior = SimulatorPrior(proposal, simulator, num_iid=self.num_iid)
            theta, x = simulate_budget(simulator_prior, budget, 1, seed=self.seed + index)
            thetas.append(theta)
            xs.append(x)
            warn_lost_simulations(
                simulator_prior.num_dropped, simulator_prior.num_simulated, "returned NaN/inf and were redrawn"
            )
            redrawn += simulator_prior.num_dropped
            self.fit_simulations(torch.cat(thetas), torch.cat(xs), prior=prior)
            self.num_dropped_ += redrawn  # redrawn in simulation, so never trained on
            acceptance = getattr(proposal, "acceptance_rate", None)
            self.rounds_.append({"num_simulations": budget, "prior_acceptance": acceptance})
            if index + 1 < len(budgets):
                proposal = self._truncated_prior(prior, x_obs, truncation_quantile)
        return self

    def _truncated_prior(self, prior, x_obs: Tensor, quantile: float) -> TruncatedPrior:
        """The prior restricted to the current estimate's highest-density region for x_obs."""
        conditional = self.posterior(x_obs, reject_outside_prior=False)  # x_obs encoded and checked once
        device = next(self._network().parameters()).device

        def log_density(theta: Tensor) -> Tensor:  # in chunks: rejection may test a million prior draws at once
            parts = theta.to(device, torch.float32).split(LOG_PROB_CHUNK)
            return torch.cat([conditional.log_prob(part) for part in parts]).cpu()

        with torch.no_grad():
            log_q = log_density(self.sample(x_obs, TRUNCATION_SAMPLES))
        threshold = float(torch.quantile(log_q.double(), quantile))

        return TruncatedPrior(prior, log_density, threshold)

    def fit_simulations(
        self, theta: Tensor, x: Tensor, *, prior: torch.distributions.Distribution | None = None
    ) -> AmortizedPosterior:
        """Train on given simulations: θ (N, Dθ) and x (N, n, Dx) (or (N, Dx) for one observation each).

        Simulations with an infinite value, an observation with some (not all) coordinates NaN, or no
        observations are dropped and counted (``num_dropped_``; a warning above 1 %); all-NaN observation rows pad
        sets of different sizes.
        """
        theta = as_float_tensor(theta, "theta", allow_nan=True, allow_inf=True)
        x = as_float_tensor(x, "x", allow_nan=True, allow_inf=True)
        x = x.unsqueeze(1) if x.dim() == 2 else x
        if theta.dim() != 2 or x.dim() != 3 or len(theta) != len(x):
            raise PriorfitValidationError(
                "need θ of shape (N, Dθ) and x of shape (N, n, Dx) or (N, Dx), "
                f"got {tuple(theta.shape)} and {tuple(x.shape)}"
            )
        theta, x, self.num_dropped_ = usable_simulations(theta, x)
        pl.seed_everything(self.seed, verbose=False)
        datamodule = SimulationDataModule(
            simulations=(theta, x),
            batch_size=self.batch_size,
            validation_fraction=self.validation_fraction,
            seed=self.seed,
        )
        network = {"kind": self.estimator, **self.network_kwargs}
        if self.estimator == "flow" and "passes" not in network and network.get("coupling", True):
            network = {**default_flow(theta.shape[-1]), **network}
        if x.shape[1] == 1 and self.estimator in ("flow", "gmm", "fmpe"):
            # one observation per θ: attention over a single token is only extra depth, which overfits small
            # simulation budgets
            network["encoder"] = {"layers": 0, **network.get("encoder", {})}
        if getattr(self, "n_ensemble", 1) > 1:  # k member configs, each built (and allow-listed) by the registry
            sizes = {"theta_dim": theta.shape[-1], "x_dim": x.shape[-1]}
            member = {"_target_": posterior_kinds()[network.pop("kind")], **network, **sizes}
            network = {"_target_": ENSEMBLE, "members": [member] * self.n_ensemble}
        task = PosteriorTask(
            prior=SimulationShapes(theta.shape[-1], x.shape[-1]),
            domain=domain_of_simulations(theta, x).to_dict(),
            network=network,
            lr=self.lr,
            lr_plateau_patience=None if self.estimator in AVERAGED else getattr(self, "lr_plateau_patience", None),
            fisher_weight=getattr(self, "fisher_weight", 0.0),
        )
        task.keep_reference_sets(datamodule.held_out_x)  # before the trainer copies the module (EMA)
        keep_best = KeepBestWeights()
        callbacks = [pl.callbacks.EarlyStopping("val/loss", patience=self.patience), keep_best]
        if self.estimator in AVERAGED:
            # an exponential moving average of the weights smooths the noisy score-matching gradients; Lightning
            # validates with the averaged weights, which KeepBestWeights (listed first) keeps
            callbacks.append(pl.callbacks.EMAWeightAveraging(decay=0.999))
        device = check_device(getattr(self, "device", "cpu"))
        started = time.perf_counter()
        with quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=self.max_epochs,
                accelerator=device.type,
                devices=[device.index] if device.index is not None else 1,
                logger=make_logger(self.logger, "amortized_posterior"),
                callbacks=callbacks,
                enable_progress_bar=self.progress_bar,
                enable_model_summary=False,
                enable_checkpointing=False,
                gradient_clip_val=5.0,
            )
            trainer.fit(task, datamodule=datamodule)
        if keep_best.best_state is not None:
            task.load_state_dict(keep_best.best_state)
        self.task_ = task.eval()
        self.prior_ = prior
        self.best_val_loss_ = keep_best.best  # −log q(θ | x) for flow / gmm, the score-matching loss for score
        self.epochs_ = trainer.current_epoch
        theta_held_out, x_held_out = datamodule.held_out
        self.held_out_ = (theta_held_out[:CARD_POSTERIORS], x_held_out[:CARD_POSTERIORS])  # for the card
        self.training_ = {
            "num_simulations": len(theta),
            "epochs": self.epochs_,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        return self

    # ----------------------------------------------------------------------------------------- inference
    def _network(self):
        if self.task_ is None:
            from priorfit.errors import NotFittedError

            raise NotFittedError("this AmortizedPosterior is not trained yet: call fit(...) first")
        return self.task_.network

    def _observations(self, x_obs: Tensor) -> Tensor:
        """One set of n observations as (1, n, Dx); a (Dx,) vector is one observation."""
        network = self._network()
        x = as_float_tensor(x_obs, "x_obs")
        x = network.check_x(x.unsqueeze(0) if x.dim() == 1 else x)
        if x.shape[0] != 1:
            raise PriorfitValidationError(
                f"x_obs must be one set of observations (n, {network.x_dim}), got {tuple(x.shape)}"
            )
        self._check_domain(x)
        return x.to(next(network.parameters()).device)

    def _check_domain(self, x: Tensor) -> None:
        """Warn when observation sets (B, n, Dx) leave the training domain (``priorfit.domain``)."""
        domain = self.task_.domain
        if self.estimator != "score":  # the score estimator composes single-observation scores for any n
            advice = "Retrain with num_iid=(1, n), or use the 'score' estimator, which composes any number."
            domain.check("num_observations", x.shape[1], advice=advice)
        domain.check("x", x, advice="Check the observations' units, or simulate a wider range and retrain.")

    @torch.no_grad()
    def posterior(
        self, x_obs: Tensor, *, device: str | torch.device | None = None, reject_outside_prior: bool = True
    ) -> ObservedPosterior:
        """q(θ | x_obs) for one set x_obs (n, Dx) as a ``torch.distributions.Distribution`` (batch shape (), event
        shape (Dθ,)): ``sample``, and ``log_prob`` for "flow" / "gmm". Its samples stay inside the prior's support
        when the prior is known (``reject_outside_prior``). ``device`` moves the network there first (and keeps it
        there); samples come back on the network's device.
        """
        network = self._network()
        if device is not None:
            self.task_.to(check_device(device))
        x = self._observations(x_obs)
        if self.estimator == "score":
            iid_method = getattr(self, "iid_method", "gauss")
            conditional = ComposedScoreSampler(network, x[0], self.sampling_steps, iid_method)
        else:
            conditional = network(x)
        support = getattr(self.prior_, "support", None) if reject_outside_prior else None
        return ObservedPosterior(conditional, network.theta_dim, prior_support=support)

    def sample(self, x_obs: Tensor, num_samples: int = 1000, *, reject_outside_prior: bool = True) -> Tensor:
        """``num_samples`` draws of θ ~ q(θ | x_obs) for one set x_obs (n, Dx) (a (Dx,) vector is one observation).
        Samples outside the prior's support are rejected and redrawn; ``acceptance_rate_`` records the fraction
        kept (a low rate means the posterior leaks mass outside the prior, as sbi warns)."""
        check_int(num_samples, "num_samples", minimum=1)
        posterior = self.posterior(x_obs, reject_outside_prior=reject_outside_prior)
        samples = posterior.sample((num_samples,))
        self.acceptance_rate_ = posterior.acceptance_rate
        return samples

    def check(self, x_obs: Tensor) -> TypicalityResult:
        """Does x_obs (n, Dx) look like the training simulations? ``.p_value`` (small: no, the simulator may be
        misspecified for it), ``.misspecified(alpha)`` (≤ alpha false alarms); see ``priorfit.observation_check``."""
        from priorfit.observation_check import ObservationCheck

        x, task = self._observations(x_obs), self.task_
        cached = getattr(task, "observation_check", None)  # reference statistics: once, again after a device move
        if cached is None or cached.pool is not task.check_pool:
            task.observation_check = ObservationCheck(task.network, task.check_pool, task.check_reference)
        return task.observation_check(x)

    def sample_batch(self, x: Tensor, num_samples: int = 1000) -> Tensor:
        """(num_samples, B, Dθ) draws of q(θ | x_b) for every set x_b of x (B, n, Dx): what ``tarp`` and ``sbc``
        take. No rejection outside the prior's support (use ``sample`` for one set with it)."""
        network = self._network()
        check_int(num_samples, "num_samples", minimum=1)
        x = check_observation_sets(x, network.x_dim)
        self._check_domain(x)
        return posterior_samples(network, x.to(next(network.parameters()).device), num_samples)

    @torch.no_grad()
    def log_prob_batch(self, theta: Tensor, x: Tensor) -> Tensor:
        """log q(θ_b | x_b) for sets x (B, n, Dx) and parameters θ (B, Dθ) or (S, B, Dθ) (e.g. ``sample_batch``'s
        draws): shape (B,) or (S, B). What ``priorfit.diagnostics.expected_coverage`` takes."""
        network = self._density_network()
        x = check_observation_sets(x, network.x_dim)
        theta = as_float_tensor(theta, "theta")
        if theta.dim() not in (2, 3) or theta.shape[-2:] != (len(x), network.theta_dim):
            raise PriorfitValidationError(
                f"θ must have shape ({len(x)}, {network.theta_dim}) or (S, {len(x)}, {network.theta_dim}) for "
                f"{len(x)} observation sets, got {tuple(theta.shape)}"
            )
        self._check_domain(x)
        device = next(network.parameters()).device
        return posterior_log_prob(network, x.to(device), theta.to(device))

    def _density_network(self):
        if not self._network().has_density:
            raise PriorfitValidationError(NO_DENSITY)
        return self._network()

    @torch.no_grad()
    def log_prob(self, theta: Tensor, x_obs: Tensor) -> Tensor:
        """log q(θ | x_obs) for each row of θ (M, Dθ), given one set x_obs (n, Dx) (not renormalised to the prior)."""
        network = self._density_network()
        theta = as_float_tensor(theta, "theta")
        theta = theta.unsqueeze(0) if theta.dim() == 1 else theta
        if theta.dim() != 2 or theta.shape[-1] != network.theta_dim:
            raise PriorfitValidationError(f"θ must have shape (M, {network.theta_dim}), got {tuple(theta.shape)}")
        posterior = self.posterior(x_obs, reject_outside_prior=False)
        return posterior.log_prob(theta.to(next(network.parameters()).device))

    def map(self, x_obs: Tensor, *, num_candidates: int = 1000, steps: int = 100, lr: float = 0.01) -> Tensor:
        """The posterior mode: gradient ascent on log q(θ | x_obs) from the best of ``num_candidates`` samples."""
        self._density_network()
        check_int(num_candidates, "num_candidates", minimum=1)
        check_int(steps, "steps", minimum=0)
        check_float(lr, "lr", minimum=0, open_minimum=True)
        posterior = self.posterior(x_obs, reject_outside_prior=False)  # conditioned once, without gradients
        with torch.no_grad():
            candidates = posterior.sample((num_candidates,))
            theta = candidates[posterior.log_prob(candidates).argmax()].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([theta], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            (-posterior.log_prob(theta)).backward()
            optimizer.step()
        return theta.detach()

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the trained network as a priorfit safetensors checkpoint (atomic); ``load`` reads it back.

        Replaces an earlier priorfit checkpoint at ``path``; any other existing file is refused unless
        ``overwrite=True``. Sampling options (``sampling_steps``, ``iid_method``) are not stored: the loaded
        posterior starts from their defaults; set them on it again.
        """
        from priorfit.checkpoint import export_checkpoint

        self._network()
        _ = self.card  # computed now where this posterior was fitted here, so the file carries it
        return export_checkpoint(self.task_, path, overwrite=overwrite)

    @property
    def card(self):
        """The :class:`~priorfit.card.CalibrationCard` (TARP, SBC, coverage, training domain, budget): read from the
        file of a loaded posterior; computed on first use, on up to 200 of the validation simulations (never
        trained on; they did choose the early-stopping epoch), for one fitted here. None for a file without one."""
        from priorfit.card import make_card

        self._network()
        if self.task_.card is None and getattr(self, "held_out_", None) is not None:
            self.task_.card = make_card(self.task_, held_out=self.held_out_, training=self.training_)
        return self.task_.card

    @classmethod
    def from_task(cls, task: PosteriorTask, *, prior: torch.distributions.Distribution | None = None):
        """A trained posterior around a loaded ``PosteriorTask`` (what ``priorfit.load`` returns for one)."""
        if not isinstance(task, PosteriorTask):
            raise PriorfitValidationError(f"expected a PosteriorTask, got a {type(task).__name__}")
        posterior = cls(logger=None)
        # the family's declared name, which may be a trusted family of the user's that is not on the allow list
        posterior.estimator, posterior.task_, posterior.prior_ = task.network.estimator, task.eval(), prior
        posterior.n_ensemble = len(getattr(task.network, "members", [task.network]))
        return posterior

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        prior: torch.distributions.Distribution | None = None,
        trusted_targets: Collection[str] = (),
    ) -> AmortizedPosterior:
        """Deprecated: use ``priorfit.load(path, prior=prior)``."""
        import warnings

        from priorfit.loading import load

        warnings.warn(
            "AmortizedPosterior.load is deprecated and will be removed in priorfit 0.2; use "
            "priorfit.load(path, prior=prior)",
            DeprecationWarning,
            2,
        )
        posterior = load(path, prior=prior, trusted_targets=trusted_targets)
        if not isinstance(posterior, cls):
            raise PriorfitValidationError(f"{path} holds a {type(posterior).__name__}, not an amortized posterior")
        return posterior

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.task_ is not None:  # pickle the weights and configuration, not the Lightning trainer references
            card = self.task_.card.to_dict() if self.task_.card is not None else None
            state["task_"] = (dict(self.task_.hparams), copy.deepcopy(self.task_.state_dict()), card)
        return state

    def __setstate__(self, state: dict) -> None:
        task = state.get("task_")
        if isinstance(task, tuple):
            from priorfit.card import CalibrationCard

            hparams, weights, card = task
            restored = PosteriorTask(**hparams)
            restored.load_state_dict(weights)
            restored.card = CalibrationCard.from_dict(card) if card is not None else None
            state["task_"] = restored.eval()
        self.__dict__.update(state)
