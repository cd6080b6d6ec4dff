"""Set-input networks and their output heads."""

from priorfit.networks.bar_distribution import BarDistribution, RiemannDistribution, borders_from_samples
from priorfit.networks.distribution_transformer import DistributionTransformer, MessageHead
from priorfit.networks.heads import ClassificationHead
from priorfit.networks.transformer import ContextAttentionLayer, PFNTransformer

__all__ = [
    "PFNTransformer",
    "ContextAttentionLayer",
    "BarDistribution",
    "RiemannDistribution",
    "borders_from_samples",
    "ClassificationHead",
    "DistributionTransformer",
    "MessageHead",
]
