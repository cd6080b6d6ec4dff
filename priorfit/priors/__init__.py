"""Samplers of synthetic datasets: every prior has ``sample(batch_size, num_points, *, generator)``."""

from priorfit.priors.base import Batch, ExactPredictivePrior, Prior
from priorfit.priors.bnn import BNNPrior
from priorfit.priors.gmm import LinearGaussian, RandomGMMPrior, RangeBearing
from priorfit.priors.gp import GPPrior, kernel_matrix
from priorfit.priors.gp_predictive import GPPredictive
from priorfit.priors.hyperpriors import Fixed, Hyperprior, LogNormal, LogUniform, Normal, Uniform
from priorfit.priors.learning_curves import LearningCurvePrior
from priorfit.priors.mixture import PriorMixture
from priorfit.priors.relations import ExactRelationPrior
from priorfit.priors.scm import SCMPrior
from priorfit.priors.simulator_prior import SimulatorError, SimulatorPrior
from priorfit.priors.truncated import TruncatedPrior

__all__ = [
    "Batch",
    "Prior",
    "ExactPredictivePrior",
    "GPPrior",
    "BNNPrior",
    "PriorMixture",
    "SCMPrior",
    "ExactRelationPrior",
    "SimulatorPrior",
    "SimulatorError",
    "TruncatedPrior",
    "kernel_matrix",
    "Hyperprior",
    "Fixed",
    "Uniform",
    "LogUniform",
    "Normal",
    "LogNormal",
    "LearningCurvePrior",
    "RandomGMMPrior",
    "LinearGaussian",
    "RangeBearing",
    "GPPredictive",
]
