"""PFNTask: trains a PFNTransformer on a prior by the NLL of held-out labels."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from priorfit._allocator import keep_freed_memory
from priorfit._validation import check_float
from priorfit.domain import TrainingDomain
from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError
from priorfit.networks.bar_distribution import BarDistribution, borders_from_samples
from priorfit.networks.heads import ClassificationHead
from priorfit.networks.modes import evaluating
from priorfit.networks.transformer import ContextCache, PFNTransformer
from priorfit.priors.base import Batch
from priorfit.registry import build, check_config, check_size
from priorfit.tasks.common import (
    adamw_warmup_cosine,
    build_network,
    check_optimizer_settings,
    logs_this_step,
    plain_config,
    probe,
)

__all__ = ["PFNTask", "ConditionedPredictive"]


class PFNTask(pl.LightningModule):
    """The PFN objective: a posterior predictive for query labels given a context set.

    Built from the Hydra configs of its prior and network (``_target_`` dicts), which are
    stored in every checkpoint so a checkpoint alone rebuilds model and prior.

    Args:
        prior: config of the prior (``{"_target_": "priorfit.priors.GPPrior", ...}``).
        network: config of the network (``PFNTransformer`` keyword arguments and ``_target_``).
        objective: "regression" (bar-distribution head) or "classification" (logits).
        num_buckets: buckets of the bar distribution (regression).
        num_classes: classes (classification).
        border_datasets, border_points: prior draws used to place the bucket borders.
        lr, weight_decay, betas: AdamW settings.
        warmup_steps, min_lr_ratio: linear warm-up, then cosine decay to ``lr * min_lr_ratio``
            at the trainer's last step.
        seed: seeds the border draws.
        domain: the training domain beyond what the head says (``priorfit.domain``): the context-size range,
            recorded from the data module at the start of training and stored in checkpoints.
        borders: known bucket borders (a checkpoint's), which skips drawing them from the prior; not a
            hyperparameter, since the checkpoint's weights restore them anyway.
        trusted_targets: ``_target_`` names besides priorfit's own families that the configs may name (the
            command line trusts the user's own config; see ``priorfit.registry``); not stored.
    """

    def __init__(
        self,
        *,
        prior: dict,
        network: dict,
        objective: Literal["regression", "classification"] = "regression",
        num_buckets: int = 1000,
        num_classes: int = 2,
        border_datasets: int = 2000,
        border_points: int = 50,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.0,
        seed: int = 0,
        domain: dict | None = None,
        borders: Tensor | None = None,
        trusted_targets: Collection[str] = (),
    ) -> None:
        super().__init__()
        prior, network = plain_config(prior), plain_config(network)
        check_optimizer_settings(lr, weight_decay, warmup_steps, min_lr_ratio)
        # the prior is built (and checked) before the borders are drawn from it; the network only after them
        check_config(network, trusted_targets=trusted_targets, where="network")
        if objective not in ("regression", "classification"):
            raise InvalidHyperparameterError(f"objective must be 'regression' or 'classification', got {objective!r}")
        for key, value in dict(
            num_buckets=num_buckets,
            num_classes=num_classes,
            border_datasets=border_datasets,
            border_points=border_points,
        ).items():
            check_size(key, value)
        if len(betas) != 2 or not all(0 <= check_float(b, "betas") < 1 for b in betas):
            raise InvalidHyperparameterError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.prior = build(prior, trusted_targets=trusted_targets)
        network = _sized_to(network, self.prior)
        self.save_hyperparameters(
            {
                "prior": prior,
                "network": network,
                "objective": objective,
                "num_buckets": num_buckets,
                "num_classes": num_classes,
                "border_datasets": border_datasets,
                "border_points": border_points,
                "lr": lr,
                "weight_decay": weight_decay,
                "betas": list(betas),
                "warmup_steps": warmup_steps,
                "min_lr_ratio": min_lr_ratio,
                "seed": seed,
                "domain": domain,
            }
        )
        if objective == "regression":
            if borders is None:
                generator = torch.Generator().manual_seed(seed)
                draws = self.prior.sample(border_datasets, border_points, generator=generator)
                borders = borders_from_samples(draws.y, num_buckets)
            self.head = BarDistribution(borders)
            num_outputs = num_buckets
        elif objective == "classification":
            self.head = ClassificationHead(num_classes)
            num_outputs = num_classes
        else:
            raise ValueError(f"objective must be 'regression' or 'classification', got {objective!r}")
        self.network: PFNTransformer = build_network(network, num_outputs=num_outputs, trusted_targets=trusted_targets)
        borders = getattr(self.head, "borders", None)
        label_range = {"y_context": [float(borders[0]), float(borders[-1])]} if borders is not None else {}
        self.domain = TrainingDomain.from_dict({**label_range, **(domain or {})})
        self.card = None  # its calibration card (priorfit.card), set when evaluated or loaded

    def on_fit_start(self) -> None:
        keep_freed_memory()  # a training step reuses its large blocks instead of faulting them in again
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.hparams.get("domain") and hasattr(datamodule, "max_context"):  # stored in the checkpoint
            self.hparams["domain"] = {"num_context": [datamodule.min_context, datamodule.max_context]}
            self.domain.ranges.update(self.hparams["domain"])

    @property
    def has_exact_predictive(self) -> bool:
        return bool(getattr(self.prior, "has_exact_predictive", False))

    def forward(self, x_context: Tensor, y_context: Tensor, x_query: Tensor) -> Tensor:
        """Raw per-query outputs (bucket or class logits), shape (B, m, K)."""
        return self.network(x_context, y_context, x_query)

    @torch.no_grad()
    def predictive(self, x_context: Tensor, y_context: Tensor, x_query: Tensor) -> torch.distributions.Distribution:
        """The posterior predictive at x_query as a Distribution with batch shape (B, m). Context labels beyond the
        bar distribution's borders (the y range of the prior's draws) and, where the checkpoint records it, a
        context size outside the trained range are outside the training domain: a warning. To ask many query
        batches about one context, :meth:`condition` on it once."""
        self.network.check_inputs(x_context, y_context, x_query)  # errors that name x_query's mismatch too
        # through the context cache: the attention runs in row blocks, so memory stays bounded for any context
        return self.condition(x_context, y_context).predictive(x_query)

    @torch.no_grad()
    def predictive_many(
        self, data_sets: Sequence[tuple[Tensor, Tensor, Tensor]]
    ) -> list[torch.distributions.Distribution]:
        """Posterior predictives of many small data sets in one forward pass: ``data_sets`` holds (x_context (n_i, Dx),
        y_context (n_i,) or (n_i, Dy), x_query (m_i, Dx)) of any sizes n_i, m_i; the answer for set i has batch
        shape (m_i,) and equals ``predictive`` of that set alone (up to float rounding). Contexts and queries are
        zero-padded to the largest and the padding masked out of the attention (TabPFN's batched prediction)."""
        if not data_sets or any(not isinstance(item, (tuple, list)) or len(item) != 3 for item in data_sets):
            raise PriorfitValidationError("data_sets must be a non-empty list of (x_context, y_context, x_query)")
        sets = [(torch.as_tensor(xc), torch.as_tensor(yc), torch.as_tensor(xq)) for xc, yc, xq in data_sets]
        sets = [(xc, yc.unsqueeze(-1) if yc.dim() == 1 else yc, xq) for xc, yc, xq in sets]
        for index, (xc, yc, xq) in enumerate(sets):
            if xc.dim() != 2 or xq.dim() != 2 or yc.dim() != 2 or len(yc) != len(xc):
                raise PriorfitValidationError(
                    f"data set {index}: need x_context (n, Dx), y_context (n,) and x_query (m, Dx), got "
                    f"{tuple(xc.shape)}, {tuple(yc.shape)}, {tuple(xq.shape)}"
                )
            self._check_context(xc.unsqueeze(0), yc.unsqueeze(0))
        widths = {xc.shape[-1] for xc, _, _ in sets} | {xq.shape[-1] for _, _, xq in sets}
        if len(widths) != 1:
            raise PriorfitValidationError(f"every data set needs the same number of features, got {sorted(widths)}")
        columns = ([value.float() for value in part] for part in zip(*sets))  # contexts, targets, queries
        x_context, y_context, x_query = (pad_sequence(part, batch_first=True) for part in columns)
        mask = torch.arange(x_context.shape[1]) < torch.tensor([len(xc) for xc, _, _ in sets]).unsqueeze(1)
        device = next(self.network.parameters()).device
        with evaluating(self):
            logits = self.network(x_context.to(device), y_context.to(device), x_query.to(device), context_mask=mask)
        return [self.head(logits[index, : len(xq)]) for index, (_, _, xq) in enumerate(sets)]

    @torch.no_grad()
    def condition(self, x_context: Tensor, y_context: Tensor) -> ConditionedPredictive:
        """Encode a context once (every layer's keys and values); ``.predictive(x_query)`` of the result then
        answers any number of query batches about it without running the context again (same answers)."""
        self._check_context(x_context, y_context)
        with evaluating(self):
            return ConditionedPredictive(self, self.network.encode_context(x_context, y_context))

    def _check_context(self, x_context: Tensor, y_context: Tensor) -> None:
        if isinstance(y_context, Tensor):
            self.domain.check(
                "y_context", y_context, advice="Rescale y to the prior's range, or train on a wider prior."
            )
        if isinstance(x_context, Tensor) and x_context.dim() == 3:
            advice = "Give a context size the model was trained on (data.min_context..max_context), or retrain."
            self.domain.check("num_context", x_context.shape[1], advice=advice)

    def _split(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n = int(batch.meta["num_context"])
        y = batch.y
        return batch.x[:, :n], y[:, :n], batch.x[:, n:], y[:, n:, 0]

    def query_nll(self, batch: Batch) -> Tensor:
        """NLL of every query label, shape (B, m)."""
        x_context, y_context, x_query, y_query = self._split(batch)
        # priors that mix feature counts (SCMPrior, PriorMixture of different Dx) say which columns are real
        num_features = batch.meta.get("num_features")
        logits = self.network(x_context, y_context, x_query, num_features=num_features)
        return self.head.nll(logits, y_query)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.query_nll(batch).mean()
        if logs_this_step(self):
            self.log("train/nll", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        nll = self.query_nll(batch).mean()
        size = batch.batch_size
        self.log("val/nll", nll, prog_bar=True, sync_dist=True, batch_size=size)
        if self.has_exact_predictive:
            x_context, y_context, x_query, y_query = self._split(batch)
            exact = -self.prior.predictive_log_density(x_context, y_context, x_query, y_query).mean()
            self.log("val/nll_exact", exact.float(), sync_dist=True, batch_size=size)
            self.log("val/nll_gap", nll - exact.float(), prog_bar=True, sync_dist=True, batch_size=size)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        return adamw_warmup_cosine(
            self,
            lr=hp.lr,
            weight_decay=hp.weight_decay,
            warmup_steps=hp.warmup_steps,
            min_lr_ratio=hp.min_lr_ratio,
            betas=hp.betas,
        )


class ConditionedPredictive:
    """A PFN's predictive given one encoded context (:meth:`PFNTask.condition`): ``predictive(x_query)``."""

    def __init__(self, task: PFNTask, cache: ContextCache) -> None:
        self.task = task
        self.cache = cache

    @torch.no_grad()
    def predictive(self, x_query: Tensor) -> torch.distributions.Distribution:
        """The posterior predictive at x_query (B, m, Dx) as a Distribution with batch shape (B, m)."""
        with evaluating(self.task):
            return self.task.head(self.task.network.forward_cached(self.cache, x_query))


def _sized_to(network: dict, prior) -> dict:
    """The network config with ``max_features`` the width of the prior's datasets (probed) unless it names one;
    a width narrower than the prior's datasets is refused here rather than at the first batch."""
    width, stated = probe(prior).x.shape[-1], network.get("max_features")
    if stated is None:
        return {**network, "max_features": width}
    if isinstance(stated, int) and stated < width:
        raise InvalidHyperparameterError(
            f"network.max_features = {stated} is narrower than the prior's datasets ({width} features); leave it "
            "out to size the network from the prior"
        )
    return network
