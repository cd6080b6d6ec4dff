"""DTTask: trains a Distribution Transformer by −log q(θ | prior, x) with θ drawn from random GMM priors."""

from __future__ import annotations

from collections.abc import Collection

import pytorch_lightning as pl
import torch
from torch import Tensor

from priorfit._allocator import keep_freed_memory
from priorfit.domain import TrainingDomain
from priorfit.networks.distribution_transformer import DistributionTransformer
from priorfit.priors.base import Batch
from priorfit.registry import build
from priorfit.tasks.common import (
    adamw_warmup_cosine,
    build_network,
    check_optimizer_settings,
    logs_this_step,
    plain_config,
)

__all__ = ["DTTask"]


class DTTask(pl.LightningModule):
    """The Distribution Transformer objective on a ``RandomGMMPrior``.

    Each batch from ``PriorDataModule`` carries a random GMM prior per data set, θ drawn from it, and
    observations; the first ``num_context`` observations are the data set (so the number of observations
    varies from batch to batch within [min_context, max_context]).

    Args:
        prior: config of a ``RandomGMMPrior`` (``_target_`` dict), stored in checkpoints.
        network: ``DistributionTransformer`` keyword arguments (θ and feature sizes and the number of
            prior components are filled in from the prior).
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with linear warm-up and cosine decay.
        exact_metrics: log the NLL of θ under the exact posterior when the likelihood has one.
        domain: the training domain (``priorfit.domain``) beyond what the prior says: the observation-count range,
            recorded from the data module at the start of training and stored in checkpoints.
        trusted_targets: ``_target_`` names besides priorfit's own families the prior config may name; not stored.
    """

    def __init__(
        self,
        *,
        prior: dict,
        network: dict,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        min_lr_ratio: float = 0.0,
        exact_metrics: bool = True,
        domain: dict | None = None,
        trusted_targets: Collection[str] = (),
    ) -> None:
        super().__init__()
        prior, network = plain_config(prior), plain_config(network)
        check_optimizer_settings(lr, weight_decay, warmup_steps, min_lr_ratio)
        self.save_hyperparameters(
            {
                "prior": prior,
                "network": network,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_steps": warmup_steps,
                "min_lr_ratio": min_lr_ratio,
                "exact_metrics": exact_metrics,
                "domain": domain,
            }
        )
        self.prior = build(prior, trusted_targets=trusted_targets)
        likelihood = self.prior.likelihood
        network_config = {**network, "_target_": "priorfit.networks.DistributionTransformer"}
        sizes = dict(theta_dim=self.prior.dim, x_dim=likelihood.feature_dim, max_components=self.prior.max_components)
        self.network: DistributionTransformer = build_network(
            network_config, trusted_targets=trusted_targets, **sizes
        ).bind_likelihood(likelihood)
        scale_range, mean_scale = getattr(self.prior, "scale_range", None), getattr(self.prior, "mean_scale", None)
        ranges = {"prior_sd": list(scale_range)} if scale_range else {}
        if mean_scale:  # component means were N(0, mean_scale²) per coordinate: 4 sd hold all but 0.006 % of them
            ranges["prior_mean"] = [-4 * mean_scale, 4 * mean_scale]
        self.network.domain = TrainingDomain.from_dict({**ranges, **(domain or {})})
        self.card = None  # its calibration card (priorfit.card), set when evaluated or loaded

    def on_fit_start(self) -> None:
        keep_freed_memory()  # a training step reuses its large blocks instead of faulting them in again
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.hparams.get("domain") and hasattr(datamodule, "max_context"):  # stored in the checkpoint
            self.hparams["domain"] = {"num_observations": [datamodule.min_context, datamodule.max_context]}
            self.network.domain.ranges.update(self.hparams["domain"])

    def forward(self, batch: Batch) -> torch.distributions.Distribution:
        meta = batch.meta
        n = int(meta.get("num_context", batch.x.shape[1]))
        return self.network(meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], batch.x[:, :n])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = -self(batch).log_prob(batch.theta).mean()
        if logs_this_step(self):
            self.log("train/nll", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        nll = -self(batch).log_prob(batch.theta).mean()
        size = batch.batch_size
        self.log("val/nll", nll, prog_bar=True, sync_dist=True, batch_size=size)
        exact_posterior = getattr(self.prior.likelihood, "exact_posterior", None)
        if self.hparams.exact_metrics and exact_posterior is not None:
            exact = -self.exact_posterior(batch).log_prob(batch.theta.double()).mean().float()
            self.log("val/nll_exact", exact, sync_dist=True, batch_size=size)
            self.log("val/nll_gap", nll - exact, prog_bar=True, sync_dist=True, batch_size=size)

    def exact_posterior(self, batch: Batch):
        """The exact posterior GMM of each data set in the batch (linear-Gaussian likelihoods only)."""
        from priorfit.gmm import GMM

        meta = batch.meta
        n = int(meta.get("num_context", batch.x.shape[1]))
        prior = GMM.from_logits(
            meta["prior_logits"].double(), meta["prior_means"].double(), meta["prior_scale_tril"].double()
        )
        return self.prior.likelihood.exact_posterior(prior, batch.x[:, :n].double())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["priorfit_task"] = "DTTask"

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        return adamw_warmup_cosine(
            self, lr=hp.lr, weight_decay=hp.weight_decay, warmup_steps=hp.warmup_steps, min_lr_ratio=hp.min_lr_ratio
        )
