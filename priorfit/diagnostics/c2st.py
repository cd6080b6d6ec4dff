"""Classifier two-sample test: how well can a classifier tell approximate from reference samples?

Accuracy 0.5 means indistinguishable, 1.0 fully separable. The classifier and cross-validation are
scikit-learn's, set up as sbi's ``c2st`` (z-scored inputs, an MLP with two hidden layers of 10·D units,
5-fold accuracy), so numbers are comparable with the sbi benchmark literature. The score is the *balanced*
accuracy (the mean of the two per-class accuracies): for sets of equal size it is the accuracy sbi reports, and for
sets of different sizes chance stays at 0.5 instead of the larger set's share (plain accuracy would call 5 draws
against 2,000 of the same distribution "separable").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from priorfit._validation import check_int
from priorfit.diagnostics._inputs import as_tensor
from priorfit.errors import PriorfitValidationError

__all__ = ["C2STResult", "c2st"]


@dataclass
class C2STResult:
    """Cross-validated balanced accuracy of telling the two sample sets apart (0.5 is ideal, whatever the sizes)."""

    accuracy: float
    fold_accuracies: list[float]
    classifier: str
    sizes: tuple[int, int] = (0, 0)  # (samples, reference)

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "fold_accuracies": self.fold_accuracies,
            "classifier": self.classifier,
            "scoring": "balanced_accuracy",
            "sizes": list(self.sizes),
        }

    def plot(self, ax=None):
        """Fold accuracies against the 0.5 chance line. Returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(3, 3))[1]
        ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
        ax.plot(range(1, len(self.fold_accuracies) + 1), self.fold_accuracies, "o", label="folds")
        ax.set(ylim=(0.4, 1.0), xlabel="fold", ylabel="accuracy", title=f"C2ST {self.accuracy:.3f}")
        ax.legend(fontsize="small")
        return ax


def c2st(
    samples: Tensor,
    reference: Tensor,
    *,
    classifier: Literal["mlp", "rf"] = "mlp",
    folds: int = 5,
    seed: int = 0,
) -> C2STResult:
    """C2ST (balanced) accuracy between ``samples`` (N, D) and ``reference`` (M, D) samples of the same D."""
    samples, reference = as_tensor(samples, "samples"), as_tensor(reference, "reference")
    check_int(folds, "folds", minimum=2)
    if samples.dim() == 1:
        samples, reference = samples.unsqueeze(-1), reference.unsqueeze(-1)
    if samples.dim() != 2 or reference.dim() != 2 or samples.shape[1] != reference.shape[1]:
        raise PriorfitValidationError(
            f"c2st needs two sample sets of shape (N, D) and (M, D), got {tuple(samples.shape)} and "
            f"{tuple(reference.shape)}"
        )
    if min(len(samples), len(reference)) < folds:
        raise PriorfitValidationError(f"c2st needs at least {folds} samples in each set (one per fold)")
    dim = samples.shape[1]
    if classifier == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(10 * dim, 10 * dim), max_iter=1000, solver="adam", random_state=seed)
    elif classifier == "rf":
        model = RandomForestClassifier(random_state=seed)
    else:
        raise PriorfitValidationError(f"classifier must be 'mlp' or 'rf', got {classifier!r}")
    features = torch.cat([samples, reference]).double().numpy()
    labels = np.concatenate([np.zeros(len(samples)), np.ones(len(reference))])
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pipeline = make_pipeline(StandardScaler(), model)
    scores = cross_val_score(pipeline, features, labels, cv=splits, scoring="balanced_accuracy")
    return C2STResult(float(scores.mean()), [float(s) for s in scores], classifier, (len(samples), len(reference)))
