"""``priorfit.load``: the one loading verb, returning the object a user works with for each kind of checkpoint."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import torch

from priorfit._validation import check_device
from priorfit.errors import CheckpointError, PriorfitValidationError

__all__ = ["load", "TABULAR_PRIORS", "LEARNING_CURVE_PRIORS"]

# PFNs trained on these priors answer tables (ensembled, preprocessed) or learning curves; any other PFN is returned
# as its trained task, whose predictive(x_ctx, y_ctx, x_query) takes raw inputs on the prior's scale
TABULAR_PRIORS = frozenset({"priorfit.priors.SCMPrior", "priorfit.priors.PriorMixture"})
LEARNING_CURVE_PRIORS = frozenset({"priorfit.priors.LearningCurvePrior"})


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    prior: torch.distributions.Distribution | None = None,
    trusted_targets: Collection[str] = (),
) -> Any:
    """Load a checkpoint (a registered name such as ``"pfn-gp-1d"`` or a path) as the object you query.

    ====================================================  ==============================================
    checkpoint                                            returned
    ====================================================  ==============================================
    a posterior (``AmortizedPosterior.save``, ``sbi_*``)  a trained :class:`~priorfit.AmortizedPosterior`
    a Distribution Transformer (``dt-*``)                 the :class:`~priorfit.DistributionTransformer`
    a tabular PFN (SCM or mixture prior, ``tabular-*``)   an unfitted ``PFNClassifier`` / ``PFNRegressor``
    a learning-curve PFN (``lc-pfn-*``)                   an unfitted ``LearningCurveExtrapolator``
    any other PFN (``pfn-gp-1d``, your own prior)          the trained task: ``.predictive(...)``, ``.prior``
    ====================================================  ==============================================

    ``prior``: for a posterior, the θ prior whose support its samples are kept in. ``trusted_targets``: your own
    prior classes named in the file (a checkpoint is data; see the README's "What loading a checkpoint may do").
    The file is read and checked now, so a broken checkpoint fails here, not at the first query.

    Example:
        >>> import priorfit
        >>> type(priorfit.load("tabular-clf-small")).__name__
        'PFNClassifier'
    """
    from priorfit.checkpoint import cached_pfn, read_config
    from priorfit.hub import resolve_checkpoint
    from priorfit.registry import canonical_name

    check_device(device, "device")
    path = resolve_checkpoint(name_or_path)
    task_name, hparams = read_config(path)
    if prior is not None and task_name != "PosteriorTask":
        raise PriorfitValidationError(f"prior= is for posterior checkpoints; {name_or_path} holds a {task_name}")
    prior_config = hparams.get("prior")
    prior_name = canonical_name(prior_config.get("_target_")) if isinstance(prior_config, dict) else None
    if task_name == "PFNTask" and (prior_name in TABULAR_PRIORS | LEARNING_CURVE_PRIORS):
        from priorfit.estimators import PFNClassifier, PFNRegressor
        from priorfit.learning_curves import LearningCurveExtrapolator

        cached_pfn(path, str(device))  # reads and checks the file now (the estimators share this cached model)
        if prior_name in LEARNING_CURVE_PRIORS:
            return LearningCurveExtrapolator(checkpoint=name_or_path, device=device)
        if hparams.get("objective") == "classification":
            return PFNClassifier(checkpoint=name_or_path, device=device)
        return PFNRegressor(checkpoint=name_or_path, device=device)

    from priorfit.checkpoint import load_task

    task = load_task(path, map_location=device, trusted_targets=trusted_targets)
    if task_name == "PosteriorTask":
        from priorfit.posterior import AmortizedPosterior

        return AmortizedPosterior.from_task(task, prior=prior)
    if task_name == "DTTask":
        task.network.card = task.card
        return task.network.eval()
    if task_name == "PFNTask":
        return task
    raise CheckpointError(f"{path}: no loader for a {task_name}")  # unreachable: load_task knows the same tasks
