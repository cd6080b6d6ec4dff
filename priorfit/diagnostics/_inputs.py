"""Shape and value checks shared by the diagnostics: named errors instead of broadcasting surprises."""

from __future__ import annotations

import torch
from torch import Tensor

from priorfit.errors import PriorfitValidationError


def as_tensor(values, name: str, *, check_finite: bool = True) -> Tensor:
    """Numbers as a float32 / float64 tensor (integers become float64); other input is a named error."""
    try:
        tensor = torch.as_tensor(values) if not isinstance(values, (str, bytes, dict)) else None
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or tensor.is_complex() or tensor.dtype == torch.bool:
        raise PriorfitValidationError(f"{name} must be a numeric tensor or array, got {type(values).__name__}")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        raise PriorfitValidationError(
            f"{name} is {tensor.dtype}: too coarse for coverage counts (ties); pass float32 or float64, e.g. .float()"
        )
    if not tensor.is_floating_point():
        tensor = tensor.double()
    if check_finite and not torch.isfinite(tensor).all():
        raise PriorfitValidationError(f"{name} contains NaN or infinity")
    return tensor


def check_samples_and_truth(samples, theta_true, *, check_finite: bool = True) -> tuple[Tensor, Tensor]:
    """samples (S, B, D) and θ (B, D) as tensors of one dtype; a (S, B) / (B,) pair is one dimension.

    ``check_finite=False`` skips the pass over the samples for callers that check a reduction of them instead.
    """
    samples = as_tensor(samples, "samples", check_finite=check_finite)
    theta_true = as_tensor(theta_true, "theta_true")
    if samples.dim() == 2 and theta_true.dim() == 1:
        samples, theta_true = samples.unsqueeze(-1), theta_true.unsqueeze(-1)
    if samples.dim() != 3 or theta_true.dim() != 2:
        raise PriorfitValidationError(
            "need posterior samples of shape (num_samples, B, D) and true parameters of shape (B, D), got "
            f"{tuple(samples.shape)} and {tuple(theta_true.shape)}"
        )
    if samples.shape[1:] != theta_true.shape:
        raise PriorfitValidationError(
            f"samples (num_samples, B, D) = {tuple(samples.shape)} do not match theta_true (B, D) = "
            f"{tuple(theta_true.shape)}: one set of samples per true parameter"
        )
    if samples.shape[0] < 2 or samples.shape[1] < 2:
        raise PriorfitValidationError(
            f"need at least 2 posterior samples and 2 true parameters, got {samples.shape[0]} and {samples.shape[1]}"
        )
    dtype = torch.promote_types(samples.dtype, theta_true.dtype)
    return samples.to(dtype), theta_true.to(dtype)
