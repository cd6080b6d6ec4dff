"""Posterior checks on plain tensors: TARP coverage, SBC ranks, expected (highest-density) coverage, C2ST, gaps to
an analytic posterior, posterior predictive checks, and a pair plot of samples.

Each takes samples / true values as tensors (no networks; a predictive check takes the simulator) and returns a
dataclass with ``to_dict()`` and ``.plot()`` (the pair plot returns a figure). ``CalibrationCallback`` runs TARP
and SBC during training; ``priorfit-eval`` writes a report.
"""

from priorfit.diagnostics.c2st import C2STResult, c2st
from priorfit.diagnostics.coverage import CoverageResult, expected_coverage
from priorfit.diagnostics.gaps import PosteriorGapResult, exact_gap
from priorfit.diagnostics.pairplot import pairplot
from priorfit.diagnostics.predictive_check import PredictiveCheckResult, posterior_predictive_check
from priorfit.diagnostics.sbc import SBCResult, sbc
from priorfit.diagnostics.tarp import TarpResult, tarp

__all__ = [
    "tarp",
    "TarpResult",
    "sbc",
    "SBCResult",
    "expected_coverage",
    "CoverageResult",
    "c2st",
    "C2STResult",
    "exact_gap",
    "PosteriorGapResult",
    "posterior_predictive_check",
    "PredictiveCheckResult",
    "pairplot",
]
