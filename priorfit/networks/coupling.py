"""A coupling neural spline flow built from zuko's parts: one network pass per transform, to sample or to evaluate.

zuko's ``NSF(passes=2)`` is a coupling flow too, but it computes the spline parameters of every dimension on each
of its two passes. Here each transform's hyper-network sees the fixed half of θ (and the context) and outputs the
spline of the other half only, as sbi's ``nsf`` (nflows) does; a learned LU-factorised linear map between
transforms mixes the halves (identity at initialisation, positive diagonal so it stays invertible).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from zuko.distributions import DiagNormal
from zuko.flows import Flow
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import UnconditionalDistribution, UnconditionalTransform
from zuko.transforms import LULinearTransform, MonotonicRQSTransform

__all__ = ["coupling_spline_flow"]


def _lu_linear(raw: Tensor) -> LULinearTransform:
    """L U with L's diagonal exp(raw's diagonal): invertible for any raw, the identity when raw is zero."""
    diagonal = torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    return LULinearTransform(raw.tril(-1) + diagonal + raw.triu(1))


def coupling_spline_flow(features: int, context: int, *, transforms: int, hidden: tuple[int, ...], bins: int) -> Flow:
    """A conditional flow over ``features`` dimensions given a ``context`` vector: ``transforms`` rational-quadratic
    spline couplings (``bins`` bins on [-5, 5], identity outside) with alternating halves and LU mixing between."""
    spline = partial(MonotonicRQSTransform, slope=1e-3)
    layers = []
    for index in range(transforms):
        if index > 0 and features > 1:
            layers.append(UnconditionalTransform(_lu_linear, torch.zeros(features, features)))
        layers.append(
            GeneralCouplingTransform(
                features,
                context,
                mask=torch.arange(features) % 2 == index % 2,
                univariate=spline,
                shapes=[(bins,), (bins,), (bins - 1,)],
                hidden_features=tuple(hidden),
            )
        )
    base = UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)
    return Flow(layers, base)
