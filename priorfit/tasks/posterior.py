"""PosteriorTask: trains an amortized posterior q(θ | x_1..n) by −log q(θ | x) on simulations."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset, random_split

from priorfit._allocator import keep_freed_memory
from priorfit._validation import check_float, check_int
from priorfit.domain import TrainingDomain, domain_of_simulations
from priorfit.errors import InvalidHyperparameterError
from priorfit.networks.losses import fisher_penalty
from priorfit.priors.base import Batch
from priorfit.registry import build, posterior_kinds
from priorfit.tasks.common import build_network, check_optimizer_settings, logs_this_step, plain_config, probe

__all__ = ["PosteriorTask", "SimulationDataModule", "SimulationShapes", "simulate_budget"]

REFERENCE_BUFFERS = ("check_pool", "check_reference")
MAX_REFERENCE_SETS = 500  # held-out sets kept in a checkpoint for the check, each for pool and reference


class PosteriorTask(pl.LightningModule):
    """Amortized posteriors: NPE with a set encoder (flow, gmm) or a compositional score network (score).

    Args:
        prior: the simulator prior as a Hydra config (``_target_``) or an object with ``sample`` returning
            ``Batch(x=(B, n, Dx), theta=(B, Dθ))`` (e.g. ``SimulatorPrior``); objects are not stored in
            checkpoints, configs are.
        network: network config: ``{"kind": "flow" | "gmm", ...keyword arguments}`` or a ``_target_`` dict;
            θ and x dimensions are filled in from the prior.
        theta_dim, x_dim: sizes, needed only when ``prior`` is a stored description rather than a sampler.
        lr, weight_decay: AdamW settings.
        lr_plateau_patience: halve the learning rate after this many validations without a better
            ``val/loss`` (None: constant rate).
        fisher_weight: weight of the Fisher-information trace regularizer (``priorfit.networks.losses.fisher_penalty``,
            Glöckler et al. 2023) added to the training loss; 0 turns it off. Density networks only.
        fisher_samples: θ draws per observation set in its Monte Carlo estimate.
        domain: the training domain (``priorfit.domain``): observation counts and value ranges of the training
            simulations; recorded at the start of training when None, stored in checkpoints.
        trusted_targets: ``_target_`` names besides priorfit's own families the configs may name; not stored.
    """

    def __init__(
        self,
        *,
        prior: Any,
        network: dict,
        theta_dim: int | None = None,
        x_dim: int | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        lr_plateau_patience: int | None = None,
        fisher_weight: float = 0.0,
        fisher_samples: int = 1,
        domain: dict | None = None,
        trusted_targets: Collection[str] = (),
    ) -> None:
        super().__init__()
        prior, network = plain_config(prior), plain_config(network)
        check_optimizer_settings(lr, weight_decay)
        if lr_plateau_patience is not None:
            check_int(lr_plateau_patience, "lr_plateau_patience", minimum=0)
        prior_config = dict(prior) if isinstance(prior, dict) else None
        if prior_config and "_target_" in prior_config:
            self.prior = build(prior_config, trusted_targets=trusted_targets)
        elif prior_config is not None:  # a checkpoint of a posterior trained on given simulations: sizes only
            self.prior = SimulationShapes(int(theta_dim), int(x_dim))
        else:
            self.prior = prior
        shapes = probe(self.prior, num_points=1)
        if shapes.theta is None:
            raise InvalidHyperparameterError(f"{type(self.prior).__name__} yields no θ: it is not a simulator prior")
        theta_dim, x_dim = shapes.theta.shape[-1], shapes.x.shape[-1]
        network = dict(network)
        kinds = posterior_kinds()
        target = network.pop("_target_", None) or kinds.get(network.pop("kind", "flow"))
        if target is None:
            raise InvalidHyperparameterError(f"unknown posterior network kind; choose one of {sorted(kinds)}")
        self.save_hyperparameters(
            {
                "prior": prior_config if prior_config else {"description": repr(self.prior)},
                "network": {"_target_": target, **network},
                "theta_dim": theta_dim,
                "x_dim": x_dim,
                "lr": lr,
                "weight_decay": weight_decay,
                "lr_plateau_patience": lr_plateau_patience,
                "fisher_weight": fisher_weight,
                "fisher_samples": fisher_samples,
                "domain": domain,
            }
        )
        self.network = build_network(
            {"_target_": target, **network}, theta_dim=theta_dim, x_dim=x_dim, trusted_targets=trusted_targets
        )
        if fisher_weight < 0 or fisher_samples < 1:
            raise InvalidHyperparameterError(
                f"fisher_weight must be >= 0 and fisher_samples >= 1, got {fisher_weight} and {fisher_samples}"
            )
        if fisher_weight and not getattr(self.network, "loss_is_nll", self.network.has_density):
            raise InvalidHyperparameterError(
                "fisher_weight needs a network trained by likelihood (flow, gmm), not a score or flow-matching one"
            )
        self.register_buffer("standardized", torch.tensor(False))  # z-scoring fitted (saved with the weights)
        # held-out simulation sets (pool, reference) for AmortizedPosterior.check; sized by the checkpoint
        self.register_buffer("check_pool", torch.empty(0))
        self.register_buffer("check_reference", torch.empty(0))
        self.domain = TrainingDomain.from_dict(domain)
        self.card = None  # its calibration card (priorfit.card), set when evaluated or loaded

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        for name in REFERENCE_BUFFERS:  # take the stored sizes; checkpoints from before the check have none
            stored = state_dict.setdefault(prefix + name, torch.empty(0))
            setattr(self, name, torch.empty_like(stored, device=self.standardized.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_fit_start(self) -> None:
        keep_freed_memory()  # a training step reuses its large blocks instead of faulting them in again
        has_domain = bool(self.hparams.get("domain"))
        if bool(self.standardized) and has_domain:
            return  # resumed or fine-tuned: keep the statistics the weights were trained with
        datamodule = getattr(self.trainer, "datamodule", None)
        if isinstance(datamodule, SimulationDataModule):
            theta, x = datamodule.theta, datamodule.x
        else:
            theta, x = simulate_budget(self.prior, 2000, 1, seed=0)
        if self.check_pool.numel() == 0:
            held_out = datamodule.held_out_x if isinstance(datamodule, SimulationDataModule) else None
            self.keep_reference_sets(held_out if held_out is not None else simulate_budget(self.prior, 1000, 1, 1)[1])
        if not has_domain:  # recorded in the checkpoint, so a loaded model checks its queries too
            self.domain = domain_of_simulations(theta, x)
            self.hparams["domain"] = self.domain.to_dict()
        if not bool(self.standardized):
            self.network.fit_standardization(theta.to(self.device), x.to(self.device))
            self.standardized.fill_(True)

    def keep_reference_sets(self, held_out: Tensor) -> None:
        """Keep held-out simulation sets (N, n, Dx) for ``AmortizedPosterior.check``: the first half (at most
        ``MAX_REFERENCE_SETS``) as its pool, the second as its reference sets; stored with the weights."""
        half = len(held_out) // 2
        self.check_pool = held_out[:half][:MAX_REFERENCE_SETS].to(self.standardized.device)
        self.check_reference = held_out[half:][:MAX_REFERENCE_SETS].to(self.standardized.device)

    def forward(self, x: Tensor) -> torch.distributions.Distribution:
        return self.network(x)

    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Per-sample loss: −log q(θ | x) for density networks, denoising score matching for the score network."""
        return self.network.training_loss(theta, x)

    def _unpack(self, batch: Batch | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return (batch.theta, batch.x) if isinstance(batch, Batch) else (batch[0], batch[1])

    def training_step(self, batch, batch_idx: int) -> Tensor:
        theta, x = self._unpack(batch)
        loss = self.loss(theta, x).mean()
        logs = logs_this_step(self)
        if logs:
            self.log("train/loss", loss, prog_bar=True, batch_size=len(theta))
        weight = self.hparams.get("fisher_weight", 0.0)
        if weight:
            penalty = fisher_penalty(self.network, x, num_samples=self.hparams.get("fisher_samples", 1)).mean()
            if logs:
                self.log("train/fisher_trace", penalty, batch_size=len(theta))
            loss = loss + weight * penalty
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        theta, x = self._unpack(batch)
        with torch.random.fork_rng(devices=[]):  # the score loss draws noise: the same draws every epoch
            torch.manual_seed(batch_idx)
            loss = self.loss(theta, x).mean()
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(theta))
        if getattr(self.network, "loss_is_nll", self.network.has_density):  # the loss is the NLL of θ
            self.log("val/nll", loss, sync_dist=True, batch_size=len(theta))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        patience = self.hparams.get("lr_plateau_patience")
        if patience is None:
            return optimizer
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=patience)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}


class SimulationShapes:
    """Stands in for a simulator prior when training on given simulations: tells the task θ's and x's sizes."""

    def __init__(self, theta_dim: int, x_dim: int) -> None:
        self.theta_dim, self.x_dim = theta_dim, x_dim

    def sample(self, batch_size: int, num_points: int, *, generator: torch.Generator | None = None) -> Batch:
        x = torch.zeros(batch_size, max(1, num_points), self.x_dim)
        return Batch(x=x, theta=torch.zeros(batch_size, self.theta_dim))

    def __repr__(self) -> str:
        return f"given simulations (theta_dim={self.theta_dim}, x_dim={self.x_dim})"


def simulate_budget(
    prior, num_simulations: int, num_points: int, seed: int, chunk: int = 1000
) -> tuple[Tensor, Tensor]:
    """(θ (N, Dθ), x (N, n, Dx)): a fixed simulation budget drawn in chunks from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    thetas, xs = [], []
    for start in range(0, num_simulations, chunk):
        batch = prior.sample(min(chunk, num_simulations - start), num_points, generator=generator)
        thetas.append(batch.theta)
        xs.append(batch.x)
    return torch.cat(thetas), torch.cat(xs)


class SimulationDataModule(pl.LightningDataModule):
    """A fixed budget of simulations (as in sbi), split into training and validation sets.

    Args:
        prior: simulator prior (``sample`` returning θ and x); ignored when ``simulations`` is given.
        num_simulations: parameter draws to simulate.
        num_points: iid observations per θ when the prior does not fix it.
        simulations: precomputed ``(theta (N, Dθ), x (N, n, Dx))`` to train on instead.
        validation_fraction: held out for validation / early stopping.
    """

    def __init__(
        self,
        prior: Any = None,
        *,
        num_simulations: int = 10_000,
        num_points: int = 1,
        simulations: tuple[Tensor, Tensor] | None = None,
        batch_size: int = 200,
        validation_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.check_settings(
            num_simulations=num_simulations if simulations is None else 2,
            num_points=num_points,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
        )
        if simulations is None:
            if prior is None:
                raise InvalidHyperparameterError("SimulationDataModule needs a prior or precomputed simulations")
            simulations = simulate_budget(prior, num_simulations, num_points, seed)
        theta, x = simulations
        if len(theta) != len(x) or len(theta) < 2:
            raise InvalidHyperparameterError(
                f"need matching θ and x with at least 2 rows, got {len(theta)} and {len(x)}"
            )
        self.theta, self.x = theta.float(), x.float()
        num_val = max(1, int(round(validation_fraction * len(theta))))
        self.train_set, self.val_set = random_split(
            TensorDataset(self.theta, self.x),
            [len(theta) - num_val, num_val],
            generator=torch.Generator().manual_seed(seed),
        )
        self.batch_size = batch_size
        self.seed = seed

    @property
    def held_out(self) -> tuple[Tensor, Tensor]:
        """θ and x of the validation split (never trained on)."""
        rows = torch.as_tensor(self.val_set.indices)
        return self.theta[rows], self.x[rows]

    @property
    def held_out_x(self) -> Tensor:
        """x of the validation split (never trained on): where a posterior's reference sets come from."""
        return self.x[torch.as_tensor(self.val_set.indices)]

    @staticmethod
    def check_settings(
        *,
        num_simulations: int = 10_000,
        num_points: int = 1,
        batch_size: int = 200,
        validation_fraction: float = 0.1,
        **_: Any,
    ) -> None:
        """Named errors for impossible settings (``priorfit-train`` calls it before anything is simulated)."""
        check_int(num_simulations, "data.num_simulations", minimum=2)
        check_int(num_points, "data.num_points", minimum=1)
        check_int(batch_size, "data.batch_size", minimum=1)
        check_float(
            validation_fraction, "data.validation_fraction", minimum=0, maximum=1, open_minimum=True, open_maximum=True
        )

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) > self.batch_size,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 1000))
