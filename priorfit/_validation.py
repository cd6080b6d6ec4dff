"""Argument checks shared by every public entry point: each failure is a named error saying what is allowed."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from priorfit.errors import InvalidHyperparameterError, PriorfitValidationError

__all__ = ["check_int", "check_float", "check_count_range", "check_device", "as_float_tensor", "check_observation_sets"]


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidHyperparameterError(f"{name} must be an integer{_range(minimum, maximum)}, got {value!r:.60}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidHyperparameterError(f"{name} must be an integer{_range(minimum, maximum)}, got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
    open_maximum: bool = False,
) -> float:
    """``value`` as a finite float within the given (open or closed) bounds."""
    low = "(" if open_minimum else "["
    high = ")" if open_maximum else "]"
    lower = "-inf" if minimum is None else minimum
    upper = "inf" if maximum is None else maximum
    allowed = f"a finite number in {low}{lower}, {upper}{high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidHyperparameterError(f"{name} must be {allowed}, got {value!r:.60}")
    value = float(value)
    too_low = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    too_high = maximum is not None and (value >= maximum if open_maximum else value > maximum)
    if too_low or too_high:
        raise InvalidHyperparameterError(f"{name} must be {allowed}, got {value}")
    return value


def check_count_range(value: Any, name: str) -> None:
    """A positive integer, or a (low, high) pair of them with low <= high (e.g. ``num_iid``)."""
    pair = isinstance(value, (tuple, list)) and len(value) == 2
    values = list(value) if pair else [value]
    ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values)
    if not ok or (pair and values[0] > values[1]):
        raise InvalidHyperparameterError(
            f"{name} must be a positive integer or a (low, high) pair with 1 <= low <= high, got {value!r}"
        )


def check_device(device: Any, name: str = "device") -> torch.device:
    """A torch device that exists here: ``"cpu"``, ``"cuda"``/``"cuda:N"`` with a GPU, ``"mps"`` on Apple."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidHyperparameterError(
            f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r:.60}"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidHyperparameterError(
                f"{name}={device!r}: CUDA is not available here (this torch build or machine has no GPU); use 'cpu'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidHyperparameterError(
                f"{name}={device!r}: there are only {torch.cuda.device_count()} CUDA devices here"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidHyperparameterError(f"{name}={device!r}: MPS is not available here; use 'cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise InvalidHyperparameterError(f"{name}={device!r}: priorfit runs on 'cpu', 'cuda' or 'mps'")
    return resolved


def as_float_tensor(values: Any, name: str, *, allow_nan: bool = False, allow_inf: bool = False) -> torch.Tensor:
    """Numbers (a tensor, an array, nested lists) as a float32 tensor; anything else is a named error."""
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        if values is None or isinstance(values, (str, bytes, dict)):
            raise PriorfitValidationError(f"{name} must be numbers (a tensor or an array), got {type(values).__name__}")
        try:
            tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            raise PriorfitValidationError(
                f"{name} must be numeric (a tensor or an array of numbers), got {type(values).__name__}"
            ) from None
    if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in _INTEGER_TYPES):
        raise PriorfitValidationError(f"{name} must be real numbers, got a {tensor.dtype} tensor")
    tensor = tensor.to(torch.float32)
    if not allow_nan and torch.isnan(tensor).any():
        raise PriorfitValidationError(f"{name} contains NaN")
    if not allow_inf and torch.isinf(tensor).any():
        raise PriorfitValidationError(f"{name} contains infinite values")
    return tensor


def check_observation_sets(x: Any, x_dim: int | None = None, name: str = "x") -> torch.Tensor:
    """Observation sets as a float32 (B, n, Dx) tensor: a (n, Dx) set gets a batch axis; named errors for
    non-numbers, the wrong width (when ``x_dim`` is given), n = 0, NaN and infinity. The one check of observation
    sets, for the posterior networks, ``AmortizedPosterior`` and the attacks alike."""
    x = as_float_tensor(x, name)
    if x.dim() == 2:  # one set of n observations
        x = x.unsqueeze(0)
    width = "Dx" if x_dim is None else x_dim
    if x.dim() != 3 or (x_dim is not None and x.shape[-1] != x_dim):
        raise PriorfitValidationError(
            f"{name} must have shape (n, {width}) or (B, n, {width}) (n iid observations of {width} features), got "
            f"{tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise PriorfitValidationError(f"{name} has no observations (n = 0)")
    return x


_INTEGER_TYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    return f" <= {maximum}" if maximum is not None else ""
