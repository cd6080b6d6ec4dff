"""``LearningCurveExtrapolator``: a pretrained LC-PFN that predicts where partial learning curves end up.

``fit(t, y)`` stores the epochs seen so far; every prediction is one forward pass of the transformer
with those epochs as context and the future epochs as queries, read off its bar-distribution head
(per-epoch marginal predictive of the noisy curve value).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from priorfit._validation import check_device
from priorfit.checkpoint import PFNModel, cached_pfn
from priorfit.domain import TrainingDomain
from priorfit.errors import PriorfitValidationError

__all__ = ["LearningCurveExtrapolator"]

DEFAULT_CHECKPOINT = "lc-pfn-small"
# LC-PFN's prior draws performance curves that rise on average. Fitted to a straight line over the observed epochs,
# fewer than 0.1 % of its curves fall by more than 0.25 over 10 or more epochs (measured on 4,000 draws of
# LearningCurvePrior); a steeper fall is a curve of another kind, most often a loss
CURVE_DOMAIN = TrainingDomain({"curve_change": [-0.25, 1.0]})
DECREASING_ADVICE = (
    "The curve falls: LC-PFN was trained on performance curves that rise (accuracy-like, higher is better). For a "
    "loss, pass a performance instead (e.g. 1 - normalised loss)."
)


class LearningCurveExtrapolator:
    """Bayesian learning-curve extrapolation with a PFN trained on LC-PFN's parametric curve prior.

    Args:
        checkpoint: name or path of a learning-curve PFN (default: the bundled ``lc-pfn-small``).
        device: torch device for the forward passes.

    Epochs are numbers in [1, T] where T (``num_epochs_``, 100 for ``lc-pfn-small``) is the curve
    length the checkpoint was trained for; values are performances in [0, 1] (e.g. accuracy),
    higher is better. ``fit`` accepts one curve (t and y 1-D) or a batch of curves of the same
    length (y 2-D, t 1-D shared or 2-D); predictions then carry a leading batch axis.

    Example:
        >>> lc = LearningCurveExtrapolator().fit([1, 2, 3, 4, 5], [0.40, 0.52, 0.58, 0.62, 0.64])
        >>> lc.predict_quantiles([50, 100], [0.05, 0.5, 0.95]).shape
        (2, 3)
    """

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, device: str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.device = device

    @property
    def card(self):
        """The checkpoint's :class:`~priorfit.card.CalibrationCard` (calibration on held-out prior curves, training
        domain and budget), or None for a file without one."""
        return _load(DEFAULT_CHECKPOINT if self.checkpoint is None else self.checkpoint, self.device).card

    # ----------------------------------------------------------------------------------- fitting
    def fit(self, t, y) -> LearningCurveExtrapolator:
        """Condition on the observed epochs ``t`` and values ``y`` of one curve or a batch of curves."""
        check_device(self.device)
        self.model_ = _load(DEFAULT_CHECKPOINT if self.checkpoint is None else self.checkpoint, self.device)
        prior = self.model_.hyper_parameters.get("prior") or {}
        if "num_epochs" not in prior:
            raise PriorfitValidationError(
                f"checkpoint {self.checkpoint or DEFAULT_CHECKPOINT!r} was not trained on learning curves "
                "(its stored prior has no num_epochs)"
            )
        self.num_epochs_ = int(prior["num_epochs"])
        y_array = _as_float_array(y, "y")
        self.single_curve_ = y_array.ndim == 1
        y_array = np.atleast_2d(y_array)
        if y_array.ndim != 2 or y_array.shape[1] == 0:
            raise PriorfitValidationError(f"y must be 1-D (one curve) or 2-D (curves, epochs), got shape {np.shape(y)}")
        t_array = self._check_epochs(t, "t", y_array.shape)
        if not ((y_array >= 0) & (y_array <= 1)).all():
            bad = y_array[(y_array < 0) | (y_array > 1)][0]
            raise PriorfitValidationError(
                f"y must lie in [0, 1] (a performance such as accuracy; rescale it first), found {bad:g}"
            )
        if not (np.diff(t_array, axis=-1) > 0).all():
            raise PriorfitValidationError("t must be strictly increasing along each curve")
        CURVE_DOMAIN.check("curve_change", _fitted_change(t_array, y_array), advice=DECREASING_ADVICE)
        self.t_ = torch.as_tensor(t_array, dtype=torch.float32, device=self.device)
        self.y_ = torch.as_tensor(y_array, dtype=torch.float32, device=self.device)
        # the observed epochs through every layer once: each prediction then runs only the future epochs
        self.context_cache_ = self.model_.network.encode_context((self.t_ / self.num_epochs_).unsqueeze(-1), self.y_)
        return self

    def _check_epochs(self, t, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Epochs as a (B, n) array: finite, inside [1, num_epochs_], matching ``shape`` when given."""
        array = _as_float_array(t, name)
        if array.ndim == 0:
            array = array.reshape(1)
        if shape is not None:
            if array.ndim == 1 and array.shape[0] == shape[1]:
                array = np.broadcast_to(array, shape)
            if array.shape != shape:
                raise PriorfitValidationError(
                    f"{name} has shape {array.shape} but y has {shape[1]} values per curve ({shape[0]} curves)"
                )
        elif array.ndim != 1:
            raise PriorfitValidationError(f"{name} must be 1-D (the epochs to predict), got shape {array.shape}")
        if (array < 1).any() or (array > self.num_epochs_).any():
            raise PriorfitValidationError(
                f"{name} must lie in [1, {self.num_epochs_}] (the curve length this checkpoint was trained for), "
                f"got values from {array.min():g} to {array.max():g}"
            )
        return np.array(array)  # a writable copy (broadcast views are read-only)

    # -------------------------------------------------------------------------------- predicting
    @torch.no_grad()
    def _logits(self, t_future) -> Tensor:
        """(B, m, buckets) logits of the predictive at the future epochs."""
        if not hasattr(self, "model_"):
            from priorfit.errors import NotFittedError

            raise NotFittedError("this LearningCurveExtrapolator is not fitted yet; call fit(t, y) first")
        future = torch.as_tensor(self._check_epochs(t_future, "t_future"), dtype=torch.float32, device=self.device)
        x_query = (future / self.num_epochs_).expand(self.y_.shape[0], -1).unsqueeze(-1)
        return self.model_.network.forward_cached(self.context_cache_, x_query)

    def _output(self, values: Tensor) -> np.ndarray:
        array = values.detach().cpu().double().numpy()
        return array[0] if self.single_curve_ else array

    def predict_quantiles(
        self, t_future, quantiles: Sequence[float] = (0.05, 0.5, 0.95), *, q: Sequence[float] | None = None
    ) -> np.ndarray:
        """Quantiles of y(t) at each future epoch: shape (m, len(quantiles)), or (B, m, len(quantiles)) for a batch.

        ``quantiles=`` as in ``PFNRegressor``; the old keyword ``q=`` still works for one release, with a warning.
        """
        if q is not None:
            warnings.warn("predict_quantiles(q=...) is renamed quantiles=...", DeprecationWarning, stacklevel=2)
            quantiles = q
        levels = _as_float_array(quantiles, "quantiles").reshape(-1)
        if not ((levels > 0) & (levels < 1)).all():
            raise PriorfitValidationError(f"quantile levels must lie strictly between 0 and 1, got {levels.tolist()}")
        logits = self._logits(t_future)
        head = self.model_.head
        return self._output(torch.stack([head.quantile(logits, float(level)) for level in levels], dim=-1))

    def predict_mean(self, t_future) -> np.ndarray:
        """Predictive mean of y(t) at each future epoch: shape (m,) or (B, m)."""
        logits = self._logits(t_future)  # first: it raises the "not fitted" error
        return self._output(self.model_.head.mean(logits))

    def predict_log_density(self, t_future, y_future) -> np.ndarray:
        """Log predictive density of the values ``y_future`` at the epochs ``t_future``, per epoch: (m,) or (B, m)."""
        logits = self._logits(t_future)
        values = np.atleast_2d(_as_float_array(y_future, "y_future"))
        if values.shape[-1] != logits.shape[1] or values.shape[0] not in (1, logits.shape[0]):
            raise PriorfitValidationError(
                f"y_future has shape {np.shape(y_future)}; expected ({logits.shape[1]},) "
                f"or ({logits.shape[0]}, {logits.shape[1]}) for t_future of length {logits.shape[1]}"
            )
        target = torch.as_tensor(values, dtype=logits.dtype, device=logits.device).expand(logits.shape[:-1])
        return self._output(self.model_.head.log_density(logits, target))

    def prob_exceeds(self, threshold: float, t_future=None) -> np.ndarray | float:
        """P(y(t) > threshold) at the future epochs (default: the last epoch T), for early-stopping decisions.

        A scalar ``t_future`` gives one probability per curve (a float for a single curve).
        """
        if isinstance(threshold, (bool, str, bytes)) or np.ndim(threshold) != 0 or not _finite_number(threshold):
            raise PriorfitValidationError(f"threshold must be one finite number, got {threshold!r:.60}")
        epochs = self.num_epochs_ if t_future is None else t_future
        logits = self._logits(epochs)
        threshold_tensor = torch.full(logits.shape[:-1], float(threshold), dtype=logits.dtype, device=logits.device)
        probability = 1.0 - self.model_.head.cdf(logits, threshold_tensor)
        if np.ndim(epochs) == 0:
            probability = probability[:, 0]
            return float(probability[0]) if self.single_curve_ else probability.double().cpu().numpy()
        return self._output(probability)


def _finite_number(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def _load(checkpoint: str | os.PathLike, device: str) -> PFNModel:
    model = cached_pfn(checkpoint, device)  # the estimators' cache too: switching between them reloads nothing
    if model.objective != "regression":
        raise PriorfitValidationError(f"checkpoint {checkpoint!r} is a classification PFN, not a learning-curve PFN")
    return model


def _as_float_array(values, name: str) -> np.ndarray:
    try:
        if np.asarray(values).dtype.kind in "USOb":  # text ("10"), objects and booleans are not epochs or scores
            raise TypeError
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PriorfitValidationError(f"{name} must be numeric, got {type(values).__name__}") from None
    if not np.isfinite(array).all():
        raise PriorfitValidationError(f"{name} contains NaN or infinite values")
    return array


def _fitted_change(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per curve, the change from the first to the last observed epoch of a least-squares line (0 for one epoch)."""
    centred = t - t.mean(-1, keepdims=True)
    spread = (centred**2).sum(-1)
    slope = np.divide((centred * y).sum(-1), spread, out=np.zeros_like(spread), where=spread > 0)
    return slope * (t[..., -1] - t[..., 0])
